"""Cohort generation: the shipped definitions on the demo federation, and the OMOP cohort table.

The shipped definitions run on every site of the small synthetic federation and must give the
same cohort rows and attrition as the independent pandas reference (``cohort_reference.py``).
``generate_cohort`` must write exactly those rows, replace earlier rows of the same id, and
leave the file untouched when anything fails.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from clinnova_explore.catalog import Catalog
from clinnova_explore.cdm import concepts as c
from clinnova_explore.cohort import (
    CohortDefinition,
    CohortGenerationError,
    builtin_definition,
    builtin_definition_names,
    compile_cohort,
    generate_cohort,
)
from clinnova_explore.pipeline import BuildResult
from tests.cohort_reference import Reference, normalise
from tests.cohort_tiny import TinyCdm


@pytest.fixture(scope="module")
def catalog(small_build: BuildResult) -> Catalog:
    cat = Catalog.load(small_build.catalog_path)
    yield cat  # type: ignore[misc]
    cat.close()


@pytest.fixture(scope="module")
def references(catalog: Catalog) -> dict[str, Reference]:
    return {
        site_id: Reference(Path(catalog.site(site_id).resolved_location()))
        for site_id in REFERENCE_SITES
    }


REFERENCE_SITES = ("strasbourg", "homburg")  # the pandas reference is slow: two sites


@pytest.mark.parametrize("name", builtin_definition_names())
def test_builtin_definition_on_the_demo_federation(
    catalog: Catalog, references: dict[str, Reference], name: str
) -> None:
    """Rows and attrition equal the reference; the cohort is non-empty at every site."""
    defn = builtin_definition(name)
    persons = []
    for site in catalog:
        compiled = compile_cohort(defn, site)
        if site.id not in references:
            persons.append(compiled.count()["persons"])
            continue
        rows = normalise(compiled.to_pandas())
        ref = references[site.id]
        assert rows.to_dict("records") == ref.rows(defn).to_dict("records"), (name, site.id)
        attrition = compiled.attrition()
        assert list(zip(attrition.persons, attrition.records, strict=True)) == ref.attrition(defn)
        persons.append(rows.subject_id.nunique())
        if name == "ra_bdmard_start":  # the RA diagnosis rule drops IBD-only adalimumab users
            assert attrition.persons.iloc[-1] < attrition.persons.iloc[0]
    assert min(persons) >= 1 and sum(persons) >= 30, (name, persons)


# ---------------------------------------------------------------------- generate_cohort


def _rows(path: Path, cohort_id: int) -> list[tuple[int, str, str]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        got = con.execute(
            "SELECT subject_id, CAST(cohort_start_date AS VARCHAR), "
            "CAST(cohort_end_date AS VARCHAR) FROM cohort WHERE cohort_definition_id = ? "
            "ORDER BY 1, 2",
            [cohort_id],
        ).fetchall()
    finally:
        con.close()
    return [tuple(r) for r in got]  # type: ignore[misc]


def test_generate_writes_cohort_and_attrition_to_another_file(
    catalog: Catalog, tmp_path: Path
) -> None:
    site = catalog.site("strasbourg")
    target = tmp_path / "results.duckdb"
    defn = builtin_definition("ms_platform_start")
    attrition = generate_cohort(defn, site, 7, database=target)
    want = normalise(compile_cohort(defn, site).to_pandas())
    expected = [
        (int(r.subject_id), str(r.cohort_start_date), str(r.cohort_end_date))
        for r in want.itertuples()
    ]
    assert _rows(target, 7) == expected and expected
    con = duckdb.connect(str(target), read_only=True)
    try:
        stored = con.execute(
            "SELECT rule_sequence, rule, persons, records FROM cohort_attrition "
            "WHERE cohort_definition_id = 7 ORDER BY rule_sequence"
        ).fetchall()
        types = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() "
                                 "WHERE table_name = 'cohort'").fetchall())  # fmt: skip
    finally:
        con.close()
    assert stored == [
        (k, r.rule, r.persons, r.records) for k, r in enumerate(attrition.itertuples())
    ]
    assert stored[0][1] == "Qualifying entry events" and len(stored) == 4
    assert types == {
        "cohort_definition_id": "BIGINT",
        "subject_id": "BIGINT",
        "cohort_start_date": "DATE",
        "cohort_end_date": "DATE",
    }
    # the site itself was only read, and is still usable
    assert site.table("person").count().execute() > 0


def test_generate_replaces_rows_of_the_same_id_only(catalog: Catalog, tmp_path: Path) -> None:
    site = catalog.site("basel")
    target = tmp_path / "results.duckdb"
    generate_cohort(builtin_definition("ms_relapse"), site, 1, database=target)
    generate_cohort(builtin_definition("ms_diagnosis"), site, 2, database=target)
    relapse_rows = _rows(target, 1)
    generate_cohort(builtin_definition("ibd_surgery"), site, 1, database=target)
    surgery = normalise(compile_cohort(builtin_definition("ibd_surgery"), site).to_pandas())
    assert len(_rows(target, 1)) == len(surgery) != len(relapse_rows)
    assert (
        len(_rows(target, 2))
        == compile_cohort(builtin_definition("ms_diagnosis"), site).count()["records"]
    )
    con = duckdb.connect(str(target), read_only=True)
    try:
        ids = con.execute(
            "SELECT cohort_definition_id, count(*) FROM cohort_attrition GROUP BY 1 ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    assert ids == [(1, 2), (2, 1)]  # ibd_surgery has one rule, ms_diagnosis none


SIMPLE = f"""
name: first natalizumab
concept_sets: {{n: {{include: [{c.NATALIZUMAB}]}}}}
entry: {{events: [{{domain: drug, concept_set: n, first: true}}]}}
"""


def _tiny_site(tmp_path: Path) -> Catalog:
    tiny = TinyCdm()
    for pid in (1, 2, 3):
        tiny.person(pid)
        tiny.drug(pid, c.NATALIZUMAB, f"2015-0{pid}-01", f"2015-0{pid}-28")
    tiny.write(tmp_path / "site.duckdb")
    catalog_file = tmp_path / "catalog.yaml"
    catalog_file.write_text(
        "sites:\n  - {id: tiny, name: Tiny, country: LU, location: site.duckdb}\n",
        encoding="utf-8",
    )
    return Catalog.load(catalog_file)


def test_generate_into_the_sites_own_file(tmp_path: Path) -> None:
    catalog = _tiny_site(tmp_path)
    site = catalog.site("tiny")
    assert site.table("cohort").count().execute() == 0  # the connection is open (read-only)
    generate_cohort(CohortDefinition.from_yaml(SIMPLE), site, 3)
    assert _rows(tmp_path / "site.duckdb", 3) == [
        (1, "2015-01-01", "2020-12-31"),
        (2, "2015-02-01", "2020-12-31"),
        (3, "2015-03-01", "2020-12-31"),
    ]
    assert site.table("cohort").count().execute() == 3  # the site reopened its connection
    catalog.close()


def test_a_failed_generation_changes_nothing(tmp_path: Path) -> None:
    catalog = _tiny_site(tmp_path)
    site = catalog.site("tiny")
    target = tmp_path / "results.duckdb"
    generate_cohort(CohortDefinition.from_yaml(SIMPLE), site, 1, database=target)
    before = _rows(target, 1)
    con = duckdb.connect(str(target))
    con.execute("DROP TABLE cohort_attrition")
    con.execute(
        "CREATE TABLE cohort_attrition (cohort_definition_id BIGINT, rule_sequence INTEGER, "
        "rule VARCHAR CHECK (length(rule) < 5), persons BIGINT, records BIGINT)"
    )
    con.close()
    later = CohortDefinition.from_yaml(SIMPLE + "exit: {type: fixed_offset, offset_days: 9}\n")
    assert normalise(compile_cohort(later, site).to_pandas()).cohort_end_date.tolist() != [
        r[2] for r in before
    ]
    with pytest.raises(duckdb.ConstraintException):
        generate_cohort(later, site, 1, database=target)
    assert _rows(target, 1) == before
    catalog.close()


def test_generate_explains_a_locked_target(tmp_path: Path) -> None:
    catalog = _tiny_site(tmp_path)
    site = catalog.site("tiny")
    target = tmp_path / "results.duckdb"
    duckdb.connect(str(target)).close()
    holder = duckdb.connect(str(target), read_only=True)  # another configuration holds it
    try:
        with pytest.raises(CohortGenerationError, match=r"cannot open .*results\.duckdb"):
            generate_cohort(CohortDefinition.from_yaml(SIMPLE), site, 1, database=target)
    finally:
        holder.close()
        catalog.close()


def test_generate_needs_a_database_for_a_non_duckdb_source() -> None:
    class NotDuckDB:
        id = "remote"
        backend = "postgres"

        def resolved_location(self) -> str:
            return "postgresql://somewhere"

        def table(self, name: str) -> object:
            raise AssertionError("compiling must fail first")

    with pytest.raises(CohortGenerationError, match="pass `database=`"):
        generate_cohort(CohortDefinition.from_yaml(SIMPLE), NotDuckDB())  # type: ignore[arg-type]
