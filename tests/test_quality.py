"""Data-quality checks on hand-made CDM databases with one known fault each."""

from __future__ import annotations

import copy
import doctest
import importlib
import inspect
import re
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import ibis
import pandas as pd
import pytest

from clinnova_explore.cdm import concepts as C
from clinnova_explore.cdm.schema import PRIMARY_KEYS, SCHEMAS, create_cdm_tables
from clinnova_explore.cdm.vocabulary import write_vocabulary
from clinnova_explore.quality import (
    CHECKS,
    Check,
    QualityReport,
    get_check,
    overview,
    read_results,
    recall_against_truth,
    run_checks,
    select_checks,
    store_results,
    unexplained_violations,
)

# ibis 12 calls duckdb's fetch_arrow_table(), deprecated in duckdb 1.5 (not our code).
pytestmark = pytest.mark.filterwarnings(
    "ignore:fetch_(arrow_table|record_batch)\\(\\) is deprecated:DeprecationWarning"
)

TODAY = date(2025, 1, 1)
D = date.fromisoformat
Rows = dict[str, list[dict[str, Any]]]

# Source file of each CDM table in the fixture's provenance.
FILES = {
    "person": "patients.csv",
    "death": "patients.csv",
    "visit_occurrence": "visits.csv",
    "condition_occurrence": "diagnoses.csv",
    "drug_exposure": "medications.csv",
    "procedure_occurrence": "procedures.csv",
    "measurement": "labs.csv",
    "observation": "events.csv",
    "observation_period": "visits.csv",
}


def clean_rows() -> Rows:
    """Three persons (person 3 died 2020-06-01), one record of each kind per person."""
    rows: Rows = {t: [] for t in FILES}
    births = {1: D("1970-05-10"), 2: D("1980-01-01"), 3: D("1960-07-15")}
    for pid, born in births.items():
        rows["person"].append(
            {
                "person_id": pid,
                "gender_concept_id": C.MALE if pid != 2 else C.FEMALE,
                "year_of_birth": born.year,
                "month_of_birth": born.month,
                "day_of_birth": born.day,
                "birth_datetime": pd.Timestamp(born),
                "race_concept_id": 0,
                "ethnicity_concept_id": 0,
                "gender_source_value": "M" if pid != 2 else "F",
            }
        )
        end = D("2020-06-01") if pid == 3 else D("2021-12-31")
        rows["observation_period"].append(
            {
                "observation_period_id": pid,
                "person_id": pid,
                "observation_period_start_date": D("2015-01-01"),
                "observation_period_end_date": end,
                "period_type_concept_id": C.EHR,
            }
        )
        day = D("2018-03-01")
        rows["visit_occurrence"].append(
            {
                "visit_occurrence_id": pid,
                "person_id": pid,
                "visit_concept_id": C.INPATIENT_VISIT,
                "visit_start_date": day,
                "visit_end_date": D("2018-03-05"),
                "visit_type_concept_id": C.EHR,
                "visit_source_value": "HC",
            }
        )
        rows["condition_occurrence"].append(
            {
                "condition_occurrence_id": pid,
                "person_id": pid,
                "condition_concept_id": C.MULTIPLE_SCLEROSIS,
                "condition_start_date": day,
                "condition_type_concept_id": C.EHR,
                "visit_occurrence_id": pid,
                "condition_source_value": "G35",
            }
        )
        rows["drug_exposure"].append(
            {
                "drug_exposure_id": pid,
                "person_id": pid,
                "drug_concept_id": C.METHOTREXATE,
                "drug_exposure_start_date": day,
                "drug_exposure_end_date": D("2018-06-01"),
                "drug_type_concept_id": C.EHR,
                "drug_source_value": "L04AX03",
            }
        )
        rows["procedure_occurrence"].append(
            {
                "procedure_occurrence_id": pid,
                "person_id": pid,
                "procedure_concept_id": C.MRI_BRAIN,
                "procedure_date": day,
                "procedure_type_concept_id": C.EHR,
                "visit_occurrence_id": pid,
                "procedure_source_value": "MRI",
            }
        )
        for k, (concept, value, unit) in enumerate(
            [(C.CRP, 12.0, C.UNIT_MG_PER_L), (C.EDSS, 3.5, C.UNIT_SCORE)]
        ):
            rows["measurement"].append(
                {
                    "measurement_id": 2 * pid - 1 + k,
                    "person_id": pid,
                    "measurement_concept_id": concept,
                    "measurement_date": day,
                    "measurement_type_concept_id": C.EHR,
                    "value_as_number": value,
                    "unit_concept_id": unit,
                    "visit_occurrence_id": pid,
                    "measurement_source_value": "LAB",
                }
            )
        rows["observation"].append(
            {
                "observation_id": pid,
                "person_id": pid,
                "observation_concept_id": C.MS_RELAPSE,
                "observation_date": day,
                "observation_type_concept_id": C.EHR,
                "visit_occurrence_id": pid,
                "observation_source_value": "RELAPSE",
            }
        )
    rows["death"].append({"person_id": 3, "death_date": D("2020-06-01")})
    rows["cdm_source"] = [
        {
            "cdm_source_name": "fixture",
            "cdm_source_abbreviation": "fx",
            "cdm_holder": "tests",
            "source_release_date": D("2024-01-01"),
            "cdm_release_date": D("2024-01-02"),
            "cdm_version_concept_id": 756265,
            "vocabulary_version": "test",
        }
    ]
    return rows


_TEMPLATE: dict[str, Path] = {}


@pytest.fixture(scope="module", autouse=True)
def _empty_cdm(tmp_path_factory: pytest.TempPathFactory) -> None:
    """An empty CDM with the shipped vocabulary, written once and copied by each test."""
    path = tmp_path_factory.mktemp("template") / "template.duckdb"
    con = ibis.duckdb.connect(str(path))
    create_cdm_tables(con, overwrite=True)
    write_vocabulary(con)
    con.disconnect()
    _TEMPLATE["path"] = path


def write_db(path: Path, rows: Rows) -> ibis.BaseBackend:
    """A DuckDB file with the CDM tables, the vocabulary, ``rows`` and their provenance."""
    shutil.copyfile(_TEMPLATE["path"], path)
    con = ibis.duckdb.connect(str(path))
    prov = []
    for table, records in rows.items():
        if not records:
            continue
        schema = SCHEMAS[table]
        frame = pd.DataFrame([{c: r.get(c) for c in schema.names} for r in records])
        con.insert(
            table, ibis.memtable(frame.astype(object).where(frame.notna(), None), schema=schema)
        )
        if table in FILES:
            pk = PRIMARY_KEYS[table]
            prov += [
                {
                    "cdm_table": table,
                    "record_id": r[pk],
                    "source_file": FILES[table],
                    "source_line": 100 * (list(FILES).index(table) + 1) + i,
                }
                for i, r in enumerate(records)
                if r.get(pk) is not None
            ]
    con.create_table("source_provenance", pd.DataFrame(prov), overwrite=True)
    return con


def run(tmp_path: Path, rows: Rows, **kw: Any) -> QualityReport:
    con = write_db(tmp_path / "site.duckdb", rows)
    try:
        return run_checks(con, "fixture", today=TODAY, **kw)
    finally:
        con.disconnect()


def violated(report: QualityReport) -> dict[str, tuple[int, int]]:
    s = report.summary
    s = s[s.num_violated.fillna(0) > 0]
    return {r.check_id: (int(r.num_violated), int(r.num_denominator)) for r in s.itertuples()}


def row(report: QualityReport, check_id: str) -> pd.Series:
    return report.summary.set_index("check_id").loc[check_id]


# --- the registry -----------------------------------------------------------------------------


def test_registry_ids_are_unique_stable_and_cover_the_catchers() -> None:
    ids = [c.check_id for c in CHECKS]
    assert len(ids) == len(set(ids))
    assert {c.category for c in CHECKS} == {"conformance", "completeness", "plausibility"}
    for prefix in ("unmapped_code", "implausible_value", "date_out_of_range", "end_before_start"):
        assert select_checks(prefix), prefix
    assert get_check("is_required.person.person_id").threshold == 0
    assert get_check("unmapped_code.measurement").cdm_field == "measurement_concept_id"
    with pytest.raises(KeyError, match="similar"):
        get_check("is_required.person.nope")
    with pytest.raises(ValueError, match="threshold"):
        Check(
            "x.person",
            "conformance",
            "value",
            "field",
            "person",
            None,
            "d",
            101,
            violations=lambda ctx: ctx.table("person"),
            denominator=lambda ctx: ctx.table("person"),
        )


# --- a clean site -----------------------------------------------------------------------------


def test_clean_fixture_passes_every_applicable_check(tmp_path: Path) -> None:
    report = run(tmp_path, clean_rows())
    s = report.summary
    assert len(s) == len(CHECKS)
    assert violated(report) == {}
    assert report.failed == report.errors == 0
    assert report.passed + report.not_applicable == len(CHECKS)
    na = s[s.status == "NOT_APPLICABLE"]
    assert (na.num_denominator == 0).all()
    assert "unit_canonical.measurement.3025315" in set(na.check_id)  # no body weight rows
    assert row(report, "is_required.person.person_id").num_denominator == 3
    assert row(report, "is_required.measurement.measurement_id").num_denominator == 6
    # drug exposures carry no visit: NULL visit ids are allowed, so nothing to check
    assert (
        row(report, "is_foreign_key.drug_exposure.visit_occurrence_id").status == "NOT_APPLICABLE"
    )
    assert report.violations.empty
    assert list(report.violations.columns) == [
        "site",
        "check_id",
        "cdm_table",
        "record_id",
        "person_id",
        "source_file",
        "source_line",
    ]


# --- one fault per check ----------------------------------------------------------------------

Mutation = Callable[[Rows], None]


def _set(table: str, i: int, **values: Any) -> Mutation:
    def mutate(rows: Rows) -> None:
        rows[table][i].update(values)

    return mutate


def _add(table: str, **values: Any) -> Mutation:
    def mutate(rows: Rows) -> None:
        new = copy.deepcopy(rows[table][0])
        pk = PRIMARY_KEYS.get(table)
        if pk:
            new[pk] = 900 + len(rows[table])
        new.update(values)
        rows[table].append(new)

    return mutate


def _drop(table: str) -> Mutation:
    def mutate(rows: Rows) -> None:
        rows[table] = []

    return mutate


def _both(*steps: Mutation) -> Mutation:
    def mutate(rows: Rows) -> None:
        for step in steps:
            step(rows)

    return mutate


def _extra_conditions(n: int) -> Mutation:
    return _both(*[_add("condition_occurrence") for _ in range(n)])


CRP_ID, EDSS_ID = C.CRP, C.EDSS
OUT_M = "date_out_of_range_outside_observation.measurement"
# mutation, {check_id: (num_violated, num_denominator)} of every check that must fire
CASES: dict[str, tuple[Mutation, dict[str, tuple[int, int]]]] = {
    "required": (
        _set("person", 1, gender_concept_id=None),
        {"is_required.person.gender_concept_id": (1, 3)},
    ),
    "required_date": (
        _set("measurement", 0, measurement_date=None),
        {"is_required.measurement.measurement_date": (1, 6)},
    ),
    "primary_key": (
        _add("condition_occurrence", condition_occurrence_id=1),
        {"is_primary_key.condition_occurrence": (2, 4)},
    ),
    "fk_person": (
        _set("measurement", 2, person_id=99),
        {"is_foreign_key.measurement.person_id": (1, 6), OUT_M: (1, 6)},
    ),
    "fk_visit": (
        _set("condition_occurrence", 0, visit_occurrence_id=999),
        {"is_foreign_key.condition_occurrence.visit_occurrence_id": (1, 3)},
    ),
    "concept_exists": (
        _set("condition_occurrence", 0, condition_concept_id=123456789),
        {"concept_exists.condition_occurrence.condition_concept_id": (1, 3)},
    ),
    "not_standard": (
        _set("drug_exposure", 0, drug_concept_id=C.MS_DMT),
        {"is_standard_concept.drug_exposure.drug_concept_id": (1, 3)},
    ),
    "wrong_domain": (
        _set("condition_occurrence", 0, condition_concept_id=C.CRP),
        {"concept_domain.condition_occurrence.condition_concept_id": (1, 3)},
    ),
    "unmapped": (
        _set("procedure_occurrence", 1, procedure_concept_id=0),
        {"unmapped_code.procedure_occurrence": (1, 3)},
    ),
    "zero_without_source": (
        _set("procedure_occurrence", 1, procedure_concept_id=0, procedure_source_value=" "),
        {},
    ),
    "unit_invalid": (
        _set("measurement", 0, unit_concept_id=C.MALE),
        {"unit_concept_valid.measurement": (1, 6), f"unit_canonical.measurement.{CRP_ID}": (1, 3)},
    ),
    "unit_not_canonical": (
        _set("measurement", 0, unit_concept_id=C.UNIT_MG_PER_DL),
        {f"unit_canonical.measurement.{CRP_ID}": (1, 3)},
    ),
    "person_without_records": (
        _add("person", person_id=4),
        {
            "person_without_record.observation_period": (1, 4),
            "person_without_record.visit_occurrence": (1, 4),
        },
    ),
    "value_missing": (
        _set("measurement", 1, value_as_number=None),
        {"measurement_value_missing.measurement": (1, 6)},
    ),
    "unit_missing": (
        _set("measurement", 0, unit_concept_id=None),
        {"measurement_unit_missing.measurement": (1, 6)},
    ),
    "before_birth": (
        _set("condition_occurrence", 0, condition_start_date=D("1950-01-01")),
        {
            "date_out_of_range_before_birth.condition_occurrence": (1, 3),
            "date_out_of_range_outside_observation.condition_occurrence": (1, 3),
        },
    ),
    "after_death": (
        _set("observation", 2, observation_date=D("2020-08-01")),
        {
            "date_out_of_range_after_death.observation": (1, 1),
            "date_out_of_range_outside_observation.observation": (1, 3),
        },
    ),
    "within_death_grace": (
        _both(
            _set("observation", 2, observation_date=D("2020-06-20")),
            _set("observation_period", 2, observation_period_end_date=D("2020-07-01")),
        ),
        {},
    ),
    "future": (
        _set("measurement", 0, measurement_date=D("2024-06-01")),
        {"date_out_of_range_future.measurement": (1, 6), OUT_M: (1, 6)},
    ),
    "outside_observation": (
        _set("procedure_occurrence", 0, procedure_date=D("2014-06-01")),
        {"date_out_of_range_outside_observation.procedure_occurrence": (1, 3)},
    ),
    "end_before_start_drug": (
        _set("drug_exposure", 1, drug_exposure_end_date=D("2018-01-01")),
        {"end_before_start.drug_exposure": (1, 3)},
    ),
    "end_before_start_visit": (
        _set("visit_occurrence", 1, visit_end_date=D("2018-02-28")),
        {"end_before_start.visit_occurrence": (1, 3)},
    ),
    "implausible_crp": (
        _set("measurement", 2, value_as_number=900.0),
        {f"implausible_value.measurement.{CRP_ID}": (1, 3)},
    ),
    "implausible_edss_no_unit": (
        _set("measurement", 1, value_as_number=14.5, unit_concept_id=None),
        {
            f"implausible_value.measurement.{EDSS_ID}": (1, 3),
            "measurement_unit_missing.measurement": (1, 6),
        },
    ),
    "year_of_birth": (
        _set("person", 0, year_of_birth=1890, birth_datetime=None),
        {
            "plausible_year_of_birth.person": (1, 3),
            "plausible_age_at_first_observation.person": (1, 3),
        },
    ),
    "age_at_first_observation": (
        _set("person", 0, year_of_birth=1900, birth_datetime=None),
        {"plausible_age_at_first_observation.person": (1, 3)},
    ),
    "gender": (
        _set("person", 0, gender_concept_id=0, gender_source_value=None),
        {"gender_concept_allowed.person": (1, 3)},
    ),
    "unmapped_gender": (
        _set("person", 0, gender_concept_id=0),
        {"gender_concept_allowed.person": (1, 3), "unmapped_code.person": (1, 3)},
    ),
    "death_before_birth": (
        _both(
            _set("death", 0, death_date=D("1959-01-01")),
            _set("person", 2, year_of_birth=1960, birth_datetime=None, month_of_birth=None),
        ),
        {
            "date_out_of_range_before_birth.death": (1, 1),
            **{
                f"date_out_of_range_after_death.{t}": (n, n)
                for t, n in [
                    ("visit_occurrence", 1),
                    ("condition_occurrence", 1),
                    ("drug_exposure", 1),
                    ("procedure_occurrence", 1),
                    ("measurement", 2),
                    ("observation", 1),
                    ("observation_period", 1),
                ]
            },
        },
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_fault_fires_exactly_its_checks(tmp_path: Path, case: str) -> None:
    mutate, expected = CASES[case]
    rows = clean_rows()
    mutate(rows)
    report = run(tmp_path, rows)
    assert violated(report) == expected
    assert report.errors == 0
    for check_id, (n, d) in expected.items():
        r = row(report, check_id)
        assert r.pct_violated == pytest.approx(100 * n / d)
        assert r.status == ("FAIL" if 100 * n / d > r.threshold else "PASS")
        v = report.violations_of(check_id)
        assert len(v) == n
        assert v.source_file.notna().all()
        if case == "primary_key":  # one row per source line of the duplicated key, not 2 x 2
            assert sorted(v.source_line) == [400, 403]
            assert v.record_id.tolist() == [1, 1]


def test_threshold_separates_pass_from_fail(tmp_path: Path) -> None:
    rows = clean_rows()
    _extra_conditions(30)(rows)
    _set("condition_occurrence", 5, condition_concept_id=0)(rows)
    report = run(tmp_path, rows)
    r = row(report, "unmapped_code.condition_occurrence")
    assert (r.num_violated, r.num_denominator) == (1, 33)
    assert r.status == "PASS"  # 3.0 % <= 5 %
    _set("condition_occurrence", 6, condition_concept_id=0)(rows)
    report = run(tmp_path, rows)
    assert row(report, "unmapped_code.condition_occurrence").status == "FAIL"  # 6.1 % > 5 %


def test_violation_rows_carry_their_source_line(tmp_path: Path) -> None:
    rows = clean_rows()
    _set("measurement", 2, value_as_number=900.0)(rows)  # third labs row: line 702
    report = run(tmp_path, rows)
    v = report.violations_of("implausible_value", prefix=True)
    assert v[
        ["site", "cdm_table", "record_id", "person_id", "source_file", "source_line"]
    ].values.tolist() == [["fixture", "measurement", 3, 2, "labs.csv", 702]]


def test_violation_limit_keeps_counts_exact(tmp_path: Path) -> None:
    rows = clean_rows()
    for i in range(6):
        _set("measurement", i, unit_concept_id=None)(rows)
    report = run(tmp_path, rows, violation_limit=2)
    assert row(report, "measurement_unit_missing.measurement").num_violated == 6
    assert len(report.violations_of("measurement_unit_missing.measurement")) == 2


def test_data_cut_follows_cdm_source_and_today(tmp_path: Path) -> None:
    rows = clean_rows()
    _set("visit_occurrence", 0, visit_start_date=D("2024-06-01"), visit_end_date=D("2024-06-02"))(
        rows
    )
    future = "date_out_of_range_future.visit_occurrence"
    assert row(run(tmp_path, rows), future).num_violated == 1  # after the 2024-01-01 release
    rows["cdm_source"] = []
    assert row(run(tmp_path, rows), future).num_violated == 0  # before today (2025-01-01)


BEFORE_BIRTH = "date_out_of_range_before_birth.condition_occurrence"


@pytest.mark.parametrize(
    ("born", "event", "before"),
    [
        ((1970, 5, 31), "1970-05-15", 1),  # a real day 29-31 is used, not the 1st
        ((1970, 5, 31), "1970-05-31", 0),  # the birthday itself is not before birth
        ((1972, 2, 29), "1972-02-20", 1),  # 29 February of a leap year is a real day
        ((2000, 2, 29), "2000-02-28", 1),
        ((1970, 2, 29), "1970-02-20", 0),  # no 29 February in 1970: earliest is 1 February
        ((1900, 2, 29), "1900-02-20", 0),  # 1900 is not a leap year
        ((1970, 2, 30), "1970-02-01", 0),  # 30 February: the first of the month
        ((1970, 2, 30), "1970-01-31", 1),
        ((1970, 4, 31), "1970-04-15", 0),  # 31 April
        ((1970, 6, 0), "1970-06-01", 0),  # day 0
        ((1970, None, 20), "1970-01-05", 0),  # a day without a month narrows nothing: 1 January
        ((1970, 13, 5), "1970-01-02", 0),  # invalid month: 1 January
        ((1970, None, None), "1970-01-01", 0),
        ((1970, None, None), "1969-12-31", 1),
    ],
)
def test_before_birth_uses_the_earliest_birth_date_the_known_parts_allow(
    tmp_path: Path, born: tuple[int, int | None, int | None], event: str, before: int
) -> None:
    rows = clean_rows()
    year, month, day = born
    _set(
        "person", 0, birth_datetime=None, year_of_birth=year, month_of_birth=month, day_of_birth=day
    )(rows)
    _set("condition_occurrence", 0, condition_start_date=D(event))(rows)
    report = run(tmp_path, rows, checks=select_checks("date_out_of_range_before_birth"))
    assert violated(report) == ({BEFORE_BIRTH: (1, 3)} if before else {})
    assert report.violations_of(BEFORE_BIRTH).record_id.tolist() == [1] * before


def test_birth_datetime_wins_over_the_birth_date_parts(tmp_path: Path) -> None:
    rows = clean_rows()
    _set(
        "person",
        0,
        birth_datetime=pd.Timestamp("1970-05-31"),
        year_of_birth=1970,
        month_of_birth=1,
        day_of_birth=1,
    )(rows)
    _set("condition_occurrence", 0, condition_start_date=D("1970-05-15"))(rows)
    report = run(tmp_path, rows, checks=select_checks("date_out_of_range_before_birth"))
    assert violated(report) == {BEFORE_BIRTH: (1, 3)}


def test_year_of_birth_is_compared_with_the_data_cut(tmp_path: Path) -> None:
    rows = clean_rows()  # released 2024-01-01, today 2025-01-01
    _set("person", 0, year_of_birth=2025, birth_datetime=None)(rows)  # after the release
    _set("person", 1, year_of_birth=2024, birth_datetime=None)(rows)  # the release year
    checks = select_checks("plausible_year_of_birth")
    report = run(tmp_path, rows, checks=checks)
    assert violated(report) == {"plausible_year_of_birth.person": (1, 3)}
    assert report.violations.record_id.tolist() == [1]
    rows["cdm_source"] = []  # no release date: the data cut is today
    assert violated(run(tmp_path, rows, checks=checks)) == {}


def test_a_provenance_line_listed_twice_gives_one_violation_row(tmp_path: Path) -> None:
    rows = clean_rows()
    _set("measurement", 2, value_as_number=900.0)(rows)  # labs.csv line 702
    con = write_db(tmp_path / "site.duckdb", rows)
    con.raw_sql(
        "INSERT INTO source_provenance SELECT * FROM source_provenance "
        "WHERE cdm_table = 'measurement' AND record_id = 3"
    )
    report = run_checks(con, "fixture", today=TODAY, checks=select_checks("implausible"))
    con.disconnect()
    assert row(report, f"implausible_value.measurement.{CRP_ID}").num_violated == 1
    assert report.violations[["record_id", "source_line"]].values.tolist() == [[3, 702]]


def test_duplicated_key_without_provenance_gives_one_row_per_record(tmp_path: Path) -> None:
    rows = clean_rows()
    CASES["primary_key"][0](rows)
    con = write_db(tmp_path / "site.duckdb", rows)
    con.drop_table("source_provenance")
    report = run_checks(con, "fixture", today=TODAY, checks=select_checks("is_primary_key"))
    con.disconnect()
    assert row(report, "is_primary_key.condition_occurrence").num_violated == 2
    v = report.violations
    assert v[["record_id", "person_id"]].values.tolist() == [[1, 1]]
    assert v.source_line.isna().all()


# --- errors and missing tables ----------------------------------------------------------------


def test_backend_error_is_reported_not_raised(tmp_path: Path) -> None:
    broken = Check(
        "broken.person",
        "conformance",
        "value",
        "field",
        "person",
        None,
        "refers to a table that does not exist",
        0,
        violations=lambda ctx: ctx.con.sql("SELECT * FROM no_such_table"),
        denominator=lambda ctx: ctx.table("person"),
    )
    report = run(tmp_path, clean_rows(), checks=[*select_checks("is_required.person"), broken])
    r = row(report, "broken.person")
    assert r.status == "ERROR"
    assert "no_such_table" in r.error
    assert pd.isna(r.num_violated)
    assert report.errors == 1 and report.passed == 5


def test_a_mistyped_column_errors_only_the_checks_reading_it(tmp_path: Path) -> None:
    con = write_db(tmp_path / "site.duckdb", clean_rows())
    con.raw_sql("ALTER TABLE person ALTER year_of_birth TYPE VARCHAR")
    con.raw_sql("UPDATE person SET year_of_birth = 'unknown' WHERE person_id = 1")
    report = run_checks(con, "fixture", today=TODAY)
    con.disconnect()
    s = report.summary.set_index("check_id")
    assert s.loc["plausible_year_of_birth.person", "status"] == "ERROR"
    assert s.loc["date_out_of_range_before_birth.measurement", "status"] == "ERROR"
    assert s.loc["is_required.person.gender_concept_id", "status"] == "PASS"
    assert s.loc["is_primary_key.person", "status"] == "PASS"
    assert s.loc["end_before_start.drug_exposure", "status"] == "PASS"


def test_missing_table_makes_its_checks_not_applicable(tmp_path: Path) -> None:
    con = write_db(tmp_path / "site.duckdb", clean_rows())
    con.drop_table("death")
    report = run_checks(con, "fixture", today=TODAY)
    con.disconnect()
    r = row(report, "date_out_of_range_after_death.measurement")
    assert r.status == "NOT_APPLICABLE"
    assert "death" in r.error
    assert report.errors == 0 and report.failed == 0


# --- storing and reading ----------------------------------------------------------------------


def test_store_and_read_results_round_trip(tmp_path: Path) -> None:
    rows = clean_rows()
    _set("measurement", 2, value_as_number=900.0)(rows)
    con = write_db(tmp_path / "site.duckdb", rows)
    with pytest.raises(LookupError, match="clinnova-explore quality"):
        read_results(con)
    first = run_checks(con, "basel", today=TODAY)
    store_results(con, first)
    store_results(con, run_checks(con, "other", today=TODAY))
    store_results(con, first)  # replaces basel's rows, keeps other's
    assert con.table("dq_results").count().execute() == 2 * len(CHECKS)
    with pytest.raises(LookupError, match="pass site"):
        read_results(con)
    back = read_results(con, "basel")
    con.disconnect()
    pd.testing.assert_frame_equal(
        back.summary.reset_index(drop=True), first.summary.reset_index(drop=True), check_dtype=False
    )
    pd.testing.assert_frame_equal(back.violations, first.violations, check_dtype=False)
    assert (back.passed, back.failed) == (first.passed, first.failed)
    assert "implausible_value" in back._repr_html_()
    assert "failed=1" in repr(back)
    ov = overview({"basel": back})
    assert ov.loc[0, ["failed", "violated_rows"]].tolist() == [1, 1]


# --- recall against a synthetic truth ---------------------------------------------------------


def test_recall_against_truth(tmp_path: Path) -> None:
    rows = clean_rows()
    _set("measurement", 2, value_as_number=900.0)(rows)  # labs.csv line 702
    _set("condition_occurrence", 1, condition_concept_id=0)(rows)  # diagnoses.csv line 401
    report = run(tmp_path, rows)
    quarantine = pd.DataFrame(
        {
            "site": ["fixture"],
            "source_file": ["raw/fixture/labs.csv"],
            "source_line": [17],
            "source_table": ["labs"],
            "reason": ["invalid_number"],
            "detail": [""],
            "raw": [""],
        }
    )
    fault = {"site": "fixture", "table": "labs", "detail": ""}
    truth = {
        "faults": [
            {
                **fault,
                "file": "labs.csv",
                "line": 702,
                "kind": "impossible_value",
                "catcher": "quality:implausible_value",
            },
            {
                **fault,
                "file": "diagnoses.csv",
                "line": 401,
                "kind": "unmapped_code",
                "catcher": "quality:unmapped_code",
            },
            {
                **fault,
                "file": "labs.csv",
                "line": 17,
                "kind": "invalid_number",
                "catcher": "quarantine:invalid_number",
            },
            {
                **fault,
                "file": "labs.csv",
                "line": 701,
                "kind": "impossible_value",
                "catcher": "quality:implausible_value",
            },
            {
                **fault,
                "file": "labs.csv",
                "line": 17,
                "kind": "duplicate",
                "catcher": "quarantine:duplicate",
            },
        ]
    }
    rec = recall_against_truth({"fixture": report}, quarantine, truth)
    assert rec.found.tolist() == [True, True, True, False, False]
    assert rec.where_found.tolist()[:3] == [
        f"quality:implausible_value.measurement.{CRP_ID}",
        "quality:unmapped_code.condition_occurrence",
        "quarantine:invalid_number",
    ]
    assert rec.elsewhere.tolist()[4] == "quarantine:invalid_number"
    extra = unexplained_violations({"fixture": report}, truth)
    assert extra.empty
    extra = unexplained_violations({"fixture": report}, truth["faults"][1:])
    assert extra.source_line.tolist() == [702]


# --- the same checks on PostgreSQL ------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_gives_the_same_results_as_duckdb(tmp_path: Path) -> None:
    from clinnova_explore.transfer import copy_cdm
    from tests.support import throwaway_postgres

    rows = clean_rows()
    for case in (
        "fk_person",
        "implausible_crp",
        "unmapped",
        "death_before_birth",
        "end_before_start_drug",
        "future",
        "primary_key",
        "year_of_birth",
    ):
        CASES[case][0](rows)
    duck = write_db(tmp_path / "site.duckdb", rows)
    expected = run_checks(duck, "pg", today=TODAY)
    with throwaway_postgres() as url:
        pg = ibis.connect(url)
        copy_cdm(duck, pg, duck.list_tables())
        got = run_checks(pg, "pg", today=TODAY)
        store_results(pg, got)
        back = read_results(pg)
        pg.disconnect()
    duck.disconnect()
    cols = ["check_id", "num_violated", "num_denominator", "status"]
    pd.testing.assert_frame_equal(got.summary[cols], expected.summary[cols])
    assert got.errors == 0 and got.failed == expected.failed > 5
    key = ["check_id", "record_id", "source_line"]
    pd.testing.assert_frame_equal(
        got.violations.sort_values(key).reset_index(drop=True),
        expected.violations.sort_values(key).reset_index(drop=True),
        check_dtype=False,
    )
    assert back.failed == got.failed


# --- end to end on the synthetic federation ---------------------------------------------------


@pytest.mark.slow
def test_every_injected_fault_is_caught_and_nothing_else(small_build: Any) -> None:
    from clinnova_explore.catalog import Catalog
    from clinnova_explore.harmonize import read_quarantine
    from clinnova_explore.quality import QUALITY_CATCHERS, run_site

    cat = Catalog.load(small_build.catalog_path)
    reports = {s.id: run_site(s) for s in cat.sites}
    quarantine = pd.concat(
        [read_quarantine(Path(s.resolved_location())) for s in cat.sites], ignore_index=True
    )
    rec = recall_against_truth(reports, quarantine, small_build.truth)
    assert len(rec) == len(small_build.truth["faults"]) > 0
    missed = rec[~rec.found]
    assert missed.empty, missed.to_string()
    quality_kinds = {c.split(":", 1)[1] for c in rec.catcher if c.startswith("quality:")}
    assert quality_kinds == set(QUALITY_CATCHERS)
    false_alarms = unexplained_violations(reports, small_build.truth)
    assert false_alarms.empty, false_alarms.to_string()
    for site, report in reports.items():
        assert report.errors == 0, report.failing().to_string()
        # the build stored the same results in the site database
        stored = read_results(cat.site(site).connect())
        cols = ["check_id", "num_violated", "num_denominator", "status"]
        pd.testing.assert_frame_equal(
            stored.summary[cols].sort_values("check_id").reset_index(drop=True),
            report.summary[cols].sort_values("check_id").reset_index(drop=True),
        )


# --- documentation ----------------------------------------------------------------------------

QUALITY_MODULES = sorted(
    f"clinnova_explore.quality.{p.stem}"
    for p in (Path(__file__).parents[1] / "clinnova_explore" / "quality").glob("*.py")
    if p.stem != "__init__"
)


def _public_api() -> list[tuple[str, Any]]:
    """Every public function, class, method and property defined in the quality package."""
    out: list[tuple[str, Any]] = []
    for name in QUALITY_MODULES:
        mod = importlib.import_module(name)
        for attr in mod.__all__:
            obj = getattr(mod, attr)
            if getattr(obj, "__module__", None) != name:
                continue  # constants and re-exports
            out.append((f"{name}.{attr}", obj))
            if inspect.isclass(obj):
                out += [
                    (f"{name}.{attr}.{m}", v)
                    for m, v in vars(obj).items()
                    if not m.startswith("_") and (inspect.isfunction(v) or isinstance(v, property))
                ]
    return out


def _doc_problems(qualname: str, obj: Any) -> list[str]:
    doc = inspect.getdoc(obj if not isinstance(obj, property) else obj.fget) or ""
    if not doc:
        return [f"{qualname}: no docstring"]
    if not inspect.isfunction(obj):
        if inspect.isclass(obj) and "__dataclass_fields__" in vars(obj):
            return [] if "Attributes\n----------" in doc else [f"{qualname}: no Attributes"]
        init = vars(obj).get("__init__") if inspect.isclass(obj) else None
        if (
            init is not None
            and len(inspect.signature(init).parameters) > 1
            and "Parameters\n----------" not in doc
        ):
            return [f"{qualname}: no Parameters"]
        return []
    sig = inspect.signature(obj)
    params = [p for p in sig.parameters if p not in ("self", "cls")]
    problems = []
    if params and "Parameters\n----------" not in doc:
        problems.append(f"{qualname}: no Parameters")
    problems += [
        f"{qualname}: parameter {p} undocumented"
        for p in params
        if "Parameters\n----------" in doc
        and not re.search(rf"^(\w+, )*\**{p}\b", doc.split("Parameters", 1)[1], re.M)
    ]
    if sig.return_annotation not in ("None", None) and "Returns\n-------" not in doc:
        problems.append(f"{qualname}: no Returns")
    return problems


def test_public_quality_api_has_numpydoc_docstrings() -> None:
    api = _public_api()
    assert len(api) > 30
    problems = [p for qualname, obj in api for p in _doc_problems(qualname, obj)]
    assert problems == []


@pytest.mark.parametrize("module", ["clinnova_explore.quality", *QUALITY_MODULES])
def test_docstring_examples_run_or_are_skipped(module: str) -> None:
    mod = importlib.import_module(module)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder().find(mod, module):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0
