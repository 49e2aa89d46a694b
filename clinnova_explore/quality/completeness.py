"""Completeness checks: persons without records, measurements without value or unit."""

from __future__ import annotations

import ibis.expr.types as ir

from clinnova_explore.quality.check import Check, CheckContext
from clinnova_explore.quality.rules import row_check

__all__ = ["completeness_checks"]

#: Table -> largest share (%) of persons allowed to have no record in it.
PERSON_COMPLETENESS: dict[str, float] = {"observation_period": 0, "visit_occurrence": 5}


def _person_without(table: str, threshold: float) -> Check:
    def rule(t: ir.Table, ctx: CheckContext) -> tuple[None, ir.BooleanValue]:
        r = ctx.table(table)
        return None, ~t.person_id.isin(r.filter(r.person_id.notnull()).person_id)

    return row_check(
        f"person_without_record.{table}",
        category="completeness",
        subcategory="value",
        level="table",
        cdm_table="person",
        cdm_field=None,
        threshold=threshold,
        description=f"person has no {table} record",
        rule=rule,
        tables=(table,),
    )


def completeness_checks() -> list[Check]:
    """Completeness checks of persons and measurements.

    Returns
    -------
    list of Check
        ``person_without_record.<table>`` for the tables of :data:`PERSON_COMPLETENESS`,
        ``measurement_value_missing.measurement`` and
        ``measurement_unit_missing.measurement``.
    """
    out = [_person_without(t, thr) for t, thr in PERSON_COMPLETENESS.items()]
    out.append(
        row_check(
            "measurement_value_missing.measurement",
            category="completeness",
            subcategory="value",
            level="field",
            cdm_table="measurement",
            cdm_field="value_as_number",
            threshold=5,
            description="measurement has neither value_as_number nor value_as_concept_id",
            rule=lambda t, _ctx: (
                None,
                t.value_as_number.isnull()
                & (t.value_as_concept_id.isnull() | (t.value_as_concept_id == 0)),
            ),
        )
    )
    out.append(
        row_check(
            "measurement_unit_missing.measurement",
            category="completeness",
            subcategory="value",
            level="field",
            cdm_table="measurement",
            cdm_field="unit_concept_id",
            threshold=5,
            description="measurement has a numeric value but no unit concept",
            rule=lambda t, _ctx: (
                t.value_as_number.notnull(),
                t.unit_concept_id.isnull() | (t.unit_concept_id == 0),
            ),
        )
    )
    return out
