"""The federation at a glance: per-site aggregates for the overview dashboard and notebooks.

Every function runs one aggregate query per site inside that site's backend (ibis pushes it
down) and brings back only counts and sums. Counts below a site's minimum cell count are
suppressed (see :func:`clinnova_explore.disclosure.suppress_counts`).
"""

from __future__ import annotations

from collections.abc import Sequence

import ibis
import pandas as pd

from clinnova_explore.catalog import Catalog, Site
from clinnova_explore.cdm import concepts as C
from clinnova_explore.disclosure import suppress_counts

__all__ = [
    "DISEASES",
    "FOLLOWUP_BIN_YEARS",
    "coarsen_histogram",
    "failing_checks",
    "followup_histogram",
    "mapping_coverage",
    "persons_by_disease",
    "quality_overview",
    "reconciliation",
    "site_summary",
]

#: Disease label -> standard concept (descendants included through concept_ancestor).
DISEASES: dict[str, int] = {
    "Multiple sclerosis": C.MULTIPLE_SCLEROSIS,
    "Rheumatoid arthritis": C.RHEUMATOID_ARTHRITIS,
    "Crohn's disease": C.CROHNS_DISEASE,
    "Ulcerative colitis": C.ULCERATIVE_COLITIS,
}


def _sites(catalog: Catalog, sites: Sequence[str] | None) -> list[Site]:
    return [catalog.site(s) for s in sites] if sites else list(catalog.sites)


def _years(t: ibis.Table) -> ibis.Value:
    start, end = t.observation_period_start_date, t.observation_period_end_date
    return end.delta(start, unit="day").cast("float64") / 365.25


def site_summary(catalog: Catalog, sites: Sequence[str] | None = None) -> pd.DataFrame:
    """Persons, observation time and deaths per site.

    Returns
    -------
    pandas.DataFrame
        Columns ``site, name, country, persons, person_years, median_followup_years, deaths,
        suppressed``.
    """
    rows = []
    for s in _sites(catalog, sites):
        op = s.table("observation_period")
        per_person = op.group_by("person_id").aggregate(years=_years(op).sum())
        agg = (
            per_person.aggregate(
                persons=per_person.person_id.nunique(),
                person_years=per_person.years.sum(),
                median_followup_years=per_person.years.approx_median()
                if s.backend != "duckdb"
                else per_person.years.median(),
            )
            .to_pandas()
            .iloc[0]
        )
        deaths = int(s.table("death").person_id.nunique().to_pandas())
        row = {
            "site": s.id,
            "name": s.name,
            "country": s.country,
            "persons": int(agg.persons),
            "person_years": float(agg.person_years or 0.0),
            "median_followup_years": float(agg.median_followup_years or 0.0),
            "deaths": deaths,
        }
        if not s.policy.allow_quantiles:
            row["median_followup_years"] = float("nan")
        out = suppress_counts(
            pd.DataFrame([row]), ["persons", "deaths"], s.policy.min_cell_count, group_by=[]
        )
        if out.persons.isna().all():  # a hidden count must not be inferable from its totals
            out[["person_years", "median_followup_years"]] = float("nan")
        rows.append(out)
    return pd.concat(rows, ignore_index=True)


def persons_by_disease(catalog: Catalog, sites: Sequence[str] | None = None) -> pd.DataFrame:
    """Distinct persons with each disease (any descendant concept) per site.

    Returns
    -------
    pandas.DataFrame
        Columns ``site, disease, persons, suppressed`` (one row per site and disease).
    """
    frames = []
    for s in _sites(catalog, sites):
        ca = s.table("concept_ancestor")
        co = s.table("condition_occurrence")
        parts = []
        for label, cid in DISEASES.items():
            desc = ca.filter(ca.ancestor_concept_id == cid).descendant_concept_id
            hits = co.filter(co.condition_concept_id.isin(desc))
            parts.append(
                hits.aggregate(persons=hits.person_id.nunique()).mutate(disease=ibis.literal(label))
            )
        df = ibis.union(*parts).to_pandas()
        df["site"] = s.id
        # the site's person total is released too: hide a complementary cell per site
        frames.append(
            suppress_counts(
                df[["site", "disease", "persons"]],
                ["persons"],
                s.policy.min_cell_count,
                group_by=["site"],
            )
        )
    out = pd.concat(frames, ignore_index=True)
    order = {d: i for i, d in enumerate(DISEASES)}
    return out.sort_values(
        ["site", "disease"],
        key=lambda c: (
            c.map(order)
            if c.name == "disease"
            else c.map({k: i for i, k in enumerate(catalog.site_ids)})
        ),
    ).reset_index(drop=True)


#: Resolution (years) at which a site releases its follow-up histogram. Coarser views are
#: merged from the released bins, so several bin widths cannot be differenced into a hidden
#: cell.
FOLLOWUP_BIN_YEARS = 1


def followup_histogram(
    catalog: Catalog, sites: Sequence[str] | None = None, bin_years: int = 1
) -> pd.DataFrame:
    """Persons by length of observation per site, in bins of whole years.

    Each site releases one histogram at :data:`FOLLOWUP_BIN_YEARS` resolution, with small and
    complementary cells suppressed; wider bins are merged from those released bins
    (:func:`coarsen_histogram`), never recomputed from rows.

    Parameters
    ----------
    catalog
        The federation.
    sites
        Site ids (default: all).
    bin_years
        Width of a bin: a whole number of years.

    Returns
    -------
    pandas.DataFrame
        Columns ``site, years_from, years_to, persons, suppressed``.
    """
    if int(bin_years) != bin_years or bin_years < 1:
        raise ValueError(f"bin_years must be a whole number of years >= 1, got {bin_years!r}")
    frames = []
    for s in _sites(catalog, sites):
        op = s.table("observation_period")
        pp = op.group_by("person_id").aggregate(years=_years(op).sum())
        b = (pp.years / FOLLOWUP_BIN_YEARS).floor().cast("int64")
        df = pp.mutate(b=b).group_by("b").aggregate(persons=ibis._.count()).to_pandas()
        df["site"] = s.id
        df["years_from"] = df.b * FOLLOWUP_BIN_YEARS
        df["years_to"] = (df.b + 1) * FOLLOWUP_BIN_YEARS
        df = df.sort_values("b")[["site", "years_from", "years_to", "persons"]]
        frames.append(suppress_counts(df, ["persons"], s.policy.min_cell_count, group_by=["site"]))
    return coarsen_histogram(pd.concat(frames, ignore_index=True), int(bin_years))


def coarsen_histogram(fine: pd.DataFrame, bin_years: int) -> pd.DataFrame:
    """Merge released one-year bins into ``bin_years``-wide bins.

    A merged bin that contains a suppressed bin is itself suppressed (its count would
    otherwise expose the hidden one).

    Parameters
    ----------
    fine
        Output of :func:`followup_histogram` at its native resolution.
    bin_years
        Whole number of native bins per merged bin.

    Returns
    -------
    pandas.DataFrame
        Same columns as ``fine``.
    """
    if bin_years == FOLLOWUP_BIN_YEARS:
        return fine.reset_index(drop=True)
    group = (fine.years_from // bin_years).astype("int64")
    merged = (
        fine.assign(g=group)
        .groupby(["site", "g"], sort=False)
        .agg(
            persons=("persons", lambda v: v.sum() if v.notna().all() else pd.NA),
            suppressed=("suppressed", "any"),
        )
        .reset_index()
    )
    merged["years_from"] = merged.g * bin_years
    merged["years_to"] = (merged.g + 1) * bin_years
    merged["persons"] = merged.persons.astype("Int64")
    return merged[["site", "years_from", "years_to", "persons", "suppressed"]]


def _site_table(s: Site, name: str) -> ibis.Table | None:
    con = s.connect()
    return con.table(name) if name in con.list_tables() else None


def mapping_coverage(catalog: Catalog, sites: Sequence[str] | None = None) -> pd.DataFrame:
    """Share of loaded rows mapped to a standard concept, per site and CDM table.

    Returns
    -------
    pandas.DataFrame
        Columns ``site, cdm_table, rows, mapped_rows, coverage``.
    """
    frames = []
    for s in _sites(catalog, sites):
        t = _site_table(s, "mapping_coverage")
        if t is None:
            continue
        df = t.select("cdm_table", "rows", "mapped_rows").to_pandas()
        df.insert(0, "site", s.id)
        frames.append(df)
    cols = ["site", "cdm_table", "rows", "mapped_rows", "coverage"]
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)
    out["coverage"] = out.mapped_rows / out.rows.where(out.rows > 0)
    return out[cols]


def reconciliation(catalog: Catalog, sites: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows in, loaded and quarantined per site and source table (nothing lost).

    Returns
    -------
    pandas.DataFrame
        Columns ``site, source_table, source_file, rows_in, loaded, quarantined``.
    """
    frames = [
        t.to_pandas()
        for s in _sites(catalog, sites)
        if (t := _site_table(s, "reconciliation")) is not None
    ]
    cols = ["site", "source_table", "source_file", "rows_in", "loaded", "quarantined"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def quality_overview(catalog: Catalog, sites: Sequence[str] | None = None) -> pd.DataFrame:
    """Stored data-quality results summarized per site.

    Returns
    -------
    pandas.DataFrame
        Columns ``site, checks, passed, failed, errors, status`` where status is ``PASS``
        when no check failed or errored.
    """
    rows = []
    for s in _sites(catalog, sites):
        t = _site_table(s, "dq_results")
        if t is None:
            rows.append(
                {
                    "site": s.id,
                    "checks": 0,
                    "passed": 0,
                    "failed": 0,
                    "errors": 0,
                    "status": "NOT RUN",
                }
            )
            continue
        df = t.group_by("status").aggregate(n=ibis._.count()).to_pandas()
        n = dict(zip(df.status, df.n, strict=True))
        failed, errors = int(n.get("FAIL", 0)), int(n.get("ERROR", 0))
        rows.append(
            {
                "site": s.id,
                "checks": int(df.n.sum()),
                "passed": int(n.get("PASS", 0)),
                "failed": failed,
                "errors": errors,
                "status": "PASS" if failed + errors == 0 else "FAIL",
            }
        )
    return pd.DataFrame(rows)


def failing_checks(catalog: Catalog, site: str, *, include_passed: bool = False) -> pd.DataFrame:
    """The stored check results of one site, failing (and erroring) ones first.

    Parameters
    ----------
    site
        Site id.
    include_passed
        Also list passing checks that found violations below their threshold.

    Returns
    -------
    pandas.DataFrame
        Columns ``check_id, category, cdm_table, cdm_field, description, num_violated,
        num_denominator, pct_violated, threshold, status``.
    """
    cols = [
        "check_id",
        "category",
        "cdm_table",
        "cdm_field",
        "description",
        "num_violated",
        "num_denominator",
        "pct_violated",
        "threshold",
        "status",
    ]
    t = _site_table(catalog.site(site), "dq_results")
    if t is None:
        return pd.DataFrame(columns=cols)
    keep = t.status.isin(["FAIL", "ERROR"])
    if include_passed:
        keep = keep | (t.num_violated > 0)
    df = t.filter(keep).to_pandas()
    rank = {"ERROR": 0, "FAIL": 1, "PASS": 2}
    df = df.assign(_r=df.status.map(rank)).sort_values(["_r", "check_id"])
    return df[cols].reset_index(drop=True)
