"""Kaplan-Meier, log-rank and counts over a federation: one round of site event tables.

Each site releases a binned, small-cell-merged event table
(:class:`~clinnova_explore.federated.steps.EventTableStep`; see
:mod:`~clinnova_explore.federated.bins`) or a suppressed count table
(:class:`~clinnova_explore.federated.steps.CountStep`); the coordinator adds them up and runs the
same estimators as on one table. :class:`~clinnova_explore.federated.Federation`'s
``kaplan_meier``, ``logrank`` and ``count`` call these, as its ``cox`` and ``logistic`` call
:mod:`~clinnova_explore.federated.models`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from clinnova_explore.analysis.contract import FederationError
from clinnova_explore.analysis.survival.km import KaplanMeierResult, kaplan_meier_from_event_table
from clinnova_explore.analysis.survival.logrank import LogrankResult, logrank_from_event_table
from clinnova_explore.federated.steps import CountSpec, CountStep, EventTableSpec, EventTableStep

if TYPE_CHECKING:
    from clinnova_explore.analysis.result import Provenance
    from clinnova_explore.federated.federation import Federation

__all__ = ["event_table_round", "federated_count", "federated_kaplan_meier", "federated_logrank"]


def with_provenance(result: Any, provenance: Provenance) -> Any:
    """``result`` with ``provenance`` when its dataclass has such a field."""
    names = {f.name for f in dataclasses.fields(result)}
    return dataclasses.replace(result, provenance=provenance) if "provenance" in names else result


def event_table_round(fed: Federation, spec: EventTableSpec) -> tuple[pd.DataFrame, Provenance]:
    """The summed event table of the answering sites, and its provenance.

    Raises
    ------
    FederationError
        When every site refused (the message names each site's rule).
    """
    step = EventTableStep()
    payloads = fed.collect(step, spec)
    answered = [p for p in payloads if p.refused is None]
    if not answered:
        rules = {p.site: p.refused for p in payloads}
        raise FederationError(f"every site refused the survival analysis: {rules}")
    notes = []
    for p in answered:
        merged = int(p.values.get("merged_bins") or 0)
        if merged:
            notes.append(
                f"{p.site}: {merged} event-table time(s) merged into later ones (min_cell_count)"
            )
        dropped = str(p.values.get("dropped_cells") or "")
        if dropped:
            notes.append(f"{p.site}: event table not released for {dropped} (min_cell_count)")
    prov = fed.provenance(step.name, [payloads], notes)
    return step.combine(payloads, spec, prov), prov


def federated_kaplan_meier(
    fed: Federation,
    *,
    duration: str,
    event: str,
    group: str | None = None,
    conf_type: Literal["log", "log-log", "plain"] = "log",
    alpha: float = 0.05,
    weights: str | None = None,
) -> KaplanMeierResult:
    """Kaplan-Meier curves from the sites' released event tables (see
    :meth:`~clinnova_explore.federated.Federation.kaplan_meier`)."""
    spec = EventTableSpec(duration, event, () if group is None else (group,), weights)
    table, prov = event_table_round(fed, spec)
    summary = kaplan_meier_from_event_table(table, group=group, conf_type=conf_type, alpha=alpha)
    result = KaplanMeierResult(summary=summary, conf_type=conf_type, alpha=alpha, group=group)
    return with_provenance(result, prov)


def federated_logrank(
    fed: Federation, *, duration: str, event: str, group: str, strata: str | None = None
) -> LogrankResult:
    """(Stratified) log-rank test from the sites' released event tables."""
    by = (group,) if strata is None else (strata, group)
    table, prov = event_table_round(fed, EventTableSpec(duration, event, by))
    return with_provenance(logrank_from_event_table(table, group=group, strata=strata), prov)


def federated_count(
    fed: Federation, *, by: str | Sequence[str] = (), event: str | None = None
) -> pd.DataFrame:
    """Persons (and events) per site and cell of ``by`` (see
    :meth:`~clinnova_explore.federated.Federation.count`)."""
    spec = CountSpec((by,) if isinstance(by, str) else tuple(by), event)
    step = CountStep()
    payloads = fed.collect(step, spec)
    prov = fed.provenance(step.name, [payloads])
    out = step.combine(payloads, spec, prov)
    out.attrs["provenance"] = prov.to_dict()
    return out
