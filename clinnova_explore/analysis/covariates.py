"""What a Table 1 describes: covariates, time windows, and the default covariate set.

A :class:`Covariate` names one OMOP concept in one domain. Conditions, drugs, procedures and
observations are *binary*: a cohort entry has the covariate when any record of the concept or
(with ``descendants=True``, the default) of any of its descendants in the site's
``concept_ancestor`` starts inside the window. So "TNF-alpha inhibitor" counts entries with any
infliximab, adalimumab or etanercept exposure. Measurements are *continuous*: the latest
non-missing ``value_as_number`` in the measurement window (ties on the same day are broken by
the largest ``measurement_id``), optionally restricted to one unit.

Windows are inclusive day offsets relative to the cohort start date: ``(-365, 0)`` is the year
before the index date and the index date itself, as in OHDSI FeatureExtraction's long-term
window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import ibis
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from clinnova_explore.cdm import concepts as c

if TYPE_CHECKING:
    from clinnova_explore.cdm.source import CdmSource

__all__ = [
    "AGE",
    "AGE_GROUP",
    "BINARY_DOMAINS",
    "DOMAIN_COLUMNS",
    "DOMAIN_TITLES",
    "INDEX_YEAR",
    "OTHER_SEX",
    "PERSONS",
    "RECORDS",
    "SEX",
    "SEX_LEVELS",
    "UNKNOWN",
    "Covariate",
    "Window",
    "binary_counts",
    "check_window",
    "default_covariates",
    "latest_values",
    "window_label",
]

Domain = Literal["condition", "drug", "procedure", "observation", "measurement"]

Window = tuple[int, int]
"""Inclusive ``(start, end)`` day offsets relative to the index (cohort start) date."""

RECORDS = "Cohort entries"
PERSONS = "Persons"
AGE = "Age at index (years)"
AGE_GROUP = "Age group"
SEX = "Sex"
INDEX_YEAR = "Index year"
UNKNOWN = "Unknown"
SEX_LEVELS: dict[int, str] = {c.FEMALE: "Female", c.MALE: "Male"}
OTHER_SEX = "Other or unknown"
DOMAIN_TITLES = {
    "condition": "Conditions",
    "drug": "Drugs",
    "procedure": "Procedures",
    "observation": "Observations",
}

BINARY_DOMAINS: tuple[str, ...] = ("condition", "drug", "procedure", "observation")
"""Domains whose covariates are present/absent; ``measurement`` covariates are values."""

DOMAIN_COLUMNS: dict[str, tuple[str, str, str]] = {
    "condition": ("condition_occurrence", "condition_concept_id", "condition_start_date"),
    "drug": ("drug_exposure", "drug_concept_id", "drug_exposure_start_date"),
    "procedure": ("procedure_occurrence", "procedure_concept_id", "procedure_date"),
    "observation": ("observation", "observation_concept_id", "observation_date"),
    "measurement": ("measurement", "measurement_concept_id", "measurement_date"),
}
"""Per domain: the CDM table, its concept column and the date compared with the window."""


class Covariate(BaseModel):
    """One concept described in Table 1.

    Parameters
    ----------
    domain
        ``condition``, ``drug``, ``procedure`` or ``observation`` (binary: any record in the
        window) or ``measurement`` (the latest value in the measurement window).
    concept_id
        The OMOP concept; a class (e.g. ``ANTI_TNF``) rolls up all of its descendants.
    label
        The row label; ``None`` uses the concept name.
    descendants
        Include records of descendant concepts (through ``concept_ancestor``).
    unit_concept_id
        Measurements only: count values recorded in this unit only; ``None`` uses every value.

    Examples
    --------
    >>> Covariate(domain="drug", concept_id=c.ANTI_TNF).descendants
    True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    domain: Domain
    concept_id: int
    label: str | None = Field(None, min_length=1)
    descendants: bool = True
    unit_concept_id: int | None = None

    @model_validator(mode="after")
    def _unit_only_for_measurements(self) -> Covariate:
        if self.unit_concept_id is not None and self.domain != "measurement":
            raise ValueError(
                f"covariate {self.concept_id} ({self.domain}): unit_concept_id applies to "
                "measurement covariates only; remove it"
            )
        return self

    @property
    def binary(self) -> bool:
        """Whether the covariate is present/absent (every domain but measurement)."""
        return self.domain in BINARY_DOMAINS


def window_label(window: Window) -> str:
    """How a window reads in a row label.

    Examples
    --------
    >>> window_label((-365, 0))
    'days -365 to 0'
    """
    return f"days {window[0]} to {window[1]}"


def check_window(window: Sequence[int], *, field: str = "windows") -> Window:
    """Validate one window, with an error naming the field when it is malformed."""
    if len(window) != 2 or not all(isinstance(v, int) for v in window):
        raise ValueError(f"{field}: a window is a pair of whole days (start, end), got {window!r}")
    start, end = int(window[0]), int(window[1])
    if start > end:
        raise ValueError(
            f"{field}: window ({start}, {end}) starts after it ends; write (start, end) with "
            "start <= end, e.g. (-365, 0) for the year before the index date"
        )
    return (start, end)


def _drugs(*ids: int) -> list[Covariate]:
    return [Covariate(domain="drug", concept_id=i) for i in ids]


def default_covariates() -> tuple[Covariate, ...]:
    """The project's covariate set: its diseases, comorbidities, drug classes and ingredients.

    Conditions: MS (and RRMS/SPMS/PPMS), RA (and seropositive RA), IBD (and Crohn's disease,
    ulcerative colitis), hypertensive disorder, diabetes mellitus, depressive disorder,
    pneumonia, sepsis. Observations: MS relapse, RA flare, IBD flare. Procedures: MRI brain,
    colectomy, bowel resection. Drugs: each treatment class of the three diseases followed by
    its ingredients, and prednisolone. Measurements (latest value in their canonical unit):
    EDSS, DAS28-CRP, CRP, fecal calprotectin, hemoglobin, body weight.

    Returns
    -------
    tuple of Covariate
        In display order.
    """
    conditions = [
        Covariate(domain="condition", concept_id=i)
        for i in (
            c.MULTIPLE_SCLEROSIS,
            c.RRMS,
            c.SPMS,
            c.PPMS,
            c.RHEUMATOID_ARTHRITIS,
            c.SEROPOSITIVE_RA,
            c.IBD,
            c.CROHNS_DISEASE,
            c.ULCERATIVE_COLITIS,
            c.HYPERTENSIVE_DISORDER,
            c.DIABETES_MELLITUS,
            c.DEPRESSION,
            c.PNEUMONIA,
            c.SEPSIS,
        )
    ]
    observations = [
        Covariate(domain="observation", concept_id=i)
        for i in (c.MS_RELAPSE, c.RA_FLARE, c.IBD_FLARE)
    ]
    procedures = [
        Covariate(domain="procedure", concept_id=i)
        for i in (c.MRI_BRAIN, c.COLECTOMY, c.BOWEL_RESECTION)
    ]
    drugs = [
        *_drugs(c.MS_DMT, c.MS_DMT_PLATFORM),
        *_drugs(c.INTERFERON_BETA_1A, c.GLATIRAMER, c.TERIFLUNOMIDE, c.DIMETHYL_FUMARATE),
        *_drugs(c.MS_DMT_HIGH_EFFICACY, c.FINGOLIMOD, c.NATALIZUMAB, c.OCRELIZUMAB),
        *_drugs(c.CSDMARD, c.METHOTREXATE),
        *_drugs(c.BDMARD, c.ANTI_TNF, c.ADALIMUMAB, c.ETANERCEPT, c.INFLIXIMAB, c.TOCILIZUMAB),
        *_drugs(c.TSDMARD, c.TOFACITINIB),
        *_drugs(c.IBD_ADVANCED_THERAPY, c.VEDOLIZUMAB, c.USTEKINUMAB),
        *_drugs(c.AMINOSALICYLATE, c.MESALAMINE, c.THIOPURINE, c.AZATHIOPRINE),
        *_drugs(c.PREDNISOLONE),
    ]
    measurements = [
        Covariate(
            domain="measurement",
            concept_id=i,
            descendants=False,
            unit_concept_id=c.CANONICAL_UNIT.get(i),
        )
        for i in (c.EDSS, c.DAS28_CRP, c.CRP, c.FECAL_CALPROTECTIN, c.HEMOGLOBIN, c.BODY_WEIGHT)
    ]
    return (*conditions, *observations, *procedures, *drugs, *measurements)


# ---------------------------------------------------------------------- queries at one site


def _matches(
    source: CdmSource,
    covariates: Sequence[Covariate],
    domains: Sequence[str],
    extra: Sequence[str] = (),
) -> ibis.Table:
    """Records matching each covariate: ``person_id, key, event_date`` (+ ``extra``).

    ``key`` is the covariate's position in ``covariates``. A record matches a covariate of its
    domain when its concept is the covariate's concept or (with ``descendants``) a descendant
    of it in the site's ``concept_ancestor``; one record can match several covariates (a drug
    and its class). Measurement covariates with a unit match records in that unit only.
    """
    chosen = [(i, v) for i, v in enumerate(covariates) if v.domain in domains]
    keys = ibis.memtable(
        pd.DataFrame(
            {
                "key": pd.Series([i for i, _ in chosen], dtype="int64"),
                "domain": pd.Series([v.domain for _, v in chosen], dtype="string"),
                "concept_id": pd.Series([v.concept_id for _, v in chosen], dtype="int64"),
                "descendants": pd.Series([v.descendants for _, v in chosen], dtype="bool"),
                "unit": pd.Series([v.unit_concept_id for _, v in chosen], dtype="Int64"),
            }
        )
    )
    ancestry = source.table("concept_ancestor")
    rolled = keys.filter(keys.descendants).join(
        ancestry, keys.concept_id == ancestry.ancestor_concept_id
    )
    mapping = ibis.union(
        keys.select("key", "domain", "unit", match_id=keys.concept_id),
        rolled.select("key", "domain", "unit", match_id=rolled.descendant_concept_id),
        distinct=True,
    )
    events = []
    for domain in domains:
        table_name, concept_col, date_col = DOMAIN_COLUMNS[domain]
        table = source.table(table_name)
        events.append(
            table.select(
                person_id=table.person_id,
                domain=ibis.literal(domain, type="string"),
                match_id=table[concept_col],
                event_date=table[date_col],
                **{name: table[name] for name in extra},
            )
        )
    records = ibis.union(*events, distinct=False) if len(events) > 1 else events[0]
    found = records.join(mapping, ["domain", "match_id"])
    if "unit_concept_id" in extra:
        found = found.filter(found.unit.isnull() | (found.unit_concept_id == found.unit))
    return found.select("person_id", "key", "event_date", *extra)


def _days(entries: ibis.Table, matches: ibis.Table, lo: int, hi: int) -> ibis.Table:
    """Matches of each entry's person with their day offset, within ``[lo, hi]``."""
    joined = entries.join(matches, entries.subject_id == matches.person_id)
    joined = joined.mutate(days=joined.event_date.delta(joined.cohort_start_date, unit="day"))
    return joined.filter(joined.days.between(lo, hi))


def binary_counts(
    source: CdmSource,
    entries: ibis.Table,
    covariates: Sequence[Covariate],
    windows: Sequence[Window],
) -> pd.DataFrame:
    """Cohort entries with each binary covariate in each window (one query).

    Parameters
    ----------
    source
        The site.
    entries
        Cohort entries: ``subject_id``, ``cohort_start_date`` (one row per entry).
    covariates
        Covariates; measurement covariates are ignored here.
    windows
        Inclusive day windows relative to ``cohort_start_date``.

    Returns
    -------
    pandas.DataFrame
        ``key`` (position in ``covariates``), ``window_start, window_end, n``; a covariate
        nobody has may be absent.
    """
    columns = ["key", "window_start", "window_end", "n"]
    domains = [d for d in BINARY_DOMAINS if any(v.domain == d for v in covariates)]
    if not domains or not windows:
        return pd.DataFrame({col: pd.Series(dtype="int64") for col in columns})
    lo, hi = min(w[0] for w in windows), max(w[1] for w in windows)
    found = _days(entries, _matches(source, covariates, domains), lo, hi)
    flags = {f"w{i}": found.days.between(s, e).any() for i, (s, e) in enumerate(windows)}
    per_entry = found.group_by("subject_id", "cohort_start_date", "key").aggregate(**flags)
    sums = {f: per_entry[f].ifelse(1, 0).sum() for f in flags}  # PostgreSQL casts no bool to bigint
    wide = per_entry.group_by("key").aggregate(**sums).to_pandas()
    parts = [
        pd.DataFrame({"key": wide["key"], "window_start": s, "window_end": e, "n": wide[f"w{i}"]})
        for i, (s, e) in enumerate(windows)
    ]
    return pd.concat(parts, ignore_index=True)[columns].astype("int64")


def latest_values(
    source: CdmSource,
    entries: ibis.Table,
    covariates: Sequence[Covariate],
    window: Window,
    *,
    quantiles: bool,
) -> pd.DataFrame:
    """Moments (and quartiles) of each measurement's latest value per entry in ``window``.

    The latest value is the one with the largest ``measurement_date``, then the largest
    ``measurement_id``; records without ``value_as_number`` are skipped.

    Returns
    -------
    pandas.DataFrame
        ``key`` (position in ``covariates``), ``n, sum, sumsq, q1, median, q3`` (quartiles NaN
        when ``quantiles`` is false); a measurement nobody has may be absent.
    """
    columns = ["key", "n", "sum", "sumsq", "q1", "median", "q3"]
    if not any(v.domain == "measurement" for v in covariates):
        return pd.DataFrame({col: pd.Series(dtype="float64") for col in columns})
    extra = ("measurement_id", "value_as_number", "unit_concept_id")
    matches = _matches(source, covariates, ["measurement"], extra)
    found = _days(entries, matches.filter(matches.value_as_number.notnull()), *window)
    rank = ibis.row_number().over(
        group_by=[found.subject_id, found.cohort_start_date, found.key],
        order_by=[found.event_date.desc(), found.measurement_id.desc()],
    )
    latest = found.mutate(rank=rank).filter(lambda t: t["rank"] == 0)
    value = latest.value_as_number
    metrics = {"n": value.count(), "sum": value.sum(), "sumsq": (value * value).sum()}
    if quantiles:
        metrics |= {"q1": value.quantile(0.25), "median": value.quantile(0.5)}
        metrics["q3"] = value.quantile(0.75)
    out = latest.group_by("key").aggregate(**metrics).to_pandas()
    for col in ("q1", "median", "q3"):
        if col not in out:
            out[col] = np.nan
    return out[columns].astype({"key": "int64", "n": "int64", "sum": "float64", "sumsq": "float64"})
