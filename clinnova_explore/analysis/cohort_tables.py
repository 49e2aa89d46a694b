"""Cohorts as tables at a site, and interval helpers that analyses over cohort eras share.

A cohort reaches an analysis either as a :class:`~clinnova_explore.cohort.CohortDefinition`
(compiled at the site) or as a :class:`CohortTable` (rows already in the site's OMOP ``cohort``
table); :func:`resolve_cohort` turns either into the same lazy table. :func:`materialized` keeps
a cohort in a temporary table while several queries read it, and :func:`merge_intervals` and
:func:`split_by_year` work on inclusive date intervals (``start``, ``end``) in the database.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir

from clinnova_explore.cohort import CohortDefinition

__all__ = [
    "CohortRef",
    "CohortTable",
    "materialized",
    "merge_intervals",
    "resolve_cohort",
    "split_by_year",
]


@dataclass(frozen=True)
class CohortTable:
    """A cohort already written to a site's OMOP ``cohort`` table (e.g. by ``generate_cohort``)."""

    cohort_definition_id: int
    table: str = "cohort"

    @property
    def definition_hash(self) -> str:
        """Stands in for a definition hash in provenance."""
        return f"{self.table}:{self.cohort_definition_id}"


CohortRef = CohortDefinition | CohortTable


def resolve_cohort(ref: CohortRef, site: Any) -> ir.Table:
    """The lazy cohort table (``subject_id``, ``cohort_start_date``, ``cohort_end_date``)."""
    if isinstance(ref, CohortTable):
        t = site.table(ref.table)
        t = t.filter(t.cohort_definition_id == ref.cohort_definition_id)
    elif isinstance(ref, CohortDefinition):
        from clinnova_explore.cohort.compile import compile_cohort

        t = compile_cohort(ref, site).cohort
    else:
        raise TypeError(
            f"a cohort must be a CohortDefinition or CohortTable, got {type(ref).__name__}"
        )
    return t.select(
        subject_id=t.subject_id.cast("int64"),
        cohort_start_date=t.cohort_start_date.cast("date"),
        cohort_end_date=t.cohort_end_date.cast("date"),
    )


@contextmanager
def materialized(site: Any, expr: ir.Table) -> Iterator[ir.Table]:
    """``expr`` as a temporary table on the site's own connection, dropped on leaving.

    Used for the cohorts, which later queries read several times. The table is created on
    ``site.connect()`` (not on whichever equal connection an expression happens to be bound to).
    """
    con = site.connect()
    name = ibis.util.gen_name("clx_tmp")
    table = con.create_table(name, expr, temp=True)
    try:
        yield table
    finally:
        con.drop_table(name, force=True)


def merge_intervals(t: ir.Table, keys: Sequence[str], *, pad: int = 0) -> ir.Table:
    """Union inclusive date intervals ``[start, end]`` per ``keys``.

    An interval joins the previous ones when it starts no later than ``pad`` days after their
    latest end (``pad=0``: overlapping or sharing a day).
    """
    order = [t.start, t.end]
    before = ibis.window(group_by=list(keys), order_by=order, rows=(None, -1))
    t = t.mutate(_prev_end=t.end.max().over(before))
    fresh = t._prev_end.isnull() | (t.start > t._prev_end + ibis.interval(days=pad))
    t = t.mutate(_fresh=ibis.ifelse(fresh, 1, 0))
    upto = ibis.window(group_by=list(keys), order_by=order, rows=(None, 0))
    t = t.mutate(_grp=t._fresh.sum().over(upto))
    return t.group_by([*keys, "_grp"]).agg(start=t.start.min(), end=t.end.max()).drop("_grp")


def split_by_year(t: ir.Table) -> ir.Table:
    """One row per calendar year an interval touches, clipped to that year; adds ``days``."""
    t = t.mutate(year=ibis.range(t.start.year(), t.end.year() + 1).unnest())
    start = ibis.greatest(t.start, ibis.date(t.year, 1, 1))
    end = ibis.least(t.end, ibis.date(t.year, 12, 31))
    return t.mutate(start=start, end=end, days=end.delta(start, unit="day") + 1)
