"""Per-person dates that row checks compare event dates with.

:func:`enriched` left-joins a CDM table with one row per person of each requested
enrichment, so checks such as "before birth" stay row predicates on the event table and the
runner can count them together with the table's other row checks in one query.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import ibis
import ibis.expr.types as ir

from clinnova_explore.quality.check import CheckContext

__all__ = ["ENRICHMENTS", "enriched", "enrichment_tables"]


def _births(ctx: CheckContext) -> ir.Table:
    """``_pid -> _born``: birth_datetime, else year/month/day (missing parts count as 1)."""
    p = ctx.table("person")
    year = p.year_of_birth.between(1, 9999).ifelse(p.year_of_birth, ibis.null("int64"))
    month = p.month_of_birth.between(1, 12).ifelse(p.month_of_birth, 1).fill_null(1)
    day = p.day_of_birth.between(1, 28).ifelse(p.day_of_birth, 1).fill_null(1)
    born = ibis.coalesce(p.birth_datetime.date(), ibis.date(year, month, day))
    p = p.select(_pid=p.person_id, _b=born)
    return p.group_by("_pid").aggregate(_born=p._b.min())


def _deaths(ctx: CheckContext) -> ir.Table:
    """``_pid -> _died``: the earliest death date of each person."""
    d = ctx.table("death")
    return d.group_by(_pid=d.person_id).aggregate(_died=d.death_date.min())


def _first_observation(ctx: CheckContext) -> ir.Table:
    """``_pid -> _first_obs``: start of each person's first observation period."""
    op = ctx.table("observation_period")
    return op.group_by(_pid=op.person_id).aggregate(
        _first_obs=op.observation_period_start_date.min()
    )


#: name -> (builder of a one-row-per-person table keyed by ``_pid``, table it reads)
ENRICHMENTS: dict[str, tuple[Callable[[CheckContext], ir.Table], str]] = {
    "birth": (_births, "person"),
    "death": (_deaths, "death"),
    "first_observation": (_first_observation, "observation_period"),
}


def enrichment_tables(names: Iterable[str]) -> tuple[str, ...]:
    """The CDM tables the named enrichments read."""
    return tuple(ENRICHMENTS[n][1] for n in names)


def enriched(ctx: CheckContext, table: str, names: Iterable[str]) -> ir.Table:
    """CDM ``table`` with the columns of the named enrichments (NULL where unknown)."""
    t = ctx.table(table)
    for name in sorted(set(names)):
        side = ENRICHMENTS[name][0](ctx)
        t = t.left_join(side, t.person_id == side._pid).drop("_pid")
    return t
