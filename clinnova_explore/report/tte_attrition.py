"""Attrition of a time-to-event extraction per site, with each site's disclosure policy applied.

Each site counts the persons left after every step of
:func:`~clinnova_explore.analysis.survival.tte.tte_attrition` in its own database; before the
counts leave, a site whose target cohort is smaller than its ``min_cohort_size`` refuses, and
counts in ``(0, min_cell_count)`` are suppressed. The overall column adds the sites (``<NA>``
when any part is hidden; refused sites are left out and named in the provenance). In pooled mode
the same runs once on the pooled site.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pandas as pd

from clinnova_explore.analysis.contract import suppress
from clinnova_explore.analysis.result import Provenance

if TYPE_CHECKING:
    from clinnova_explore.analysis.survival.tte import TimeToEventSpec
    from clinnova_explore.catalog import Catalog
    from clinnova_explore.cdm.source import CdmSource

__all__ = ["TteAttrition", "tte_attrition_table"]

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


def _site_counts(
    cdm: CdmSource, spec: TimeToEventSpec
) -> tuple[pd.DataFrame | None, list[str], str | None]:
    from clinnova_explore.analysis.survival.tte import tte_attrition

    counts = tte_attrition(cdm, spec)
    first = int(counts["persons"].iloc[0]) if len(counts) else 0
    if 0 < first < cdm.policy.min_cohort_size:
        return None, [], "min_cohort_size"
    released = suppress(counts, ["persons"], cdm.policy, group_by=[])
    hidden = [f"{cdm.id}: {step}" for step in released.loc[released["suppressed"], "step"]]
    return released, hidden, None


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
    from clinnova_explore.analysis.pooled import pooled_site

    columns: dict[str, pd.Series] = {}
    steps: list[str] = []
    suppressed: list[str] = []
    refused: dict[str, str] = {}
    if mode == "pooled":
        with pooled_site(catalog) as pooled:
            released, hidden, refusal = _site_counts(pooled, spec)
            sources = [(OVERALL, released, hidden, refusal)]
    else:
        sources = [(s.id, *_site_counts(s, spec)) for s in catalog]
    for site_id, released, hidden, refusal in sources:
        if refusal is not None:
            refused[site_id] = refusal
            columns[site_id] = pd.Series(pd.NA, dtype="Int64")
            continue
        assert released is not None
        steps = steps or list(released["step"])
        columns[site_id] = pd.Series(released["persons"].to_numpy(), dtype="Int64")
        suppressed += hidden
    summary = pd.DataFrame({"step": steps})
    for site_id, values in columns.items():
        summary[site_id] = values.reindex(range(len(steps))).to_numpy()
        summary[site_id] = summary[site_id].astype("Int64")
    if mode == "federated":
        parts = summary[[c for c in columns if c not in refused]]
        total = parts.sum(axis=1, skipna=True).astype("Int64")
        summary[OVERALL] = total.mask(parts.isna().any(axis=1))
    provenance = Provenance(
        analysis="tte_attrition",
        mode=mode,
        sites=tuple(s.id for s in catalog),
        suppressed=tuple(suppressed),
        refused=refused,
        transport="none",
        catalog=str(catalog.path) if catalog.path else None,
    )
    return TteAttrition(summary, provenance)
