"""Criteria groups evaluated per index event (Circe's correlated and demographic criteria).

Every function takes a table of index events (at least ``person_id``, ``event_id``,
``start_date``, ``end_date``, ``op_start``, ``op_end``, ``visit_occurrence_id``) and returns the
same table filtered to the events that satisfy the criterion, so rules chain as filters.

Semantics follow Circe:

- an event counts for a correlated criterion when it starts inside the index event's observation
  period (unless ``ignore_observation_period``) and its start (or end, ``use_event_end``) date
  lies in the window around the index start (or end, ``use_index_end``), bounds inclusive; an
  unbounded window side is bounded by the observation period start/end unless the observation
  period is ignored; ``restrict_visit`` requires the same ``visit_occurrence_id``;
- occurrence counts compare the number of such events (or of their distinct concepts, start
  dates or visits) with ``exactly``/``at_most``/``at_least`` N;
- age at index is the year of the index start minus the year of birth;
- a group holds when all / any / at least N / at most N of its members hold; an empty group
  holds for every event.

Counting uses semi and anti joins where the count is compared with 0 or 1, and a grouped join
only where larger counts matter, so no criterion multiplies the index events.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial, reduce

import ibis.expr.types as ir

from clinnova_explore.cohort.events import EventSource, add_days, in_range
from clinnova_explore.cohort.model import (
    CorrelatedCriterion,
    CriteriaGroup,
    DemographicCriterion,
    Window,
)

__all__ = ["filter_correlated", "filter_demographic", "filter_group"]

KEYS = ("person_id", "event_id")
Filter = Callable[[ir.Table], ir.Table]

_DISTINCT_COLUMN = {
    "concept": "a_concept_id",
    "start_date": "a_start_date",
    "visit": "a_visit_occurrence_id",
}


def _bounds(
    events: ir.Table, window: Window, check_op: bool, prefix: str
) -> tuple[dict[str, ir.Value], list[tuple[str, str, str]]]:
    """Bound columns to add to the index events, and (event column, op, bound column) checks."""
    index_date = events.end_date if window.use_index_end else events.start_date
    event_col = "a_end_date" if window.use_event_end else "a_start_date"
    columns: dict[str, ir.Value] = {}
    checks: list[tuple[str, str, str]] = []
    if window.start is not None:
        columns[f"{prefix}_lo"] = add_days(index_date, window.start)
        checks.append((event_col, ">=", f"{prefix}_lo"))
    elif check_op:
        checks.append((event_col, ">=", "op_start"))
    if window.end is not None:
        columns[f"{prefix}_hi"] = add_days(index_date, window.end)
        checks.append((event_col, "<=", f"{prefix}_hi"))
    elif check_op:
        checks.append((event_col, "<=", "op_end"))
    return columns, checks


def filter_correlated(events: ir.Table, crit: CorrelatedCriterion, source: EventSource) -> ir.Table:
    """Index events satisfying one correlated (occurrence) criterion."""
    occ = crit.occurrence
    if occ.type == "at_least" and occ.count == 0:
        return events
    check_op = not crit.ignore_observation_period
    found = source.events(crit.event).rename("a_{name}")
    columns, checks = _bounds(events, crit.start_window, check_op, "_sw")
    if crit.end_window is not None:
        more_cols, more_checks = _bounds(events, crit.end_window, check_op, "_ew")
        columns |= more_cols
        checks += more_checks
    base = events.mutate(**columns) if columns else events

    preds: list[ir.BooleanValue] = [base.person_id == found.a_person_id]
    if check_op:
        preds += [found.a_start_date >= base.op_start, found.a_start_date <= base.op_end]
    for event_col, op, bound in checks:
        value = found[event_col]
        preds.append(value >= base[bound] if op == ">=" else value <= base[bound])
    if crit.restrict_visit:
        preds.append(found.a_visit_occurrence_id == base.visit_occurrence_id)
    if occ.distinct is not None:
        preds.append(found[_DISTINCT_COLUMN[occ.distinct]].notnull())

    original = list(events.columns)
    if occ.count == 0 or (occ.type == "at_least" and occ.count == 1):
        # exactly 0 / at most 0: no such event; at least 1: some such event
        if occ.count == 0:
            return base.anti_join(found, preds).select(original)
        return base.semi_join(found, preds).select(original)

    joined = base.join(found, preds)
    n = joined.count() if occ.distinct is None else joined[_DISTINCT_COLUMN[occ.distinct]].nunique()
    counts = joined.group_by([joined.person_id, joined.event_id]).aggregate(n=n)
    if occ.type == "at_least":
        counts = counts.filter(counts.n >= occ.count)
    elif occ.type == "exactly":
        counts = counts.filter(counts.n == occ.count)
    else:  # at_most N (N >= 1): drop events with more than N
        counts = counts.filter(counts.n > occ.count)
    if occ.type == "at_most":
        return events.anti_join(counts, _on_keys(events, counts))
    return events.semi_join(counts, _on_keys(events, counts))


def filter_demographic(
    events: ir.Table, crit: DemographicCriterion, source: EventSource
) -> ir.Table:
    """Index events whose person matches age at index and sex."""
    person = source.person()
    preds: list[ir.BooleanValue] = [events.person_id == person.person_id]
    if crit.age is not None:
        preds.append(in_range(events.start_date.year() - person.year_of_birth, crit.age))
    if crit.sex is not None:
        preds.append(person.gender_concept_id.isin(list(crit.sex)))
    return events.semi_join(person, preds)


def _members(group: CriteriaGroup, source: EventSource) -> list[Filter]:
    members: list[Filter] = []
    for crit in group.criteria:
        members.append(partial(filter_correlated, crit=crit, source=source))
    for demo in group.demographics:
        members.append(partial(filter_demographic, crit=demo, source=source))
    for sub in group.groups:
        members.append(partial(filter_group, group=sub, source=source))
    return members


def filter_group(events: ir.Table, group: CriteriaGroup, source: EventSource) -> ir.Table:
    """Index events satisfying a (possibly nested) criteria group."""
    members = _members(group, source)
    if not members:
        return events
    if group.type == "all":
        return reduce(lambda table, member: member(table), members, events)
    if group.type == "at_least" and group.count == 0:
        return events
    keys = [member(events).select(*KEYS) for member in members]
    if group.type == "any" or (group.type == "at_least" and group.count == 1):
        hits = reduce(lambda a, b: a.union(b, distinct=True), keys) if len(keys) > 1 else keys[0]
        return events.semi_join(hits, _on_keys(events, hits))
    stacked = reduce(lambda a, b: a.union(b), keys) if len(keys) > 1 else keys[0]
    counts = stacked.group_by(list(KEYS)).aggregate(n=stacked.count())
    if group.type == "at_least":
        hits = counts.filter(counts.n >= group.count)
        return events.semi_join(hits, _on_keys(events, hits))
    # at_most N: drop events satisfying more than N members
    hits = counts.filter(counts.n > group.count)
    return events.anti_join(hits, _on_keys(events, hits))


def _on_keys(events: ir.Table, hits: ir.Table) -> list[ir.BooleanValue]:
    return [events.person_id == hits.person_id, events.event_id == hits.event_id]
