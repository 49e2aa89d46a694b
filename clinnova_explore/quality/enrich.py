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

__all__ = ["ENRICHMENTS", "earliest_birth", "enriched", "enrichment_tables"]


def _days_in_month(year: ir.IntegerValue, month: ir.IntegerValue) -> ir.IntegerValue:
    """Number of days of ``month`` in ``year`` (Gregorian calendar), in portable SQL."""
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    return ibis.cases(
        (month == 2, leap.ifelse(29, 28)),
        (month.isin([4, 6, 9, 11]), 30),
        else_=31,
    )


def earliest_birth(person: ir.Table) -> ir.DateValue:
    """The earliest birth date consistent with each person row.

    ``birth_datetime`` when it is given; otherwise the date built from ``year_of_birth``,
    ``month_of_birth`` and ``day_of_birth`` as far as they are known and valid, completed
    with the earliest possible value: an unknown or invalid month (not 1-12) gives
    1 January, an unknown or invalid day (not a day of that month in that year, e.g.
    30 February or 29 February 1970) gives the first of the month. A day without a valid
    month narrows nothing and is ignored. An unknown or invalid year (not 1-9999) gives NULL.

    Why the earliest: with a part unknown, the true birth date may be any date those parts
    allow, and an event is only certainly before birth when it precedes the earliest of
    them. Comparing with that date never flags an event that may well be after birth, while a
    known and valid day is used as such, so an event between the first of the month and the
    real birthday is still flagged.

    Parameters
    ----------
    person
        The CDM ``person`` table (or a table with its birth columns).

    Returns
    -------
    ibis.expr.types.DateValue
        One date per row (NULL when neither ``birth_datetime`` nor a valid year is known).
    """
    year, month, day = person.year_of_birth, person.month_of_birth, person.day_of_birth
    year_ok = year.notnull() & year.between(1, 9999)
    month_ok = year_ok & month.notnull() & month.between(1, 12)
    day_ok = month_ok & day.notnull() & (day >= 1) & (day <= _days_in_month(year, month))
    built = ibis.date(
        year_ok.ifelse(year, ibis.null("int64")),
        month_ok.ifelse(month, 1),
        day_ok.ifelse(day, 1),
    )
    return ibis.coalesce(person.birth_datetime.date(), built)


def _births(ctx: CheckContext) -> ir.Table:
    """``_pid -> _born``: the earliest birth date of each person (see :func:`earliest_birth`)."""
    p = ctx.table("person")
    p = p.select(_pid=p.person_id, _b=earliest_birth(p))
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
    """The CDM tables the named enrichments read.

    Parameters
    ----------
    names
        Names of :data:`ENRICHMENTS`.

    Returns
    -------
    tuple of str
        One table name per enrichment, in the order given.
    """
    return tuple(ENRICHMENTS[n][1] for n in names)


def enriched(ctx: CheckContext, table: str, names: Iterable[str]) -> ir.Table:
    """CDM ``table`` with the columns of the named enrichments (NULL where unknown).

    Each enrichment has one row per person, so the result has exactly the rows of ``table``.

    Parameters
    ----------
    ctx
        The site's check context.
    table
        A CDM table with a ``person_id`` column.
    names
        Names of :data:`ENRICHMENTS` (``birth`` adds ``_born``, ``death`` ``_died``,
        ``first_observation`` ``_first_obs``).

    Returns
    -------
    ibis.expr.types.Table
        The lazy, left-joined table.
    """
    t = ctx.table(table)
    for name in sorted(set(names)):
        side = ENRICHMENTS[name][0](ctx)
        t = t.left_join(side, t.person_id == side._pid).drop("_pid")
    return t
