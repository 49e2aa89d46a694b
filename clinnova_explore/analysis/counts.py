"""Cohort counts: persons, records and attrition of a cohort definition, per site and overall.

The first analysis on the contract (:mod:`clinnova_explore.analysis.contract`). Each site
counts the cohort and its attrition in one query on its own CDM (the query's SQL is compiled
once per definition and shared by sites laid out alike, see
:mod:`clinnova_explore.cohort.sqlcache`) and releases two small tables:

``counts``
    one row: ``persons``, ``records`` (cohort eras) and ``suppressed``;
``attrition``
    one row per step: ``step`` (0 = qualifying entry events), ``rule``, ``persons``,
    ``records`` and ``suppressed`` (persons and events remaining after rules ``1..step``).

Counts in ``(0, min_cell_count)`` are suppressed; a site whose cohort is not empty but smaller
than its ``min_cohort_size`` refuses (``"min_cohort_size"``) and releases nothing (an empty
cohort discloses nobody and is reported as zero). The combine step sums the sites; an overall
cell with any suppressed part is ``<NA>`` and marked suppressed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from clinnova_explore.analysis.contract import (
    Runner,
    Transport,
    answered,
    combine_counts,
    refuse_small_cohort,
    run,
    suppress,
)
from clinnova_explore.analysis.payload import Payload, PayloadError
from clinnova_explore.analysis.result import AnalysisResult, Provenance
from clinnova_explore.cohort import CohortDefinition
from clinnova_explore.cohort.compile import count_and_attrition

if TYPE_CHECKING:
    from clinnova_explore.analysis.exchange import OnFailure
    from clinnova_explore.catalog import Catalog
    from clinnova_explore.cdm.source import CdmSource

__all__ = ["COHORT_COUNTS", "OVERALL", "CohortCountResult", "CohortCounts", "count_cohort"]

OVERALL = "overall"
_COUNTS = ["persons", "records"]


@dataclass(frozen=True, eq=False)
class CohortCountResult(AnalysisResult):
    """Counts of a cohort per site and overall.

    Attributes
    ----------
    summary
        ``site, persons, records, suppressed, refused``: one row per site (federated mode)
        and an ``"overall"`` row (the only row in pooled mode). ``<NA>`` marks a suppressed
        or refused count; ``refused`` names the policy rule a site applied.
    attrition
        ``site, step, rule, persons, records, suppressed``: persons and records remaining
        after each inclusion rule, per site (federated) and ``"overall"``.
    provenance
        How the result was made (mode, sites, definition hash, suppressions, refusals).
    """

    attrition: pd.DataFrame

    def _title(self) -> str:
        return f"Cohort counts: {next(iter(self.provenance.definition_hashes), 'cohort')}"

    def overall(self) -> dict[str, Any]:
        """The overall row as a dict (``persons``, ``records``, ``suppressed``, ...)."""
        row = self.summary[self.summary["site"] == OVERALL].iloc[0]
        return {k: (None if pd.isna(v) else v) for k, v in row.items()}

    def plot(self) -> Any:
        """A HoloViews bar chart of persons per site (suppressed or refused sites omitted)."""
        import holoviews as hv

        sites = self.summary[self.summary["site"] != OVERALL]
        if sites.empty:
            sites = self.summary
        shown = sites.dropna(subset=["persons"]).astype({"persons": "int64"})
        hidden = sorted(set(sites["site"]) - set(shown["site"]))
        label = "Persons per site" + (f" (not shown: {', '.join(hidden)})" if hidden else "")
        return hv.Bars(shown[["site", "persons"]], kdims=["site"], vdims=["persons"], label=label)


class CohortCounts:
    """The ``"cohort"`` analysis: a :class:`CohortDefinition` in, cohort counts out."""

    name = "cohort"

    def local(self, site: CdmSource, spec: CohortDefinition) -> Payload:
        """Count the cohort and its attrition at one site (one query, its SQL compiled once
        per definition and site layout); suppress or refuse per the site's policy."""
        totals, steps = count_and_attrition(spec, site)
        refusal = refuse_small_cohort(site, self, int(totals["persons"]), allow_empty=True)
        if refusal is not None:
            return refusal
        attrition = pd.DataFrame(
            {
                "step": pd.Series(range(len(steps)), dtype="int64"),
                "rule": pd.Series([str(r) for r in steps["rule"]], dtype=object),
                "persons": steps["persons"].astype("int64").to_numpy(),
                "records": steps["records"].astype("int64").to_numpy(),
            }
        )
        counts = pd.DataFrame({k: [int(totals[k])] for k in _COUNTS}, dtype="int64")
        tables = {
            "counts": suppress(counts, _COUNTS, site.policy, group_by=[]),
            "attrition": suppress(attrition, _COUNTS, site.policy, group_by=[]),
        }
        return Payload(self.name, site.id, tables, {"definition_hash": spec.definition_hash})

    def combine(
        self, payloads: Sequence[Payload], spec: CohortDefinition, provenance: Provenance
    ) -> CohortCountResult:
        """Per-site rows (federated mode) and the overall sums."""
        if any(p.site == OVERALL for p in payloads):
            raise PayloadError(f"a site may not be called {OVERALL!r}: that row holds the sums")
        ok = answered(payloads)
        for p in ok:
            if p.values.get("definition_hash") != spec.definition_hash:
                raise PayloadError(
                    f"site {p.site!r} counted definition {p.values.get('definition_hash')!r}, "
                    f"not the requested {spec.definition_hash!r}"
                )
        per_site = provenance.mode == "federated"
        rows, steps = [], []
        for p in payloads if per_site else []:
            if p.refused is not None:
                rows.append(_row(p.site, None, p.refused))
                continue
            rows.append(_row(p.site, p.tables["counts"], None))
            steps.append(p.tables["attrition"].assign(site=p.site))
        if ok:
            rows.append(
                _row(OVERALL, combine_counts([p.tables["counts"] for p in ok], [], _COUNTS), None)
            )
            overall = combine_counts([p.tables["attrition"] for p in ok], ["step", "rule"], _COUNTS)
            steps.append(overall.assign(site=OVERALL))
        else:
            rules = sorted({p.refused for p in payloads if p.refused is not None})
            rows.append(_row(OVERALL, None, ", ".join(rules) or None))
        summary = pd.DataFrame(rows).astype({"persons": "Int64", "records": "Int64"})
        columns = ["site", "step", "rule", *_COUNTS, "suppressed"]
        attrition = (
            pd.concat(steps, ignore_index=True)[columns]
            if steps
            else pd.DataFrame({c: [] for c in columns})
        )
        attrition = attrition.astype({"persons": "Int64", "records": "Int64", "suppressed": bool})
        return CohortCountResult(summary=summary, provenance=provenance, attrition=attrition)


def _row(site: str, counts: pd.DataFrame | None, refused: str | None) -> dict[str, Any]:
    if counts is None:
        return {
            "site": site,
            "persons": pd.NA,
            "records": pd.NA,
            "suppressed": False,
            "refused": refused,
        }
    first = counts.iloc[0]
    return {
        "site": site,
        "persons": first["persons"],
        "records": first["records"],
        "suppressed": bool(first["suppressed"]),
        "refused": refused,
    }


COHORT_COUNTS = CohortCounts()


def count_cohort(
    defn: CohortDefinition,
    sites: Catalog | Iterable[CdmSource],
    *,
    mode: Literal["federated", "pooled"] = "federated",
    transport: str | Transport = "arrow",
    runner: Runner | None = None,
    on_failure: OnFailure = "require_all_sites",
) -> CohortCountResult:
    """Count a cohort's persons and records, with attrition, per site and overall.

    Parameters
    ----------
    defn
        The cohort definition.
    sites
        A catalog or CDM sources (catalog sites, ``open_cdm(...)`` sources).
    mode
        ``"federated"`` (per-site payloads combined) or ``"pooled"`` (one virtual site over
        all DuckDB site files, strictest policy); see :func:`~.contract.run`.
    transport
        ``"arrow"`` or ``"json"``: how payloads cross the site boundary.
    runner
        Where site steps run (default: in process).
    on_failure
        ``"require_all_sites"`` (default) or ``"allow_partial"``; see :func:`~.contract.run`.

    Returns
    -------
    CohortCountResult
        ``.summary`` (site, persons, records, suppressed, refused), ``.attrition``,
        ``.plot()``, ``.provenance``.

    Examples
    --------
    >>> result = count_cohort(defn, Catalog.load())  # doctest: +SKIP
    >>> result.overall()["persons"]  # doctest: +SKIP
    412
    """
    return run(
        COHORT_COUNTS,
        defn,
        sites,
        mode=mode,
        transport=transport,
        runner=runner,
        on_failure=on_failure,
    )
