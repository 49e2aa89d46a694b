"""Row checks: a check defined by a predicate on the rows of its own table.

The predicate may use ``IN`` subqueries on other tables (foreign keys, concept lookups) and
per-person dates joined in by :mod:`clinnova_explore.quality.enrich`; it never changes the
number of rows, so the runner can count every row check of a table in one aggregate query.
"""

from __future__ import annotations

import ibis.expr.types as ir

from clinnova_explore.quality.check import (
    Category,
    Check,
    CheckContext,
    Level,
    Rule,
    Subcategory,
    record_ids,
)
from clinnova_explore.quality.enrich import enriched, enrichment_tables

__all__ = ["row_check"]


def row_check(
    check_id: str,
    *,
    category: Category,
    subcategory: Subcategory,
    level: Level,
    cdm_table: str,
    cdm_field: str | None,
    description: str,
    threshold: float,
    rule: Rule,
    tables: tuple[str, ...] = (),
    enrich: tuple[str, ...] = (),
) -> Check:
    """Build a :class:`Check` from a row predicate on its own table.

    Parameters
    ----------
    check_id, category, subcategory, level, cdm_table, cdm_field, description, threshold
        As the fields of :class:`Check`.
    rule
        ``rule(table, ctx) -> (scope, violated)`` on ``cdm_table`` (with the ``enrich``
        columns); it must not change the number of rows.
    tables
        The other tables the rule's subqueries read.
    enrich
        Per-person columns the rule needs (names of
        :data:`~clinnova_explore.quality.enrich.ENRICHMENTS`); their tables are added to
        the check's dependencies.

    Returns
    -------
    Check
        A check whose denominator is the rows in scope and whose violations are the rows
        in scope for which ``violated`` is true.
    """

    def _scoped(ctx: CheckContext) -> tuple[ir.Table, ir.BooleanValue | None, ir.BooleanValue]:
        t = enriched(ctx, cdm_table, enrich)
        scope, violated = rule(t, ctx)
        return t, scope, violated

    def denominator(ctx: CheckContext) -> ir.Table:
        t, scope, _ = _scoped(ctx)
        return t if scope is None else t.filter(scope)

    def violations(ctx: CheckContext) -> ir.Table:
        t, scope, violated = _scoped(ctx)
        cond = violated if scope is None else scope & violated
        return record_ids(t.filter(cond), cdm_table)

    return Check(
        check_id=check_id,
        category=category,
        subcategory=subcategory,
        level=level,
        cdm_table=cdm_table,
        cdm_field=cdm_field,
        description=description,
        threshold=threshold,
        violations=violations,
        denominator=denominator,
        tables=tuple(dict.fromkeys((cdm_table, *tables, *enrichment_tables(enrich)))),
        rule=rule,
        enrich=enrich,
    )
