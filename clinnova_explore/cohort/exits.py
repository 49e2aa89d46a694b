"""Cohort exit: end dates per included event, censoring, era collapse and the censor window.

Follows Circe's ``generateCohort`` logic:

- each included event ends at the earliest of its candidate end dates that is not before its
  start: the observation period end (for every strategy except the fixed offset, which caps
  itself at the observation period end), the exit strategy's date, and the first censoring
  event that starts between the index start and the observation period end; an event without
  any candidate (a fixed offset ending before the start) leaves the cohort;
- ``drug_exposure_end`` builds eras of the concept set's exposures (matched on the standard or
  the source concept column), joining exposures whose start is at most ``gap_days +
  offset_days`` after the running end (current circe-be pads by both before splitting eras);
  the index ends at the era's last exposure end + ``offset_days`` for the era containing the
  index start (the era end including the offset), else at the observation period end;
- eras of a person that overlap or are less than ``pad_days`` apart are collapsed into one;
- the censor window clips start and end dates and drops eras left empty.
"""

from __future__ import annotations

from functools import reduce

import ibis
import ibis.expr.types as ir

from clinnova_explore.cohort.events import EventSource, add_days
from clinnova_explore.cohort.model import (
    CensorWindow,
    DrugExposureEndExit,
    EventCriterion,
    FixedOffsetExit,
    ObservationEndExit,
)

__all__ = ["apply_censor_window", "collapse_eras", "event_ends"]


def _least(a: ir.DateValue, b: ir.DateValue) -> ir.DateValue:
    """The earlier of two dates, ignoring a NULL (portable: no reliance on LEAST's NULL rules)."""
    return ibis.least(a.coalesce(b), b.coalesce(a))


def _keyed(events: ir.Table, extra: ir.Table, column: str) -> ir.Table:
    """``events`` with ``extra``'s ``column`` attached by (person_id, event_id) (left join)."""
    joined = events.left_join(
        extra,
        [events.person_id == extra.k_person_id, events.event_id == extra.k_event_id],
    )
    return joined.select(*events.columns, column)


def _drug_eras(events: ir.Table, exit_: DrugExposureEndExit, source: EventSource) -> ir.Table:
    """Eras of continuous exposure (person_id, era_start, era_end incl. offset)."""
    raw = source.table("drug_exposure")
    de = source.project(
        "drug_exposure",
        person_id=raw.person_id.cast("int64"),
        concept_id=raw.drug_concept_id.cast("int64"),
        source_concept_id=raw.drug_source_concept_id.cast("int64"),
        start=raw.drug_exposure_start_date.cast("date"),
        end=raw.drug_exposure_end_date.cast("date"),
        days_supply=raw.days_supply.cast("int32"),
    )
    codeset = source.codeset(exit_.concept_set)
    in_set = de.concept_id.isin(codeset.standard.concept_id) | de.source_concept_id.isin(
        codeset.standard.concept_id
    )
    if codeset.source is not None:
        in_set = in_set | de.source_concept_id.isin(codeset.source.concept_id)
    de = de.filter(in_set, de.person_id.isin(events.person_id))
    if exit_.days_supply_override is not None:
        end = add_days(de.start, exit_.days_supply_override)
    else:
        end = ibis.coalesce(de.end, add_days(de.start, de.days_supply), add_days(de.start, 1))
    # as Circe: exposures less than gap + offset days apart belong to one era
    pad = exit_.gap_days + exit_.offset_days
    exposures = de.select("person_id", "start", padded=add_days(end, pad))
    order = [exposures.start, exposures.padded]
    before = ibis.window(group_by=exposures.person_id, order_by=order, rows=(None, -1))
    marked = exposures.mutate(
        is_start=ibis.ifelse(exposures.padded.max().over(before) >= exposures.start, 0, 1)
    )
    running = ibis.window(
        group_by=marked.person_id, order_by=[marked.start, marked.padded], rows=(None, 0)
    )
    grouped = marked.mutate(era=marked.is_start.sum().over(running))
    eras = grouped.group_by(["person_id", "era"]).aggregate(
        era_start=grouped.start.min(), padded_end=grouped.padded.max()
    )
    return eras.select(
        "person_id",
        "era_start",
        era_end=add_days(eras.padded_end, -exit_.gap_days),
    )


def event_ends(
    events: ir.Table,
    exit_: ObservationEndExit | FixedOffsetExit | DrugExposureEndExit,
    censoring: tuple[EventCriterion, ...],
    source: EventSource,
) -> ir.Table:
    """Included events with their cohort end date (person_id, event_id, start_date, end_date).

    ``events`` are the included events (with ``end_date``, ``op_end``); the returned
    ``end_date`` is the cohort era end of each event, rows without an end are dropped.
    """
    if isinstance(exit_, FixedOffsetExit):
        anchor = events.start_date if exit_.anchor == "start" else events.end_date
        shifted = add_days(anchor, exit_.offset_days)
        capped = ibis.ifelse(shifted > events.op_end, events.op_end, shifted)
        ends = events.mutate(
            cohort_end=ibis.ifelse(capped >= events.start_date, capped, ibis.null().cast("date"))
        )
    elif isinstance(exit_, DrugExposureEndExit):
        eras = _drug_eras(events, exit_, source)
        hit = events.join(
            eras,
            [
                events.person_id == eras.person_id,
                events.start_date >= eras.era_start,
                events.start_date <= eras.era_end,
            ],
        )
        era_ends = hit.group_by(
            [hit.person_id.name("k_person_id"), hit.event_id.name("k_event_id")]
        ).aggregate(era_end=hit.era_end.min())
        ends = _keyed(events, era_ends, "era_end")
        ends = ends.mutate(cohort_end=_least(ends.era_end, ends.op_end)).drop("era_end")
    else:
        ends = events.mutate(cohort_end=events.op_end)

    if censoring:
        parts = []
        for crit in censoring:
            found = source.events(crit).rename("c_{name}")
            hit = events.join(
                found,
                [
                    events.person_id == found.c_person_id,
                    found.c_start_date >= events.start_date,
                    found.c_start_date <= events.op_end,
                ],
            )
            parts.append(
                hit.select(
                    k_person_id=hit.person_id, k_event_id=hit.event_id, censor=hit.c_start_date
                )
            )
        stacked = reduce(lambda a, b: a.union(b), parts)
        first = stacked.group_by(["k_person_id", "k_event_id"]).aggregate(
            censor_date=stacked.censor.min()
        )
        ends = _keyed(ends, first, "censor_date")
        ends = ends.mutate(cohort_end=_least(ends.cohort_end, ends.censor_date))

    ends = ends.filter(ends.cohort_end.notnull())
    return ends.select("person_id", "event_id", "start_date", end_date=ends.cohort_end)


def collapse_eras(rows: ir.Table, pad_days: int) -> ir.Table:
    """Merge each person's overlapping eras, and eras at most ``pad_days`` apart."""
    padded = rows.select("person_id", "start_date", padded=add_days(rows.end_date, pad_days))
    order = [padded.start_date, padded.padded]
    before = ibis.window(group_by=padded.person_id, order_by=order, rows=(None, -1))
    marked = padded.mutate(
        is_start=ibis.ifelse(padded.padded.max().over(before) >= padded.start_date, 0, 1)
    )
    running = ibis.window(
        group_by=marked.person_id,
        order_by=[marked.start_date, marked.is_start.desc(), marked.padded],
        rows=(None, 0),
    )
    grouped = marked.mutate(era=marked.is_start.sum().over(running))
    eras = grouped.group_by(["person_id", "era"]).aggregate(
        start_date=grouped.start_date.min(), padded_end=grouped.padded.max()
    )
    return eras.select("person_id", "start_date", end_date=add_days(eras.padded_end, -pad_days))


def apply_censor_window(rows: ir.Table, window: CensorWindow | None) -> ir.Table:
    """Clip eras to the censor window's dates and drop eras that end before they start."""
    if window is None or (window.start is None and window.end is None):
        return rows
    start = rows.start_date
    end = rows.end_date
    if window.start is not None:
        lo = ibis.literal(window.start)
        start = ibis.ifelse(start > lo, start, lo)
    if window.end is not None:
        hi = ibis.literal(window.end)
        end = ibis.ifelse(end < hi, end, hi)
    clipped = rows.mutate(start_date=start, end_date=end)
    return clipped.filter(clipped.start_date <= clipped.end_date)
