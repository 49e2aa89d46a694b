"""`clinnova-explore cohort count|sql|generate` on catalog sites and DuckDB files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from clinnova_explore.cdm import concepts as c
from clinnova_explore.cli import app
from clinnova_explore.pipeline import BuildResult

runner = CliRunner()
ENV = {"COLUMNS": "200"}

FIRST_DMT_365 = """
name: First MS DMT after a year of observation
concept_sets: {dmt: {include: [2000000301]}}
entry:
  events: [{domain: drug, concept_set: dmt, first: true}]
  observation: {prior_days: 365}
inclusion_rules:
  - name: Female
    group: {demographics: [{sex: [8532]}]}
"""

# ATLAS/Circe JSON: first MS diagnosis in history (with descendants)
MS_CIRCE = {
    "ConceptSets": [
        {
            "id": 0,
            "name": "MS",
            "expression": {
                "items": [
                    {"concept": {"CONCEPT_ID": c.MULTIPLE_SCLEROSIS}, "includeDescendants": True}
                ]
            },
        }
    ],
    "PrimaryCriteria": {
        "CriteriaList": [{"ConditionOccurrence": {"CodesetId": 0, "First": True}}],
        "ObservationWindow": {"PriorDays": 0, "PostDays": 0},
        "PrimaryCriteriaLimit": {"Type": "First"},
    },
}


def _one(db: str | Path, query: str) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        ((n,),) = con.sql(query).fetchall()
        return int(n)
    finally:
        con.close()


def _first_dmt_sql(female_only: bool) -> str:
    sex = "join person p on p.person_id = f.person_id and p.gender_concept_id = 8532"
    return f"""
        with f as (
            select de.person_id, min(de.drug_exposure_start_date) as d
            from drug_exposure de
            join concept_ancestor ca on ca.descendant_concept_id = de.drug_concept_id
            where ca.ancestor_concept_id = {c.MS_DMT}
            group by de.person_id)
        select count(distinct f.person_id) from f
        join observation_period op on op.person_id = f.person_id
            and f.d between op.observation_period_start_date and op.observation_period_end_date
        {sex if female_only else ""}
        where f.d - op.observation_period_start_date >= 365"""


@pytest.fixture()
def site_copy(small_build: BuildResult, tmp_path: Path) -> Path:
    """A private copy of one site's CDM file (nothing else holds it open)."""
    src = small_build.catalog_path.parent / "cdm" / "strasbourg.duckdb"
    dst = tmp_path / "strasbourg_copy.duckdb"
    shutil.copyfile(src, dst)
    return dst


@pytest.mark.parametrize("command", ["count", "sql", "generate"])
def test_cohort_commands_have_help_with_examples(command: str) -> None:
    result = runner.invoke(app, ["cohort", command, "--help"], env=ENV)
    assert result.exit_code == 0, result.output
    assert "Examples" in result.output and f"clinnova-explore cohort {command}" in result.output


def test_count_on_a_catalog_site_matches_hand_written_sql(
    small_build: BuildResult, tmp_path: Path
) -> None:
    defn = tmp_path / "first_dmt.yaml"
    defn.write_text(FIRST_DMT_365, encoding="utf-8")
    cat = str(small_build.catalog_path)
    out = runner.invoke(
        app, ["cohort", "count", "--cdm", "basel", "--definition", str(defn), "-c", cat], env=ENV
    )
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    db = small_build.catalog_path.parent / "cdm" / "basel.duckdb"
    entry, female = _one(db, _first_dmt_sql(False)), _one(db, _first_dmt_sql(True))
    assert 0 < female < entry
    assert got["cdm"] == "basel" and got["definition"] == "First MS DMT after a year of observation"
    assert got["attrition"] == [
        {"rule": "Qualifying entry events", "persons": entry, "records": entry},
        {"rule": "Female", "persons": female, "records": female},
    ]
    assert (got["persons"], got["records"]) == (female, female)
    # a shipped definition can be named instead of a file
    named = runner.invoke(
        app, ["cohort", "count", "--cdm", "basel", "-d", "ms_relapse", "-c", cat], env=ENV
    )
    assert named.exit_code == 0, named.output
    relapse = json.loads(named.stdout)
    persons = _one(
        db,
        f"select count(distinct person_id) from observation "
        f"where observation_concept_id = {c.MS_RELAPSE}",
    )
    assert relapse["persons"] == persons > 0 and relapse["records"] >= persons


def test_count_of_circe_json_on_a_duckdb_path_in_a_subprocess(
    site_copy: Path, tmp_path: Path
) -> None:
    circe = tmp_path / "ms.json"
    circe.write_text(json.dumps(MS_CIRCE), encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "clinnova_explore.cli",
            "cohort",
            "count",
            "--cdm",
            str(site_copy),
            "--definition",
            str(circe),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    expected = _one(
        site_copy,
        f"""
        with ms as (
            select co.person_id, min(co.condition_start_date) as d from condition_occurrence co
            join concept_ancestor ca on ca.descendant_concept_id = co.condition_concept_id
            where ca.ancestor_concept_id = {c.MULTIPLE_SCLEROSIS} group by co.person_id)
        select count(*) from ms join observation_period op on op.person_id = ms.person_id
            and ms.d between op.observation_period_start_date and op.observation_period_end_date""",
    )
    assert got["cdm"] == "strasbourg_copy"
    assert got["persons"] == got["records"] == expected > 0
    assert got["attrition"] == [
        {"rule": "Qualifying entry events", "persons": expected, "records": expected}
    ]


def test_sql_and_generate(site_copy: Path, tmp_path: Path) -> None:
    defn = tmp_path / "first_dmt.yaml"
    defn.write_text(FIRST_DMT_365, encoding="utf-8")
    sql = runner.invoke(app, ["cohort", "sql", "--cdm", str(site_copy), "-d", str(defn)], env=ENV)
    assert sql.exit_code == 0, sql.output
    assert "observation_period" in sql.stdout and "SELECT" in sql.stdout.upper()
    assert "365" in sql.stdout  # the prior-observation requirement is in the query
    pg = runner.invoke(
        app,
        ["cohort", "sql", "--cdm", str(site_copy), "-d", str(defn), "--dialect", "postgres"],
        env=ENV,
    )
    assert pg.exit_code == 0 and pg.stdout != sql.stdout
    gen = runner.invoke(
        app,
        ["cohort", "generate", "--cdm", str(site_copy), "-d", str(defn), "--cohort-id", "3"],
        env=ENV,
    )
    assert gen.exit_code == 0, gen.output
    female = _one(site_copy, _first_dmt_sql(True))
    assert "Female" in gen.stdout and "wrote cohort 3" in gen.stdout
    rows = _one(site_copy, "select count(*) from cohort where cohort_definition_id = 3")
    people = _one(
        site_copy, "select count(distinct subject_id) from cohort where cohort_definition_id = 3"
    )
    assert rows == people == female


def test_user_errors_are_one_line_and_exit_2(small_build: BuildResult, tmp_path: Path) -> None:
    cat = str(small_build.catalog_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nentry: {events: [{domain: drugs}]}\nfoo: 1\n", encoding="utf-8")
    cases = {
        "none.yaml not found": ["--cdm", "basel", "-d", str(tmp_path / "none.yaml")],
        "neither an existing DuckDB file nor a site": ["--cdm", "nowhere", "-d", "ms_diagnosis"],
        "foo: Extra inputs are not permitted": ["--cdm", "basel", "-d", str(bad)],
    }
    for needle, args in cases.items():
        out = runner.invoke(app, ["cohort", "count", *args, "-c", cat], env=ENV)
        assert out.exit_code == 2, out.output
        assert needle in out.output and "Traceback" not in out.output
        lines = [line for line in out.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), out.output
    unsupported = tmp_path / "unsupported.json"
    unsupported.write_text(json.dumps({**MS_CIRCE, "Foo": 1}), encoding="utf-8")
    out = runner.invoke(
        app, ["cohort", "count", "--cdm", "basel", "-d", str(unsupported), "-c", cat]
    )
    assert out.exit_code == 2 and "Foo" in out.output, out.output
