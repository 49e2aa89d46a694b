"""Attrition of a time-to-event extraction per site, through the analysis contract.

:class:`TteAttritionStep` is a ``"cohort"`` analysis: each site counts the persons left after
every step of :func:`~clinnova_explore.analysis.survival.tte.tte_attrition` in its own database
and applies its policy before the counts leave (a target cohort smaller than
``min_cohort_size`` is refused; counts in ``(0, min_cell_count)`` are suppressed). The
coordinator puts the released counts side by side; the overall column adds the sites
(``<NA>`` when any part is hidden; refused sites are left out and named in the provenance). In
pooled mode the same local step runs once on the pooled site.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pandas as pd

from clinnova_explore.analysis.contract import refuse, run, suppress
from clinnova_explore.analysis.payload import Payload, PayloadError
from clinnova_explore.analysis.result import Provenance

if TYPE_CHECKING:
    from clinnova_explore.analysis.survival.tte import TimeToEventSpec
    from clinnova_explore.catalog import Catalog
    from clinnova_explore.cdm.source import CdmSource

__all__ = ["TteAttrition", "TteAttritionStep", "tte_attrition_table"]

OVERALL = "overall"


@dataclass(frozen=True)
class TteAttrition:
    """Persons after each time-to-event step.

    Attributes
    ----------
    summary
        ``step``, one column per site (federated) and ``overall``; ``<NA>`` where suppressed
        or refused.
    provenance
        Sites, suppressed cells and refusals.
    """

    summary: pd.DataFrame
    provenance: Provenance


@dataclass(frozen=True)
class TteAttritionStep:
    """The site and coordinator steps of :func:`tte_attrition_table` (analysis ``"cohort"``).

    The payload holds one table, ``attrition``: ``step`` (text), ``persons`` (suppressed
    below the site's ``min_cell_count``) and ``suppressed``.
    """

    name: str = "cohort"

    def local(self, site: CdmSource, spec: TimeToEventSpec) -> Payload:
        """Count the persons after each step at ``site``; refuse or suppress per its policy."""
        from clinnova_explore.analysis.survival.tte import tte_attrition

        counts = tte_attrition(site, spec)
        first = int(counts["persons"].iloc[0]) if len(counts) else 0
        if 0 < first < site.policy.min_cohort_size:
            return refuse(site, self, "min_cohort_size")
        released = suppress(counts, ["persons"], site.policy, group_by=[])
        table = pd.DataFrame(
            {
                "step": pd.Series([str(s) for s in released["step"]], dtype=object),
                "persons": pd.array(released["persons"], dtype="Int64"),
                "suppressed": released["suppressed"].astype(bool).to_numpy(),
            }
        )
        return Payload(analysis=self.name, site=site.id, tables={"attrition": table})

    def combine(
        self, payloads: Sequence[Payload], spec: TimeToEventSpec, provenance: Provenance
    ) -> TteAttrition:
        """One column per site (``overall`` alone in pooled mode), plus the overall sums."""
        pooled = provenance.mode == "pooled"
        steps: list[str] = []
        columns: dict[str, pd.Series] = {}
        for p in payloads:
            if p.site == OVERALL and not pooled:
                raise PayloadError(f"a site may not be called {OVERALL!r}: that column holds sums")
            column = OVERALL if pooled else p.site
            if p.refused is not None:
                columns[column] = pd.Series(pd.NA, dtype="Int64")
                continue
            table = p.tables["attrition"]
            if steps and list(table["step"]) != steps:
                raise PayloadError(
                    f"site {p.site!r} released attrition steps {list(table['step'])}, "
                    f"expected {steps}"
                )
            steps = steps or list(table["step"])
            columns[column] = pd.Series(table["persons"].to_numpy(), dtype="Int64")
        summary = pd.DataFrame({"step": steps})
        for column, values in columns.items():
            summary[column] = values.reindex(range(len(steps))).to_numpy()
            summary[column] = summary[column].astype("Int64")
        if not pooled:
            answered = [p.site for p in payloads if p.refused is None]
            parts = summary[answered]
            total = parts.sum(axis=1, skipna=True).astype("Int64")
            summary[OVERALL] = total.mask(parts.isna().any(axis=1))
        return TteAttrition(summary, provenance)


def tte_attrition_table(
    catalog: Catalog, spec: TimeToEventSpec, *, mode: Literal["federated", "pooled"] = "federated"
) -> TteAttrition:
    """Persons left after each time-to-event step, per site and overall.

    Parameters
    ----------
    catalog
        The sites.
    spec
        The time-to-event specification.
    mode
        ``"federated"`` (one column per site, plus overall) or ``"pooled"`` (overall only,
        counted on the pooled site with the strictest policy).

    Returns
    -------
    TteAttrition
    """
    return run(TteAttritionStep(), spec, catalog, mode=mode)
