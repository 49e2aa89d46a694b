"""Conformance with OHDSI circe-be's cohort-generation tests (see tests/data/circe/README.md).

Each circe-be scenario loads DbUnit-style input rows (``*_PREP.json``, plus the shared test
vocabulary) into a CDM, generates one or more cohorts from a Circe expression (some cohorts
edit the expression first, exactly as the Java test does), and compares the cohort table with
the expected rows (``*_VERIFY.json``). Here the PREP rows become a real DuckDB file, the
expression goes through :func:`from_circe`, the cohort through the compiler, and the rows
(subject, start, end) must equal the VERIFY rows of that cohort id exactly.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from clinnova_explore.cdm.schema import SCHEMAS
from clinnova_explore.cdm.source import DuckDBFileCdm, open_cdm
from clinnova_explore.cohort import compile_cohort
from clinnova_explore.cohort.circe import CirceImportError, from_circe

DATA = Path(__file__).parent / "data" / "circe"
VOCABULARY = DATA / "datasets" / "vocabulary.json"

_SQL_TYPES = {
    "int64": "BIGINT",
    "int32": "INTEGER",
    "float64": "DOUBLE",
    "string": "VARCHAR",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "boolean": "BOOLEAN",
}


# --------------------------------------------------------------------------- PREP loader


def _inferred_type(column: str, values: list[Any]) -> str:
    if column.endswith("_date"):
        return "DATE"
    if column.endswith("_datetime"):
        return "TIMESTAMP"
    present = [v for v in values if v is not None]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "BIGINT"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return "DOUBLE"
    return "VARCHAR"


def load_prep(datasets: Sequence[Path], database: Path, *, cdm_schema: str = "cdm") -> Path:
    """Write DbUnit-style datasets (``{"schema.table": [rows]}``) into a new DuckDB CDM file.

    Every table of the project's CDM subset is created (empty) in ``cdm_schema`` with its CDM
    column types; a dataset table outside the subset (``condition_era``, ``specimen``, ...), or
    a column outside it, gets types inferred from its name and values. Columns a row omits are
    NULL. Rows are inserted as given, duplicate primary keys included (circe-be's data has
    some).
    """
    rows_by_table: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for path in datasets:
        for key, rows in json.loads(path.read_text(encoding="utf-8")).items():
            schema, _, table = key.rpartition(".")
            rows_by_table.setdefault((schema or "main", table.lower()), []).extend(rows)
    con = duckdb.connect(str(database))
    try:
        for schema in {cdm_schema} | {s for s, _ in rows_by_table}:
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        for name, sc in SCHEMAS.items():
            cols = ", ".join(f'"{c}" {_SQL_TYPES[str(t).lstrip("!")]}' for c, t in sc.items())
            con.execute(f'CREATE TABLE "{cdm_schema}"."{name}" ({cols})')
        for (schema, table), rows in rows_by_table.items():
            columns = list(dict.fromkeys(c for row in rows for c in row))
            exists = con.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = ? AND table_name = ?",
                [schema, table],
            ).fetchone()
            types = {c: _inferred_type(c, [r.get(c) for r in rows]) for c in columns}
            if not (exists and exists[0]):
                defs = ", ".join(f'"{c}" {t}' for c, t in types.items())
                con.execute(f'CREATE TABLE "{schema}"."{table}" ({defs})')
            else:  # a column of an older CDM version (e.g. observation_period_start_datetime)
                have = {d[0] for d in con.execute(f'DESCRIBE "{schema}"."{table}"').fetchall()}
                for c in columns:
                    if c not in have:
                        con.execute(f'ALTER TABLE "{schema}"."{table}" ADD COLUMN "{c}" {types[c]}')
            names = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join("?" for _ in columns)
            con.executemany(
                f'INSERT INTO "{schema}"."{table}" ({names}) VALUES ({marks})',
                [tuple(row.get(c) for c in columns) for row in rows],
            )
    finally:
        con.close()
    return database


def test_loader_builds_a_cdm_in_the_cdm_schema(tmp_path: Path) -> None:
    db = load_prep(
        [VOCABULARY, DATA / "correlatedCriteria" / "countsTest_PREP.json"], tmp_path / "x.duckdb"
    )
    raw = duckdb.connect(str(db), read_only=True)
    # the duplicated visit_occurrence_id 1 of the PREP file is kept; absent columns are NULL
    visits = raw.execute(
        "SELECT visit_occurrence_id, visit_start_date, visit_source_value "
        "FROM cdm.visit_occurrence ORDER BY visit_start_date"
    ).fetchall()
    raw.close()
    assert [(v[0], str(v[1]), v[2]) for v in visits] == [
        (1, "2000-06-07", None),
        (1, "2000-08-31", None),
    ]
    cdm = open_cdm(db)
    assert cdm.table("concept").count().execute() == 4
    assert cdm.table("death").count().execute() == 0


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Case:
    """One generated cohort of a circe-be test: expression (+ edits) and its expected rows."""

    folder: str
    prep: str
    verify: str
    cohort_id: int
    expression: str | dict[str, Any]
    edits: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def id(self) -> str:
        return f"{Path(self.verify).stem.removesuffix('_VERIFY')}-{self.cohort_id}"


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at a dotted path with list indexes (``A.B[0].C``)."""
    parts = [p for p in re.split(r"\.|\[(\d+)\]", path) if p]
    target: Any = doc
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value


def _first(kind: str) -> tuple[tuple[str, Any], ...]:
    return (("PrimaryCriteria.CriteriaList", [{kind: {"First": True}}]),)


_AC = "AdditionalCriteria"
_CONDITION_ANY = {
    "ConceptSets": [],
    "PrimaryCriteria": {
        "CriteriaList": [{"ConditionOccurrence": {}}],
        "ObservationWindow": {"PriorDays": 0, "PostDays": 0},
    },
}

CASES = [
    # firstOccurrence: every criteria type with First=true and no concept set, 90 days prior obs
    *(
        Case(
            "firstOccurrence",
            "firstOccurrenceTest_PREP",
            "firstOccurrenceTest_VERIFY",
            cid,
            "firstOccurrenceTestExpression",
            _first(kind),
        )
        for cid, kind in [
            (2, "ConditionOccurrence"),
            (5, "DrugExposure"),
            (6, "Measurement"),
            (7, "Observation"),
            (8, "ProcedureOccurrence"),
            (10, "VisitOccurrence"),
        ]
    ),
    # correlated criteria counts: exactly 0 / at least 1 / at most 0 prior events; visit windows
    Case("correlatedCriteria", "countsTest_PREP", "countsTest_VERIFY", 1, "countsExpression"),
    Case(
        "correlatedCriteria",
        "countsTest_PREP",
        "countsTest_VERIFY",
        2,
        "countsExpression",
        (
            (f"{_AC}.CriteriaList[0].Occurrence.Type", 2),
            (f"{_AC}.CriteriaList[0].Occurrence.Count", 1),
        ),
    ),
    Case(
        "correlatedCriteria",
        "countsTest_PREP",
        "countsTest_VERIFY",
        3,
        "countsExpression",
        (
            (f"{_AC}.CriteriaList[0].Occurrence.Type", 1),
            (f"{_AC}.CriteriaList[0].Occurrence.Count", 0),
        ),
    ),
    Case("correlatedCriteria", "countsTest_PREP", "countsTest_VERIFY", 4, "visitExpression"),
    # groups: (A or B or (C and D)), then at least 2, at most 2, a contradiction, an empty group
    Case("correlatedCriteria", "groupTest_PREP", "groupTest_VERIFY", 1, "groupExpression"),
    Case(
        "correlatedCriteria",
        "groupTest_PREP",
        "groupTest_VERIFY",
        2,
        "groupExpression",
        ((f"{_AC}.Type", "AT_LEAST"), (f"{_AC}.Count", 2)),
    ),
    Case(
        "correlatedCriteria",
        "groupTest_PREP",
        "groupTest_VERIFY",
        3,
        "groupExpression",
        ((f"{_AC}.Type", "AT_MOST"), (f"{_AC}.Count", 2)),
    ),
    Case(
        "correlatedCriteria",
        "groupTest_PREP",
        "groupTest_VERIFY",
        4,
        "groupExpression",
        (
            (f"{_AC}.Type", "ALL"),
            (f"{_AC}.Count", 2),
            (f"{_AC}.Groups[0].Type", "AT_MOST"),
            (f"{_AC}.Groups[0].Count", 0),
        ),
    ),
    Case(
        "correlatedCriteria",
        "groupTest_PREP",
        "groupTest_VERIFY",
        5,
        "groupExpression",
        ((f"{_AC}.Type", "ALL"), (f"{_AC}.Count", 2), (f"{_AC}.Groups", [])),
    ),
    # limits: expression, qualified and primary limits, cumulatively as in the Java test
    Case("limits", "limitTest_PREP", "limitTest_VERIFY", 1, "limitExpression"),
    Case(
        "limits",
        "limitTest_PREP",
        "limitTest_VERIFY",
        2,
        "limitExpression",
        (("ExpressionLimit.Type", "first"),),
    ),
    Case(
        "limits",
        "limitTest_PREP",
        "limitTest_VERIFY",
        3,
        "limitExpression",
        (("ExpressionLimit.Type", "first"), ("QualifiedLimit.Type", "first")),
    ),
    Case(
        "limits",
        "limitTest_PREP",
        "limitTest_VERIFY",
        4,
        "limitExpression",
        (
            ("ExpressionLimit.Type", "first"),
            ("QualifiedLimit.Type", "first"),
            ("PrimaryCriteria.PrimaryCriteriaLimit.Type", "first"),
        ),
    ),
    Case(
        "limits",
        "limitTest_PREP",
        "limitTest_VERIFY",
        5,
        "limitExpression",
        (
            ("ExpressionLimit.Type", "first"),
            ("QualifiedLimit.Type", "first"),
            ("PrimaryCriteria.PrimaryCriteriaLimit.Type", "last"),
        ),
    ),
    Case(
        "inclusionRules",
        "simpleInclusionRule_PREP",
        "simpleInclusionRule_VERIFY",
        1,
        "simpleInclusionRule",
    ),
    # exits: continuous exposure (gap 60, then first event only), offsets past the observation
    # period end, censoring events, censor window, era collapse of duplicated rows
    Case(
        "exits",
        "continuousExposure_PREP",
        "continuousExposure_VERIFY",
        1,
        "continuousExposureExpression",
    ),
    Case(
        "exits",
        "continuousExposure_PREP",
        "continuousExposure_VERIFY",
        2,
        "continuousExposureExpression",
        (("PrimaryCriteria.PrimaryCriteriaLimit.Type", "First"),),
    ),
    Case(
        "exits",
        "continuousExposureCensor_PREP",
        "continuousExposureCensor_VERIFY",
        1,
        "continuousExposureCensorExpression",
    ),
    Case(
        "exits",
        "fixedOffsetCensor_PREP",
        "fixedOffsetCensor_VERIFY",
        1,
        "fixedOffsetCensorExpression",
    ),
    Case("exits", "censorEvent_PREP", "censorEvent_VERIFY", 1, "censorEventExpression"),
    Case("censorWindow", "censorWindow_PREP", "censorWindow_VERIFY", 1, "censorWindowExpression"),
    Case("eraDupes", "eraDupes_PREP", "eraDupes_VERIFY", 1, "eraDupesExpression"),
    # condition status: the Java test builds these expressions in code (null / empty status)
    Case(
        "conditionOccurrence",
        "conditionStatusTest_PREP",
        "conditionStatusTest_VERIFY",
        1,
        _CONDITION_ANY,
    ),
    Case(
        "conditionOccurrence",
        "conditionStatusTest_PREP",
        "conditionStatusTest_VERIFY",
        2,
        _CONDITION_ANY,
        (("PrimaryCriteria.CriteriaList[0].ConditionOccurrence.ConditionStatus", []),),
    ),
]

# circe-be cohorts of these scenarios outside the supported subset: (file, cohort id) -> the
# element that makes the import fail, and the expression the Java test generates
_FIRST = ("firstOccurrence", "firstOccurrenceTest_PREP", "firstOccurrenceTest_VERIFY")
_STATUS = ("conditionOccurrence", "conditionStatusTest_PREP", "conditionStatusTest_VERIFY")
EXCLUDED = {
    **{
        (_FIRST[2], cid): (kind, Case(*_FIRST, cid, "firstOccurrenceTestExpression", _first(kind)))
        for cid, kind in [
            (1, "ConditionEra"),
            (3, "DeviceExposure"),
            (4, "DrugEra"),
            (9, "Specimen"),
            (11, "PayerPlanPeriod"),
        ]
    },
    (_STATUS[2], 3): (
        "ConditionOccurrence.ConditionStatus",
        Case(
            *_STATUS,
            3,
            _CONDITION_ANY,
            (
                (
                    "PrimaryCriteria.CriteriaList[0].ConditionOccurrence.ConditionStatus",
                    [{"CONCEPT_ID": 1}],
                ),
            ),
        ),
    ),
}


def _expression(case: Case) -> dict[str, Any]:
    if isinstance(case.expression, dict):
        doc = copy.deepcopy(case.expression)
    else:
        doc = json.loads((DATA / case.folder / f"{case.expression}.json").read_text("utf-8"))
    for path, value in case.edits:
        _set(doc, path, copy.deepcopy(value))
    return doc


def _verify(case: Case) -> tuple[str, list[tuple[int, str, str]]]:
    data = json.loads((DATA / case.folder / f"{case.verify}.json").read_text("utf-8"))
    table = next(k for k in data if k.endswith(".cohort"))
    rows = [
        (r["subject_id"], r["cohort_start_date"], r["cohort_end_date"])
        for r in data[table]
        if r["cohort_definition_id"] == case.cohort_id
    ]
    return table, sorted(rows)


@pytest.fixture(scope="module")
def cdm_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One DuckDB CDM per PREP file (vocabulary + scenario rows), built once per module."""
    out = tmp_path_factory.mktemp("circe_prep")
    files = {}
    for case in CASES:
        if case.prep not in files:
            prep = DATA / case.folder / f"{case.prep}.json"
            files[case.prep] = load_prep([VOCABULARY, prep], out / f"{case.prep}.duckdb")
    return files


def _rows(frame: pd.DataFrame) -> list[tuple[int, str, str]]:
    return sorted(
        (int(s), pd.Timestamp(a).strftime("%Y-%m-%d"), pd.Timestamp(b).strftime("%Y-%m-%d"))
        for s, a, b in zip(
            frame.subject_id, frame.cohort_start_date, frame.cohort_end_date, strict=True
        )
    )


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.id) for c in CASES],
)
def test_circe_scenario(case: Case, cdm_files: dict[str, Path]) -> None:
    defn = from_circe(_expression(case))
    cdm = DuckDBFileCdm(cdm_files[case.prep])
    try:
        got = _rows(compile_cohort(defn, cdm).cohort.execute())
    finally:
        cdm.close()
    _, expected = _verify(case)
    assert got == expected


def test_every_verified_cohort_is_run_or_excluded() -> None:
    """Each cohort id in the VERIFY files is a case above or an excluded (unsupported) one."""
    run = {(c.verify, c.cohort_id) for c in CASES}
    for verify in {(c.folder, c.verify) for c in CASES}:
        data = json.loads((DATA / verify[0] / f"{verify[1]}.json").read_text("utf-8"))
        table = next(k for k in data if k.endswith(".cohort"))
        ids = {r["cohort_definition_id"] for r in data[table]}
        missing = {i for i in ids if (verify[1], i) not in run and (verify[1], i) not in EXCLUDED}
        assert not missing, f"{verify[1]}: cohort ids {missing} neither run nor excluded"


@pytest.mark.parametrize("key", sorted(EXCLUDED), ids=lambda k: f"{k[0]}-{k[1]}")
def test_excluded_cohorts_fail_to_import_naming_the_element(key: tuple[str, int]) -> None:
    element, case = EXCLUDED[key]
    with pytest.raises(CirceImportError, match=rf"CriteriaList\[0\]\.{element}`"):
        from_circe(_expression(case))


def test_mixed_concept_sets_scenario_is_outside_the_subset() -> None:
    with pytest.raises(CirceImportError, match="ConditionSourceConcept"):
        from_circe(DATA / "mixedConceptsets" / "mixedConceptsetsExpression.json")


def test_continuous_exposure_without_drug_concept_set_is_an_error() -> None:
    """As circe-be's test expects an exception when the CustomEra codeset is null."""
    doc = _expression(Case("exits", "", "", 3, "continuousExposureExpression"))
    doc["EndStrategy"]["CustomEra"]["DrugCodesetId"] = None
    with pytest.raises(CirceImportError, match=r"CustomEra\.DrugCodesetId`: is required"):
        from_circe(doc)


def test_simple_inclusion_rule_attrition(cdm_files: dict[str, Path]) -> None:
    """circe-be's inclusion stats: 2 persons enter, 1 has the prior condition (mask 1)."""
    case = next(c for c in CASES if c.folder == "inclusionRules")
    expected = json.loads((DATA / case.folder / f"{case.verify}.json").read_text("utf-8"))
    stats = expected["simpleInclusionRule.cohort_inclusion_result"]
    by_mask = {r["inclusion_rule_mask"]: r["person_count"] for r in stats if r["mode_id"] == 1}
    cdm = DuckDBFileCdm(cdm_files[case.prep])
    try:
        attrition = compile_cohort(from_circe(_expression(case)), cdm).attrition()
    finally:
        cdm.close()
    assert list(attrition.rule) == ["Qualifying entry events", "Prior Condition"]
    assert list(attrition.persons) == [sum(by_mask.values()), by_mask[1]]
