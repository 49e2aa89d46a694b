"""Generic OMOP CDM input: DuckDB files of CDM 5.3/5.4 in any case and schema, and catalog sites."""

from __future__ import annotations

from pathlib import Path

import duckdb
import ibis
import pytest

from clinnova_explore.catalog import Catalog, DisclosurePolicy, Site
from clinnova_explore.cdm.schema import SCHEMAS, create_cdm_tables
from clinnova_explore.cdm.source import CdmSource, CdmSourceError, DuckDBFileCdm, open_cdm


def _make_cdm(
    path: Path,
    *,
    schema: str = "main",
    version: str | None = "v5.3.1",
    visit_names: str = "5.3",
    vocab_schema: str | None = None,
) -> Path:
    """A tiny CDM written the way other ETLs write it: UPPER-case names, loose column types."""
    con = duckdb.connect(str(path))
    s = f'"{schema}"'
    v = f'"{vocab_schema or schema}"'
    for name in {schema, vocab_schema or schema}:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{name}"')
    con.execute(
        f"CREATE TABLE {s}.PERSON (PERSON_ID BIGINT, GENDER_CONCEPT_ID BIGINT, "
        "YEAR_OF_BIRTH BIGINT, RACE_CONCEPT_ID BIGINT, ETHNICITY_CONCEPT_ID BIGINT, "
        "PROVIDER_ID VARCHAR)"
    )
    con.execute(
        f"INSERT INTO {s}.PERSON VALUES (1, 8507, 1970, 0, 0, '12'), (2, 8532, 1985, 0, 0, NULL),"
        " (3, 8532, 1990, 0, 0, 'x')"
    )
    con.execute(
        f"CREATE TABLE {s}.OBSERVATION_PERIOD (OBSERVATION_PERIOD_ID BIGINT, PERSON_ID BIGINT, "
        "OBSERVATION_PERIOD_START_DATE DATE, OBSERVATION_PERIOD_END_DATE DATE, "
        "PERIOD_TYPE_CONCEPT_ID BIGINT)"
    )
    con.execute(
        f"INSERT INTO {s}.OBSERVATION_PERIOD VALUES (1, 1, '2000-01-01', '2010-12-31', 0),"
        " (2, 2, '2005-01-01', '2015-12-31', 0)"
    )
    admitted = "ADMITTING_SOURCE" if visit_names == "5.3" else "ADMITTED_FROM"
    discharged = "DISCHARGE_TO" if visit_names == "5.3" else "DISCHARGED_TO"
    con.execute(
        f"CREATE TABLE {s}.VISIT_OCCURRENCE (VISIT_OCCURRENCE_ID BIGINT, PERSON_ID BIGINT, "
        "VISIT_CONCEPT_ID BIGINT, VISIT_START_DATE DATE, VISIT_END_DATE DATE, "
        f"VISIT_TYPE_CONCEPT_ID BIGINT, {admitted}_CONCEPT_ID BIGINT, {discharged}_CONCEPT_ID "
        "BIGINT)"
    )
    con.execute(
        f"INSERT INTO {s}.VISIT_OCCURRENCE VALUES (10, 1, 9201, '2001-03-01', '2001-03-05', 0,"
        " 8717, 8536)"
    )
    con.execute(
        f"CREATE TABLE {s}.MEASUREMENT (MEASUREMENT_ID DOUBLE, PERSON_ID BIGINT, "
        "MEASUREMENT_CONCEPT_ID BIGINT, MEASUREMENT_DATE DATE, MEASUREMENT_TYPE_CONCEPT_ID "
        "BIGINT, VALUE_AS_NUMBER VARCHAR)"
    )
    con.execute(f"INSERT INTO {s}.MEASUREMENT VALUES (5, 1, 3020460, '2001-03-02', 0, '1.5')")
    con.execute(
        f"CREATE TABLE {v}.CONCEPT_ANCESTOR (ANCESTOR_CONCEPT_ID DOUBLE, "
        "DESCENDANT_CONCEPT_ID BIGINT, MIN_LEVELS_OF_SEPARATION BIGINT, "
        "MAX_LEVELS_OF_SEPARATION BIGINT)"
    )
    con.execute(f"INSERT INTO {v}.CONCEPT_ANCESTOR VALUES (192671, 192671, 0, 0)")
    # an empty table exported from a CSV whose header row became data (as in Eunomia's death)
    con.execute(f"CREATE TABLE {s}.DEATH (column0 VARCHAR, column1 VARCHAR, column2 VARCHAR)")
    con.execute(f"INSERT INTO {s}.DEATH VALUES ('PERSON_ID', 'DEATH_DATE', 'CAUSE_CONCEPT_ID')")
    if version is not None:
        con.execute(f"CREATE TABLE {s}.CDM_SOURCE (CDM_SOURCE_NAME VARCHAR, CDM_VERSION VARCHAR)")
        con.execute(f"INSERT INTO {s}.CDM_SOURCE VALUES ('test', '{version}')")
    con.close()
    return path


@pytest.fixture
def upper_cdm(tmp_path: Path) -> Path:
    return _make_cdm(tmp_path / "Upper_CDM.duckdb", schema="cdm")


def test_tables_get_lower_case_columns_and_keep_their_rows(upper_cdm: Path) -> None:
    cdm = open_cdm(upper_cdm)
    assert isinstance(cdm, DuckDBFileCdm)
    person = cdm.table("PERSON").order_by("person_id").execute()
    assert list(person.columns) == list(SCHEMAS["person"].names)
    assert person.person_id.tolist() == [1, 2, 3]
    assert person.year_of_birth.tolist() == [1970, 1985, 1990]
    # a text provider_id is read as the CDM's integer; a value that is no number becomes NULL
    assert person.provider_id.tolist()[0] == 12
    assert person.provider_id.isna().tolist() == [False, True, True]
    assert cdm.id == "Upper_CDM"
    assert cdm.policy == DisclosurePolicy()
    cdm.close()


def test_table_is_a_lazy_projection_of_the_file(upper_cdm: Path) -> None:
    cdm = DuckDBFileCdm(upper_cdm)
    sql = str(ibis.to_sql(cdm.table("person")))
    assert '"cdm"."PERSON"' in sql and '"PERSON_ID" AS "person_id"' in sql
    with pytest.raises(duckdb.Error, match="read-only"):
        cdm.connect().raw_sql("CREATE TABLE cdm.scratch (a INTEGER)")
    cdm.close()


def test_cdm_53_visit_columns_take_their_54_names(upper_cdm: Path) -> None:
    cdm = DuckDBFileCdm(upper_cdm)
    visit = cdm.table("visit_occurrence").execute()
    assert visit.admitted_from_concept_id.tolist() == [8717]
    assert visit.discharged_to_concept_id.tolist() == [8536]
    assert "admitting_source_concept_id" not in visit.columns
    cdm.close()


def test_types_are_cast_and_missing_54_columns_are_null(upper_cdm: Path) -> None:
    cdm = DuckDBFileCdm(upper_cdm)
    meas = cdm.table("measurement")
    assert meas.schema()["value_as_number"].is_floating()
    assert meas.schema()["measurement_id"].is_integer()
    row = meas.execute().iloc[0]
    assert row.value_as_number == 1.5 and row.measurement_id == 5
    assert row.measurement_event_id is None or row.measurement_event_id != row.measurement_event_id
    ancestor = cdm.table("concept_ancestor")
    assert ancestor.schema()["ancestor_concept_id"].is_integer()
    assert ancestor.ancestor_concept_id.execute().tolist() == [192671]
    cdm.close()


def test_header_only_table_is_an_empty_cdm_table(upper_cdm: Path) -> None:
    cdm = DuckDBFileCdm(upper_cdm)
    death = cdm.table("death")
    assert list(death.schema().items()) == list(SCHEMAS["death"].items())
    assert death.count().execute() == 0
    cdm.close()


def test_generic_columns_without_a_header_row_are_an_error(tmp_path: Path) -> None:
    path = _make_cdm(tmp_path / "x.duckdb")
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE note (column0 VARCHAR, column1 VARCHAR)")
    con.execute("INSERT INTO note VALUES ('a', 'b'), ('c', 'd')")
    con.close()
    cdm = DuckDBFileCdm(path)
    with pytest.raises(CdmSourceError, match="'note' has only generic columns"):
        cdm.table("note")
    cdm.close()


@pytest.mark.parametrize(
    ("version", "visit_names", "expected"),
    [
        ("v5.3.1", "5.3", "5.3"),
        ("5.4.0", "5.4", "5.4"),
        ("CDM v5.4", "5.3", "5.4"),  # cdm_source says so
        (None, "5.3", "5.3"),  # only the 5.3 visit columns tell
        (None, "5.4", "5.4"),
    ],
)
def test_cdm_version_detection(
    tmp_path: Path, version: str | None, visit_names: str, expected: str
) -> None:
    cdm = DuckDBFileCdm(_make_cdm(tmp_path / "v.duckdb", version=version, visit_names=visit_names))
    assert cdm.cdm_version == expected
    # whatever the version, the 5.4 names are what tables show
    assert "admitted_from_concept_id" in cdm.table("visit_occurrence").columns
    cdm.close()


def test_vocabulary_in_another_schema_and_explicit_schema(tmp_path: Path) -> None:
    path = _make_cdm(tmp_path / "split.duckdb", schema="cdm", vocab_schema="vocab")
    cdm = DuckDBFileCdm(path, policy=DisclosurePolicy(min_cell_count=11), id="split_site")
    assert cdm.table("concept_ancestor").count().execute() == 1
    assert (cdm.id, cdm.policy.min_cell_count) == ("split_site", 11)
    cdm.close()
    explicit = DuckDBFileCdm(path, schema="CDM")
    assert explicit.table("person").count().execute() == 3
    assert not explicit.has_table("concept_ancestor")
    explicit.close()
    with pytest.raises(CdmSourceError, match="schema 'results' not found"):
        DuckDBFileCdm(path, schema="results")


def test_errors_name_the_file_and_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(CdmSourceError, match="does not exist"):
        open_cdm(tmp_path / "nowhere.duckdb")
    with pytest.raises(CdmSourceError, match="is not a file"):
        open_cdm(tmp_path)
    text = tmp_path / "notes.duckdb"
    text.write_text("not a database", encoding="utf-8")
    with pytest.raises(CdmSourceError, match=r"cannot open .* as a DuckDB database"):
        open_cdm(text)
    partial = tmp_path / "partial.duckdb"
    con = duckdb.connect(str(partial))
    con.execute("CREATE TABLE Person (person_id BIGINT)")
    con.close()
    with pytest.raises(CdmSourceError, match=r"not an OMOP CDM: table\(s\) observation_period"):
        open_cdm(partial)
    cdm = open_cdm(_make_cdm(tmp_path / "ok.duckdb"))
    with pytest.raises(CdmSourceError, match="table 'drug_era' not found"):
        cdm.table("drug_era")


def _catalog(tmp_path: Path) -> Path:
    """A catalog with one site whose CDM was written by the project (lower-case names)."""
    con = ibis.duckdb.connect(str(tmp_path / "alpha.duckdb"))
    create_cdm_tables(con)
    con.raw_sql("INSERT INTO person (person_id, gender_concept_id) VALUES (1, 8507), (2, 8532)")
    con.disconnect()
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "name: test\nsites:\n  - {id: alpha, name: Alpha, country: LU, location: alpha.duckdb,"
        " policy: {min_cell_count: 3}}\n",
        encoding="utf-8",
    )
    return path


def test_open_cdm_accepts_sites_and_site_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = Catalog.load(_catalog(tmp_path))
    site = open_cdm("alpha", catalog=catalog)
    assert isinstance(site, Site) and site is catalog.site("alpha")
    assert isinstance(site, CdmSource)
    assert open_cdm(site) is site
    assert site.policy.min_cell_count == 3
    file_cdm = open_cdm(str(tmp_path / "alpha.duckdb"))
    assert isinstance(file_cdm, CdmSource) and open_cdm(file_cdm) is file_cdm
    assert file_cdm.table("person").count().execute() == site.table("person").count().execute()
    with pytest.raises(CdmSourceError, match=r"'beta' is neither .* \(sites: alpha\)"):
        open_cdm("beta", catalog=catalog)
    # without a catalog argument the default catalog ($CLINNOVA_CATALOG) is searched
    monkeypatch.setenv("CLINNOVA_CATALOG", str(tmp_path / "catalog.yaml"))
    assert open_cdm("alpha").id == "alpha"
    monkeypatch.setenv("CLINNOVA_CATALOG", str(tmp_path / "missing.yaml"))
    with pytest.raises(CdmSourceError, match="no catalog to look it up in"):
        open_cdm("alpha")
    with pytest.raises(CdmSourceError, match="cannot open a CDM from a int"):
        open_cdm(42)  # type: ignore[arg-type]
    catalog.close()
    assert isinstance(file_cdm, DuckDBFileCdm)
    file_cdm.close()
