"""What a data-quality check is: a frozen definition plus the context it reads.

A :class:`Check` names one DQD-style rule (Kahn category and subcategory, CDM table and
field, threshold) and knows how to build two lazy ibis tables from a site's CDM: the rows it
looks at (the denominator) and the rows that violate the rule (``record_id``, ``person_id``).
Nothing here executes a query; :mod:`clinnova_explore.quality.runner` does.

Checks that are a row predicate on their own table carry a :attr:`Check.rule` (built with
:func:`clinnova_explore.quality.rules.row_check`); the runner evaluates all such checks of one
table in a single aggregate query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import Literal

import ibis
import ibis.expr.types as ir

from clinnova_explore.cdm.schema import PRIMARY_KEYS
from clinnova_explore.quality.dbapi import run_sql

__all__ = [
    "CATEGORIES",
    "SUBCATEGORIES",
    "Check",
    "CheckContext",
    "MissingTableError",
    "Rule",
    "record_ids",
]

Category = Literal["conformance", "completeness", "plausibility"]
Subcategory = Literal["relational", "value", "computational", "temporal", "atemporal"]
Level = Literal["table", "field", "concept"]

#: Kahn et al. (2016) categories as used by the OHDSI DataQualityDashboard.
CATEGORIES: tuple[str, ...] = ("conformance", "completeness", "plausibility")
SUBCATEGORIES: tuple[str, ...] = ("relational", "value", "computational", "temporal", "atemporal")


class MissingTableError(LookupError):
    """A check needs a table the site's database does not have."""


class CheckContext:
    """The lazy tables of one site's CDM and the reference dates checks compare against.

    Parameters
    ----------
    con
        The site's ibis backend.
    today
        "Now" for future-date checks; default: the current date.
    """

    def __init__(self, con: ibis.BaseBackend, *, today: date | None = None) -> None:
        self.con = con
        self.today = today or date.today()
        self._tables: dict[str, ir.Table] = {}

    @cached_property
    def table_names(self) -> frozenset[str]:
        """Names of the tables present in the site's database."""
        return frozenset(self.con.list_tables())

    def has(self, name: str) -> bool:
        """Whether the site's database has a table.

        Parameters
        ----------
        name
            Table name.

        Returns
        -------
        bool
            True when the table exists.
        """
        return name in self.table_names

    def table(self, name: str) -> ir.Table:
        """A lazy ibis table of the site (looked up once, then reused).

        Parameters
        ----------
        name
            Table name.

        Returns
        -------
        ibis.expr.types.Table
            The table expression.

        Raises
        ------
        MissingTableError
            When the site's database has no such table.
        """
        if name not in self._tables:
            if not self.has(name):
                raise MissingTableError(f"table {name!r} is not in the site database")
            self._tables[name] = self.con.table(name)
        return self._tables[name]

    @cached_property
    def data_cut(self) -> date:
        """The latest plausible event date: ``cdm_source.source_release_date`` or today.

        The earlier of the two when both are known, so an export dated in the past flags
        events recorded after it.
        """
        if not self.has("cdm_source"):
            return self.today
        src = self.table("cdm_source")
        try:
            sql = self.con.compile(src.aggregate(cut=src.source_release_date.max()))
            released = run_sql(self.con, str(sql))[1][0][0]
        except Exception:  # a malformed cdm_source falls back to today; its checks say why
            return self.today
        if released is None:
            return self.today
        if isinstance(released, datetime):
            released = released.date()
        return min(released, self.today)


#: ``rule(table, ctx) -> (scope, violated)``: boolean expressions on the check's own table.
#: ``scope`` selects the rows checked (``None`` = all rows); a row violates the check when
#: both ``scope`` and ``violated`` are true (NULL counts as false).
Rule = Callable[[ir.Table, CheckContext], tuple[ir.BooleanValue | None, ir.BooleanValue]]
Builder = Callable[[CheckContext], ir.Table]


@dataclass(frozen=True)
class Check:
    """One data-quality check.

    Attributes
    ----------
    check_id
        Stable identifier ``<kind>.<cdm_table>[.<field or concept>]``.
    category, subcategory
        Kahn's framework as in the DQD: conformance / completeness / plausibility and
        relational / value / computational / temporal / atemporal.
    level
        ``table``, ``field`` or ``concept`` (DQD check levels).
    cdm_table, cdm_field
        Where the check looks; the returned ``record_id`` is the primary key of ``cdm_table``.
    description
        One sentence a reader of the report understands.
    threshold
        Largest percentage of violating rows for which the check still passes.
    violations
        ``ctx -> ibis.Table`` of violating rows with ``record_id`` and ``person_id`` (int64).
    denominator
        ``ctx -> ibis.Table`` of the rows checked.
    tables
        CDM tables the check reads; when one is missing the check is not applicable.
    rule
        Set for single-table row predicates, which the runner batches per table.
    enrich
        Per-person columns the rule reads (names of
        :data:`~clinnova_explore.quality.enrich.ENRICHMENTS`).
    """

    check_id: str
    category: Category
    subcategory: Subcategory
    level: Level
    cdm_table: str
    cdm_field: str | None
    description: str
    threshold: float
    violations: Builder = field(repr=False)
    denominator: Builder = field(repr=False)
    tables: tuple[str, ...] = ()
    rule: Rule | None = field(default=None, repr=False)
    enrich: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"check {self.check_id}: unknown category {self.category!r}")
        if self.subcategory not in SUBCATEGORIES:
            raise ValueError(f"check {self.check_id}: unknown subcategory {self.subcategory!r}")
        if not 0 <= self.threshold <= 100:
            raise ValueError(f"check {self.check_id}: threshold must be a percentage")
        if not self.tables:
            object.__setattr__(self, "tables", (self.cdm_table,))

    @property
    def kind(self) -> str:
        """The check id up to the first dot.

        Examples
        --------
        >>> from clinnova_explore.quality import get_check
        >>> get_check("date_out_of_range_future.measurement").kind
        'date_out_of_range_future'
        """
        return self.check_id.split(".", 1)[0]


def record_ids(t: ir.Table, table: str) -> ir.Table:
    """Project rows of a CDM table to the shape of :attr:`Check.violations`.

    Parameters
    ----------
    t
        Rows of CDM ``table``, or of a join carrying its columns.
    table
        The CDM table whose primary key becomes ``record_id``.

    Returns
    -------
    ibis.expr.types.Table
        Columns ``record_id`` and ``person_id`` (int64; NULL when ``table`` has no primary
        key or no ``person_id``), one row per row of ``t``.
    """
    pk = PRIMARY_KEYS.get(table)
    rid = t[pk].cast("int64") if pk else ibis.null("int64")
    pid = t.person_id.cast("int64") if "person_id" in t.columns else ibis.null("int64")
    return t.select(record_id=rid, person_id=pid)
