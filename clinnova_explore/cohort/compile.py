"""Compile a :class:`CohortDefinition` into lazy ibis expressions on one CDM.

The stages mirror Circe's generated SQL, each a lazy table built on the previous one:

1. entry events: the union of the entry criteria's events that start inside an observation
   period with ``prior_days`` before and ``post_days`` after them; per person the first, last
   or all of them (``entry.limit``), ordered by start date then record id; ``event_id``
   numbers them per person;
2. qualified events: entry events satisfying ``additional_criteria``, then limited per person by
   ``qualified_limit`` (only when additional criteria are given, as Circe does);
3. included events: qualified events satisfying every inclusion rule (each rule is a filter, so
   the stages after each rule give ATLAS's cumulative attrition), limited by
   ``expression_limit``;
4. cohort eras: each included event ends per the exit strategy and censoring events, eras are
   collapsed with ``pad_days`` and clipped to the censor window.

Nothing runs until a result is asked for (:meth:`CompiledCohort.count`,
:meth:`CompiledCohort.attrition`, ``.cohort.execute()``); the whole cohort is a single query.
:func:`count_and_attrition` asks for both counts and the attrition in one query. On DuckDB and
PostgreSQL their SQL text is compiled once per definition and source layout and then reused
(:mod:`clinnova_explore.cohort.sqlcache`): a repeated count, or the same count at a site laid
out like one already counted, costs only the query itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import pandas as pd

from clinnova_explore.catalog import DisclosurePolicy
from clinnova_explore.cdm.source import CdmSource
from clinnova_explore.cohort import sqlcache
from clinnova_explore.cohort.criteria import filter_group
from clinnova_explore.cohort.events import EventSource
from clinnova_explore.cohort.exits import apply_censor_window, collapse_eras, event_ends
from clinnova_explore.cohort.model import CohortDefinition, Limit

__all__ = [
    "ENTRY_ROW",
    "CompiledCohort",
    "cohort_rows",
    "compile_cohort",
    "count_and_attrition",
]

ENTRY_ROW = "Qualifying entry events"
"""Name of the first attrition row (the qualified events before any inclusion rule)."""

INDEX_COLUMNS = (
    "person_id",
    "event_id",
    "start_date",
    "end_date",
    "op_start",
    "op_end",
    "visit_occurrence_id",
)


@dataclass(frozen=True)
class CompiledCohort:
    """A cohort definition compiled for one CDM: lazy tables plus ways to run them.

    Attributes
    ----------
    definition
        The compiled definition.
    cdm
        The CDM source the expressions read.
    entry_events
        Entry events after the entry limit: ``person_id, event_id, start_date, end_date,
        op_start, op_end, visit_occurrence_id``.
    qualified_events
        Entry events after additional criteria and the qualified limit (same columns).
    rule_stages
        Qualified events remaining after inclusion rules 1..k, for k = 1..n (same columns).
    included_events
        Events after all inclusion rules and the expression limit (same columns).
    cohort
        One row per cohort era: ``subject_id`` (int64), ``cohort_start_date``,
        ``cohort_end_date`` (dates).
    tables
        The CDM tables the expressions read, by name (what the compiled SQL depends on).
    """

    definition: CohortDefinition
    cdm: CdmSource
    entry_events: ir.Table
    qualified_events: ir.Table
    rule_stages: tuple[ir.Table, ...]
    included_events: ir.Table
    cohort: ir.Table
    tables: Mapping[str, ir.Table] = field(default_factory=dict)

    def attrition_expr(self) -> ir.Table:
        """Lazy attrition: ``stage`` (0 = qualified events, k = after rule k), persons, records."""
        stages = (self.qualified_events, *self.rule_stages)
        parts = [
            stage.select("person_id", stage=ibis.literal(k, "int64"))
            for k, stage in enumerate(stages)
        ]
        stacked = reduce(lambda a, b: a.union(b), parts)
        return stacked.group_by("stage").aggregate(
            persons=stacked.person_id.nunique(), records=stacked.count()
        )

    def count_expr(self) -> ir.Table:
        """Lazy count of the cohort: one row, ``persons`` and ``records`` (eras)."""
        c = self.cohort
        return c.aggregate(persons=c.subject_id.nunique(), records=c.count())

    def summary_expr(self) -> ir.Table:
        """Lazy counts and attrition in one query: the attrition rows of
        :meth:`attrition_expr` plus the cohort count as ``stage`` -1."""
        c = self.cohort
        final = c.aggregate(
            stage=ibis.literal(-1, "int64"), persons=c.subject_id.nunique(), records=c.count()
        )
        return final.union(self.attrition_expr())

    def attrition(self) -> pd.DataFrame:
        """Persons and records remaining after each inclusion rule, cumulatively (one query).

        Returns
        -------
        pandas.DataFrame
            Columns ``rule``, ``persons``, ``records``; the first row is
            ``"Qualifying entry events"``, then one row per inclusion rule in order. Persons are
            the distinct persons among the qualified events passing rules 1..k, records the
            number of those events (before the expression limit and era collapse).
        """
        return _attrition_frame(
            self.definition, _rows(self.definition, self.cdm, "attrition", self)
        )

    def count(self) -> dict[str, int]:
        """Persons and records (eras) in the cohort: ``{"persons": n, "records": m}``."""
        ((persons, records),) = _rows(self.definition, self.cdm, "count", self)
        return {"persons": int(persons), "records": int(records)}

    def to_pandas(self) -> pd.DataFrame:
        """The cohort rows, sorted by subject and start date (cached SQL where allowed)."""
        return _frame(self.definition, self.cdm, self)

    def to_sql(self, dialect: str = "duckdb") -> str:
        """The SQL of the cohort query in a dialect ibis knows (``duckdb``, ``postgres``, ...)."""
        return str(ibis.to_sql(self.cohort, dialect=dialect))


Query = Literal["count", "attrition", "summary", "rows"]

COHORT_SCHEMA = ibis.schema(
    {"subject_id": "int64", "cohort_start_date": "date", "cohort_end_date": "date"}
)
"""Columns and types of :attr:`CompiledCohort.cohort`."""


def _query(compiled: CompiledCohort, what: Query) -> ir.Table:
    if what == "count":
        return compiled.count_expr()
    if what == "attrition":
        return compiled.attrition_expr()
    if what == "rows":
        return compiled.cohort
    return compiled.summary_expr()


def _sql(
    definition: CohortDefinition, cdm: CdmSource, what: Query, compiled: CompiledCohort | None
) -> tuple[str | None, ir.Table | None]:
    """The SQL text of query ``what`` from the cache, or the expression to run instead.

    Without ``compiled``, a cached plan (the tables the definition reads) gives the source
    signature and the SQL without building any expression; the definition is compiled only
    when that SQL is not cached yet. Returns ``(sql, None)`` where SQL text may run, else
    ``(None, expression)``.
    """
    con = cdm.connect()
    digest = definition.definition_hash
    plan_key = (digest, what, sqlcache.backend_key(con))
    raw = getattr(con, "name", "") in sqlcache.RAW_SQL_BACKENDS
    if raw and compiled is None and (sql := _planned_sql(plan_key, cdm)) is not None:
        return sql, None
    if compiled is None:
        compiled = compile_cohort(definition, cdm)
    expr = _query(compiled, what)
    # a cohort built by hand may not say which tables it reads: its SQL is not shared
    if not raw or not compiled.tables or sqlcache.uses_memory_tables(expr):
        return None, expr
    key = (digest, what, sqlcache.source_signature(cdm, compiled.tables, compiled.tables))
    sql = sqlcache.SQL.get(key)
    if sql is None:
        sql = str(con.compile(expr))
        sqlcache.SQL.put(key, sql)
        sqlcache.PLANS.put(plan_key, tuple(sorted(compiled.tables)))
    return sql, None


def _rows(
    definition: CohortDefinition, cdm: CdmSource, what: Query, compiled: CompiledCohort | None
) -> list[tuple[Any, ...]]:
    """The rows of query ``what``, run from cached SQL text where the backend allows it."""
    sql, expr = _sql(definition, cdm, what, compiled)
    if sql is not None:
        return sqlcache.fetch_rows(cdm.connect(), sql)
    assert expr is not None
    return list(expr.execute().itertuples(index=False, name=None))


def _frame(
    definition: CohortDefinition, cdm: CdmSource, compiled: CompiledCohort | None
) -> pd.DataFrame:
    """The sorted cohort rows as a DataFrame typed as :data:`COHORT_SCHEMA`."""
    sql, expr = _sql(definition, cdm, "rows", compiled)
    con = cdm.connect()
    if sql is not None and getattr(con, "name", "") == "duckdb":
        # straight from DuckDB into pandas, typed as ibis would type it
        raw = con.con.execute(sql).df()
        frame = raw.astype(_PANDAS_TYPES)
    else:
        if sql is not None:
            expr = con.sql(sql, schema=COHORT_SCHEMA)
        assert expr is not None
        frame = expr.to_pandas()
    frame = frame.sort_values(["subject_id", "cohort_start_date"], kind="stable")
    return frame.reset_index(drop=True)


_PANDAS_TYPES = {
    "subject_id": "int64",
    "cohort_start_date": "datetime64[s]",
    "cohort_end_date": "datetime64[s]",
}


def cohort_rows(definition: CohortDefinition, cdm: CdmSource) -> pd.DataFrame:
    """The cohort's rows at one source, sorted by subject and start date.

    Equal to ``compile_cohort(definition, cdm).to_pandas()``; like
    :func:`count_and_attrition`, a repeated call (or one at a source laid out like one already
    asked) runs the cached SQL without building the ibis expressions again.

    Parameters
    ----------
    definition
        The cohort definition.
    cdm
        Any CDM source.

    Returns
    -------
    pandas.DataFrame
        ``subject_id`` (int64), ``cohort_start_date``, ``cohort_end_date``
        (``datetime64[s]``), one row per cohort era.
    """
    return _frame(definition, cdm, None)


def _planned_sql(plan_key: tuple[str, Query, tuple[str, str]], cdm: CdmSource) -> str | None:
    """Cached SQL for a definition already compiled on a source laid out like ``cdm``."""
    tables = sqlcache.PLANS.get(plan_key)
    if tables is None:
        return None
    try:
        signature = sqlcache.source_signature(cdm, tables)
    except Exception:  # e.g. a table missing here: compiling reports it in its own words
        return None
    digest, what, _ = plan_key
    return sqlcache.SQL.get((digest, what, signature))


def _attrition_frame(definition: CohortDefinition, rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """Attrition rows ``(stage, persons, records)`` as the frame :meth:`attrition` returns."""
    by_stage = {int(stage): (int(persons), int(records)) for stage, persons, records in rows}
    names = [ENTRY_ROW, *(rule.name for rule in definition.inclusion_rules)]
    frame = pd.DataFrame(
        [(name, *by_stage.get(k, (0, 0))) for k, name in enumerate(names)],
        columns=["rule", "persons", "records"],
    )
    return frame.astype({"persons": "int64", "records": "int64"})


def count_and_attrition(
    definition: CohortDefinition, cdm: CdmSource
) -> tuple[dict[str, int], pd.DataFrame]:
    """The cohort's counts and its attrition at one source, in one query.

    Equal to ``compiled.count(), compiled.attrition()`` of ``compile_cohort(definition,
    cdm)``. On DuckDB and PostgreSQL the SQL is compiled once per definition and source layout
    and reused (see :mod:`clinnova_explore.cohort.sqlcache`): a repeated call, or a call at a
    source laid out like one already counted, builds no ibis expression at all.

    Parameters
    ----------
    definition
        The cohort definition.
    cdm
        Any CDM source.

    Returns
    -------
    tuple of dict and pandas.DataFrame
        ``{"persons": n, "records": m}`` (cohort eras) and the attrition frame of
        :meth:`CompiledCohort.attrition`.
    """
    rows = _rows(definition, cdm, "summary", None)
    final = [r for r in rows if int(r[0]) == -1]
    persons, records = (int(final[0][1]), int(final[0][2])) if final else (0, 0)
    steps = [r for r in rows if int(r[0]) >= 0]
    return {"persons": persons, "records": records}, _attrition_frame(definition, steps)


class _RecordingSource:
    """A CDM source that remembers every table the compiler asks it for."""

    def __init__(self, cdm: CdmSource) -> None:
        self._cdm = cdm
        self.tables: dict[str, ir.Table] = {}

    @property
    def id(self) -> str:
        return self._cdm.id

    @property
    def policy(self) -> DisclosurePolicy:
        return self._cdm.policy

    def connect(self) -> ibis.BaseBackend:
        return self._cdm.connect()

    def table(self, name: str) -> ir.Table:
        table = self._cdm.table(name)
        self.tables[name] = table
        return table


def _limit(events: ir.Table, kind: Limit) -> ir.Table:
    """Keep each person's first (or last) event by start date, then event id."""
    start = events.start_date.desc() if kind == "last" else events.start_date.asc()
    rank = ibis.row_number().over(group_by=events.person_id, order_by=[start, events.event_id])
    ranked = events.mutate(_rank=rank)
    return ranked.filter(ranked._rank == 0).drop("_rank")


def _entry_events(defn: CohortDefinition, source: EventSource) -> ir.Table:
    parts = [
        source.events(crit).mutate(criterion=ibis.literal(i, "int64"))
        for i, crit in enumerate(defn.entry.events)
    ]
    events = reduce(lambda a, b: a.union(b), parts)
    raw = source.table("observation_period")
    op = source.project(
        "observation_period",
        op_person_id=raw.person_id.cast("int64"),
        op_start=raw.observation_period_start_date.cast("date"),
        op_end=raw.observation_period_end_date.cast("date"),
    )
    joined = events.join(
        op,
        [
            events.person_id == op.op_person_id,
            events.start_date >= op.op_start,
            events.start_date <= op.op_end,
        ],
    )
    window = defn.entry.observation
    conds: list[ir.BooleanValue] = []
    if window.prior_days:
        conds.append(joined.start_date.delta(joined.op_start, unit="day") >= window.prior_days)
    if window.post_days:
        conds.append(joined.op_end.delta(joined.start_date, unit="day") >= window.post_days)
    if conds:
        joined = joined.filter(*conds)
    limit = defn.entry.limit
    if len(defn.entry.events) == 1 and defn.entry.events[0].first:
        # one event per person already (observation periods of a person do not overlap)
        ranked = joined.mutate(event_id=ibis.literal(1, "int64"))
    else:
        start = joined.start_date.desc() if limit == "last" else joined.start_date.asc()
        ordinal = ibis.row_number().over(
            group_by=joined.person_id, order_by=[start, joined.record_id, joined.criterion]
        )
        ranked = joined.mutate(event_id=(ordinal + 1).cast("int64"))
        if limit != "all":
            ranked = ranked.filter(ranked.event_id == 1)
    return ranked.select(*INDEX_COLUMNS)


def compile_cohort(definition: CohortDefinition, cdm: CdmSource) -> CompiledCohort:
    """Compile a cohort definition into lazy ibis expressions on ``cdm``.

    Parameters
    ----------
    definition
        The cohort definition.
    cdm
        Any CDM source (a catalog site, :func:`clinnova_explore.cdm.source.open_cdm` result);
        all tables must live on one backend.

    Returns
    -------
    CompiledCohort
        Lazy tables of each stage; ``.cohort`` holds the cohort eras.

    Examples
    --------
    >>> from clinnova_explore.cohort import CohortDefinition, compile_cohort
    >>> defn = CohortDefinition.from_yaml("ms_diagnosis.yaml")  # doctest: +SKIP
    >>> compiled = compile_cohort(defn, site)  # doctest: +SKIP
    >>> compiled.count()  # doctest: +SKIP
    {'persons': 512, 'records': 512}
    """
    prefix = f"cohort_{definition.definition_hash[:8]}"
    reads = _RecordingSource(cdm)
    source = EventSource(definition, reads, prefix)
    entry = _entry_events(definition, source).alias(f"{prefix}_entry_events")
    single_first = len(definition.entry.events) == 1 and definition.entry.events[0].first
    one_per_person = definition.entry.limit != "all" or single_first

    qualified = entry
    if definition.additional_criteria is not None:
        qualified = filter_group(qualified, definition.additional_criteria, source)
        if definition.qualified_limit != "all" and not one_per_person:
            qualified = _limit(qualified, definition.qualified_limit)
            one_per_person = True
        qualified = qualified.alias(f"{prefix}_qualified_events")

    stages: list[ir.Table] = []
    current = qualified
    for k, rule in enumerate(definition.inclusion_rules, start=1):
        current = filter_group(current, rule.group, source).alias(f"{prefix}_rule_{k}")
        stages.append(current)

    included = current
    if definition.expression_limit != "all" and not one_per_person:
        included = _limit(included, definition.expression_limit).alias(f"{prefix}_included_events")
        one_per_person = True

    ends = event_ends(included, definition.exit, definition.censoring, source)
    if one_per_person:  # a single era per person: collapsing changes nothing
        eras = ends.select("person_id", "start_date", "end_date")
    else:
        eras = collapse_eras(ends, definition.collapse.pad_days)
    eras = apply_censor_window(eras, definition.censor_window)
    cohort = eras.select(
        subject_id=eras.person_id.cast("int64"),
        cohort_start_date=eras.start_date.cast("date"),
        cohort_end_date=eras.end_date.cast("date"),
    )
    return CompiledCohort(
        definition=definition,
        cdm=cdm,
        entry_events=entry,
        qualified_events=qualified,
        rule_stages=tuple(stages),
        included_events=included,
        cohort=cohort,
        tables=dict(reads.tables),
    )
