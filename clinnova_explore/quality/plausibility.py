"""Plausibility checks: dates within life and data, ends after starts, plausible values.

The temporal checks on event dates share the prefix ``date_out_of_range`` and name the rule
that fired (``_before_birth``, ``_after_death``, ``_future``, ``_outside_observation``), so a
report says *why* a date is out of range while the synthetic truth's catcher (a prefix) still
matches all of them.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from clinnova_explore.cdm.concepts import CANONICAL_UNIT, FEMALE, MALE, PLAUSIBLE_RANGE
from clinnova_explore.quality.check import Check, CheckContext, record_ids
from clinnova_explore.quality.names import concept_label
from clinnova_explore.quality.rules import row_check

__all__ = [
    "DEATH_GRACE_DAYS",
    "EVENT_START",
    "MAX_AGE",
    "MIN_YEAR_OF_BIRTH",
    "plausibility_checks",
]

#: The start date of each clinical event table.
EVENT_START: dict[str, str] = {
    "visit_occurrence": "visit_start_date",
    "condition_occurrence": "condition_start_date",
    "drug_exposure": "drug_exposure_start_date",
    "procedure_occurrence": "procedure_date",
    "measurement": "measurement_date",
    "observation": "observation_date",
}
_PERIOD = {"observation_period": "observation_period_start_date"}
_DEATH = {"death": "death_date"}

#: (start, end) date columns of tables with a duration.
START_END: dict[str, tuple[str, str]] = {
    "visit_occurrence": ("visit_start_date", "visit_end_date"),
    "condition_occurrence": ("condition_start_date", "condition_end_date"),
    "drug_exposure": ("drug_exposure_start_date", "drug_exposure_end_date"),
    "procedure_occurrence": ("procedure_date", "procedure_end_date"),
    "observation_period": ("observation_period_start_date", "observation_period_end_date"),
}

DEATH_GRACE_DAYS = 30
MIN_YEAR_OF_BIRTH = 1900
MAX_AGE = 110


def _dated(ctx: CheckContext, table: str, col: str) -> ir.Table:
    t = ctx.table(table)
    return t.filter(t[col].notnull())


def _before_birth(table: str, col: str) -> Check:
    what = "death" if table == "death" else "event"
    return row_check(
        f"date_out_of_range_before_birth.{table}",
        category="plausibility",
        subcategory="temporal",
        level="field",
        cdm_table=table,
        cdm_field=col,
        threshold=1,
        description=f"{what} date {table}.{col} is before the person's birth",
        enrich=("birth",),
        rule=lambda t, _ctx: (t[col].notnull() & t._born.notnull(), t[col] < t._born),
    )


def _after_death(table: str, col: str) -> Check:
    grace = ibis.interval(days=DEATH_GRACE_DAYS)
    return row_check(
        f"date_out_of_range_after_death.{table}",
        category="plausibility",
        subcategory="temporal",
        level="field",
        cdm_table=table,
        cdm_field=col,
        threshold=1,
        description=f"{table}.{col} is more than {DEATH_GRACE_DAYS} days after the person's death",
        enrich=("death",),
        rule=lambda t, _ctx: (t[col].notnull() & t._died.notnull(), t[col] > t._died + grace),
    )


def _future(table: str, col: str) -> Check:
    return row_check(
        f"date_out_of_range_future.{table}",
        category="plausibility",
        subcategory="temporal",
        level="field",
        cdm_table=table,
        cdm_field=col,
        threshold=1,
        description=f"{table}.{col} is after the data cut (cdm_source release date or today)",
        rule=lambda t, ctx: (t[col].notnull(), t[col] > ibis.literal(ctx.data_cut)),
    )


def _outside_observation(table: str, col: str) -> Check:
    def violations(ctx: CheckContext) -> ir.Table:
        t = _dated(ctx, table, col)
        op = ctx.table("observation_period")
        op = op.select(
            _pid="person_id",
            _start="observation_period_start_date",
            _end="observation_period_end_date",
        )
        covered = [t.person_id == op._pid, t[col] >= op._start, t[col] <= op._end]
        return record_ids(t.anti_join(op, covered), table)

    return Check(
        f"date_out_of_range_outside_observation.{table}",
        "plausibility",
        "temporal",
        "field",
        table,
        col,
        f"{table}.{col} lies in no observation period of the person",
        5,
        violations=violations,
        denominator=lambda ctx: _dated(ctx, table, col),
        tables=(table, "observation_period"),
    )


def _end_before_start(table: str, start: str, end: str) -> Check:
    return row_check(
        f"end_before_start.{table}",
        category="plausibility",
        subcategory="temporal",
        level="field",
        cdm_table=table,
        cdm_field=end,
        threshold=1,
        description=f"{table}.{end} is before {start}",
        rule=lambda t, _ctx: (t[start].notnull() & t[end].notnull(), t[end] < t[start]),
    )


def _implausible_value(concept_id: int, low: float, high: float) -> Check:
    unit = CANONICAL_UNIT.get(concept_id)
    unit_txt = f" {concept_label(unit)}" if unit is not None else ""

    def rule(t: ir.Table, _ctx: CheckContext) -> tuple[ir.BooleanValue, ir.BooleanValue]:
        in_unit = t.unit_concept_id.isnull() | (t.unit_concept_id == 0)
        if unit is not None:
            in_unit |= t.unit_concept_id == unit
        scope = (t.measurement_concept_id == concept_id) & t.value_as_number.notnull() & in_unit
        return scope, (t.value_as_number < low) | (t.value_as_number > high)

    return row_check(
        f"implausible_value.measurement.{concept_id}",
        category="plausibility",
        subcategory="atemporal",
        level="concept",
        cdm_table="measurement",
        cdm_field="value_as_number",
        threshold=1,
        rule=rule,
        description=(
            f"{concept_label(concept_id)} value is outside {low:g}–{high:g}{unit_txt}"
            " (rows in the canonical unit or without unit)"
        ),
    )


def _age_at_first_observation() -> Check:
    return row_check(
        "plausible_age_at_first_observation.person",
        category="plausibility",
        subcategory="atemporal",
        level="field",
        cdm_table="person",
        cdm_field="year_of_birth",
        threshold=0,
        enrich=("first_observation",),
        description=f"person is older than {MAX_AGE} at the first observation",
        rule=lambda t, _ctx: (
            t.year_of_birth.notnull() & t._first_obs.notnull(),
            t._first_obs.year() - t.year_of_birth > MAX_AGE,
        ),
    )


def plausibility_checks() -> list[Check]:
    """All plausibility checks (temporal first, then atemporal).

    Returns
    -------
    list of Check
        ``date_out_of_range_*``, ``end_before_start``, ``implausible_value``,
        ``plausible_year_of_birth``, ``plausible_age_at_first_observation`` and
        ``gender_concept_allowed`` checks. Dates are compared with the data cut
        (:attr:`~clinnova_explore.quality.check.CheckContext.data_cut`), birth dates with
        the earliest birth date the person's known birth fields allow
        (:func:`~clinnova_explore.quality.enrich.earliest_birth`).
    """
    out: list[Check] = []
    out += [_before_birth(t, c) for t, c in {**EVENT_START, **_PERIOD, **_DEATH}.items()]
    out += [_after_death(t, c) for t, c in {**EVENT_START, **_PERIOD}.items()]
    out += [_future(t, c) for t, c in {**EVENT_START, **_PERIOD, **_DEATH}.items()]
    out += [_outside_observation(t, c) for t, c in EVENT_START.items()]
    out += [_end_before_start(t, s, e) for t, (s, e) in START_END.items()]
    out += [_implausible_value(cid, lo, hi) for cid, (lo, hi) in PLAUSIBLE_RANGE.items()]
    out.append(
        row_check(
            "plausible_year_of_birth.person",
            category="plausibility",
            subcategory="atemporal",
            level="field",
            cdm_table="person",
            cdm_field="year_of_birth",
            threshold=0,
            description=(
                f"year_of_birth is before {MIN_YEAR_OF_BIRTH} or after the year of the "
                "data cut (cdm_source release date or today)"
            ),
            rule=lambda t, ctx: (
                t.year_of_birth.notnull(),
                (t.year_of_birth < MIN_YEAR_OF_BIRTH) | (t.year_of_birth > ctx.data_cut.year),
            ),
        )
    )
    out.append(_age_at_first_observation())
    out.append(
        row_check(
            "gender_concept_allowed.person",
            category="plausibility",
            subcategory="atemporal",
            level="field",
            cdm_table="person",
            cdm_field="gender_concept_id",
            threshold=0,
            description=f"gender_concept_id is neither MALE ({MALE}) nor FEMALE ({FEMALE})",
            rule=lambda t, _ctx: (
                t.gender_concept_id.notnull(),
                ~t.gender_concept_id.isin([MALE, FEMALE]),
            ),
        )
    )
    return out
