"""Conformance checks: required fields, keys, concept validity, unmapped codes, units.

Each function returns a list of :class:`~clinnova_explore.quality.check.Check`; the lists
follow the CDM description in :mod:`clinnova_explore.cdm.schema` (``REQUIRED``,
``PRIMARY_KEYS``, ``FOREIGN_KEYS``, ``CONCEPT_COLUMNS``), so a column added there is checked
without touching this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict

import ibis.expr.types as ir

from clinnova_explore.cdm.concepts import CANONICAL_UNIT
from clinnova_explore.cdm.schema import CONCEPT_COLUMNS, FOREIGN_KEYS, PRIMARY_KEYS, REQUIRED
from clinnova_explore.quality.check import Check, CheckContext, Level
from clinnova_explore.quality.names import concept_label
from clinnova_explore.quality.rules import row_check

__all__ = [
    "CHECKED_TABLES",
    "concept_checks",
    "foreign_key_checks",
    "primary_key_checks",
    "required_checks",
    "unit_checks",
    "unmapped_code_checks",
]

#: The CDM tables whose content the checks cover (not the vocabulary or the cohort table).
CHECKED_TABLES: tuple[str, ...] = tuple(
    t
    for t in REQUIRED
    if t not in {"cohort", "concept", "concept_ancestor", "concept_relationship"}
)

#: A row rule's result: (rows in scope or ``None`` for all rows, rows violating the check).
_Verdict = tuple[ir.BooleanValue | None, ir.BooleanValue]


def required_checks() -> list[Check]:
    """Checks that CDM-required fields are filled.

    Returns
    -------
    list of Check
        ``is_required.<table>.<field>`` for every required field of :data:`CHECKED_TABLES`;
        a row violates it when the field is NULL.
    """
    out = []
    for table in CHECKED_TABLES:
        for col in REQUIRED[table]:

            def rule(t: ir.Table, _ctx: CheckContext, c: str = col) -> _Verdict:
                return None, t[c].isnull()

            out.append(
                row_check(
                    f"is_required.{table}.{col}",
                    category="conformance",
                    subcategory="relational",
                    level="field",
                    cdm_table=table,
                    cdm_field=col,
                    threshold=0,
                    description=f"{table}.{col} is required by the CDM but NULL",
                    rule=rule,
                )
            )
    return out


def primary_key_checks() -> list[Check]:
    """Checks that primary keys are unique.

    Returns
    -------
    list of Check
        ``is_primary_key.<table>``; every row whose (non-NULL) key value occurs more than
        once violates it, so a value shared by two rows counts twice.
    """
    out = []
    for table, pk in PRIMARY_KEYS.items():
        if table not in CHECKED_TABLES:
            continue

        def rule(
            t: ir.Table, ctx: CheckContext, table: str = table, pk: str = pk
        ) -> tuple[None, ir.BooleanValue]:
            raw = ctx.table(table)
            keyed = raw.filter(raw[pk].notnull())
            dup = keyed.group_by(pk).aggregate(_n=keyed.count())
            return None, t[pk].isin(dup.filter(dup._n > 1)[pk])

        out.append(
            row_check(
                f"is_primary_key.{table}",
                category="conformance",
                subcategory="relational",
                level="field",
                cdm_table=table,
                cdm_field=pk,
                threshold=0,
                rule=rule,
                description=f"{table}.{pk} value is not unique (every row sharing it counts)",
            )
        )
    return out


def _keys(
    ctx: CheckContext,
    table: str,
    col: str,
    where: Callable[[ir.Table], ir.BooleanValue] | None = None,
) -> ir.Column:
    """Non-NULL values of ``table.col`` (optionally filtered), for an ``IN`` subquery."""
    r = ctx.table(table)
    cond = r[col].notnull() if where is None else r[col].notnull() & where(r)
    return r.filter(cond)[col]


def foreign_key_checks() -> list[Check]:
    """Checks that references point at existing rows.

    Returns
    -------
    list of Check
        ``is_foreign_key.<table>.<field>``; a non-NULL reference with no matching row of the
        referenced table violates it (NULL references are not checked).
    """
    out = []
    for (table, col), (ref, ref_col) in FOREIGN_KEYS.items():
        if table not in CHECKED_TABLES:
            continue

        def rule(
            t: ir.Table, ctx: CheckContext, c: str = col, r: str = ref, rc: str = ref_col
        ) -> _Verdict:
            return t[c].notnull(), ~t[c].isin(_keys(ctx, r, rc))

        out.append(
            row_check(
                f"is_foreign_key.{table}.{col}",
                category="conformance",
                subcategory="relational",
                level="field",
                cdm_table=table,
                cdm_field=col,
                threshold=0,
                tables=(ref,),
                description=f"{table}.{col} refers to no row of {ref}.{ref_col} (NULL is allowed)",
                rule=rule,
            )
        )
    return out


def _nonzero(t: ir.Table, col: str) -> ir.BooleanValue:
    return t[col].notnull() & (t[col] != 0)


def _known(t: ir.Table, ctx: CheckContext, col: str) -> ir.BooleanValue:
    return _nonzero(t, col) & t[col].isin(_keys(ctx, "concept", "concept_id"))


class _FieldCheckArgs(TypedDict):
    level: Level
    cdm_table: str
    cdm_field: str
    threshold: float
    tables: tuple[str, ...]


def concept_checks() -> list[Check]:
    """Concept ids of each table's main concept column exist, are standard, fit the domain.

    ``concept_exists.<table>.<field>``, ``is_standard_concept.<table>.<field>`` and
    ``concept_domain.<table>.<field>``. Concept id 0 ("no matching concept") is left to
    :func:`unmapped_code_checks`; the standard and domain checks look at existing concepts.

    Returns
    -------
    list of Check
        Three checks per entry of ``CONCEPT_COLUMNS``.
    """
    out = []
    for table, (col, domain) in CONCEPT_COLUMNS.items():
        common: _FieldCheckArgs = {
            "level": "field",
            "cdm_table": table,
            "cdm_field": col,
            "threshold": 0,
            "tables": ("concept",),
        }

        def exists(t: ir.Table, ctx: CheckContext, c: str = col) -> _Verdict:
            return _nonzero(t, c), ~t[c].isin(_keys(ctx, "concept", "concept_id"))

        def standard(t: ir.Table, ctx: CheckContext, c: str = col) -> _Verdict:
            return _known(t, ctx, c), ~t[c].isin(
                _keys(ctx, "concept", "concept_id", lambda r: r.standard_concept == "S")
            )

        def in_domain(t: ir.Table, ctx: CheckContext, c: str = col, d: str = domain) -> _Verdict:
            return _known(t, ctx, c), ~t[c].isin(
                _keys(ctx, "concept", "concept_id", lambda r: r.domain_id == d)
            )

        out += [
            row_check(
                f"concept_exists.{table}.{col}",
                category="conformance",
                subcategory="relational",
                **common,
                description=f"{table}.{col} is not a concept id of the vocabulary",
                rule=exists,
            ),
            row_check(
                f"is_standard_concept.{table}.{col}",
                category="conformance",
                subcategory="value",
                **common,
                description=f"{table}.{col} is not a standard ('S') concept",
                rule=standard,
            ),
            row_check(
                f"concept_domain.{table}.{col}",
                category="conformance",
                subcategory="value",
                **common,
                description=f"{table}.{col} is not a concept of the {domain} domain",
                rule=in_domain,
            ),
        ]
    return out


def _source_column(concept_col: str) -> str:
    return concept_col.removesuffix("_concept_id") + "_source_value"


def unmapped_code_checks() -> list[Check]:
    """Checks for source codes that harmonization could not map.

    Returns
    -------
    list of Check
        ``unmapped_code.<table>``; a row violates it when its main concept id is 0 although
        its source value is present (not NULL, not blank).
    """
    out = []
    for table, (col, _domain) in CONCEPT_COLUMNS.items():
        src = _source_column(col)

        def rule(t: ir.Table, _ctx: CheckContext, c: str = col, s: str = src) -> _Verdict:
            return None, (t[c] == 0) & t[s].notnull() & (t[s].strip() != "")

        out.append(
            row_check(
                f"unmapped_code.{table}",
                category="conformance",
                subcategory="value",
                level="field",
                cdm_table=table,
                cdm_field=col,
                threshold=5,
                description=f"{table}.{col} is 0 (no standard concept) although {src} is given",
                rule=rule,
            )
        )
    return out


def unit_checks() -> list[Check]:
    """Measurement units: a known unit concept, and the canonical unit of each measurement.

    ``unit_concept_valid.measurement`` flags unit concept ids that are not ``Unit`` concepts
    of the vocabulary; ``unit_canonical.measurement.<concept_id>`` flags values recorded in
    another unit than the one harmonization converts to.

    Returns
    -------
    list of Check
        ``unit_concept_valid.measurement``, then one ``unit_canonical`` check per entry of
        ``CANONICAL_UNIT``.
    """

    out = [
        row_check(
            "unit_concept_valid.measurement",
            category="conformance",
            subcategory="value",
            level="field",
            cdm_table="measurement",
            cdm_field="unit_concept_id",
            threshold=0,
            tables=("concept",),
            description="measurement.unit_concept_id is not a Unit concept of the vocabulary",
            rule=lambda t, ctx: (
                _nonzero(t, "unit_concept_id"),
                ~t.unit_concept_id.isin(
                    _keys(ctx, "concept", "concept_id", lambda r: r.domain_id == "Unit")
                ),
            ),
        )
    ]
    for concept_id, unit in CANONICAL_UNIT.items():

        def rule(t: ir.Table, _ctx: CheckContext, cid: int = concept_id, u: int = unit) -> _Verdict:
            return (
                (t.measurement_concept_id == cid)
                & t.unit_concept_id.notnull()
                & (t.unit_concept_id != 0),
                t.unit_concept_id != u,
            )

        out.append(
            row_check(
                f"unit_canonical.measurement.{concept_id}",
                category="conformance",
                subcategory="value",
                level="concept",
                cdm_table="measurement",
                cdm_field="unit_concept_id",
                threshold=0,
                description=(
                    f"{concept_label(concept_id)} is not recorded in its canonical unit "
                    f"{concept_label(unit)}"
                ),
                rule=rule,
            )
        )
    return out
