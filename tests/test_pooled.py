"""Pooled mode: all sites' DuckDB files as one virtual CDM with unique ids."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import ibis
import pytest

from clinnova_explore.analysis.pooled import (
    PooledCdm,
    PooledModeError,
    is_id_column,
    pooled_site,
    site_label,
    strictest,
)
from clinnova_explore.catalog import Catalog, DisclosurePolicy, Site
from clinnova_explore.cdm.schema import FOREIGN_KEYS, PRIMARY_KEYS, SCHEMAS
from clinnova_explore.cdm.source import DuckDBFileCdm
from clinnova_explore.pipeline import BuildResult

VOCABULARY = ("concept", "concept_ancestor", "concept_relationship")


@pytest.fixture(scope="module")
def catalog(small_build: BuildResult) -> Catalog:
    return Catalog.load(small_build.catalog_path)


@pytest.fixture(scope="module")
def pooled(catalog: Catalog) -> Iterator[PooledCdm]:
    with pooled_site(catalog) as p:
        yield p


def site_sql(site: Site, sql: str) -> int:
    """A hand-written count on one site's own file."""
    con = duckdb.connect(site.resolved_location(), read_only=True)
    try:
        row = con.sql(sql).fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0])


def test_every_table_holds_every_sites_rows(catalog: Catalog, pooled: PooledCdm) -> None:
    for table in SCHEMAS:
        pooled_rows = pooled.table(table).count().execute()
        if table in VOCABULARY:
            expected = site_sql(catalog.sites[0], f"SELECT count(*) FROM {table}")
        else:
            expected = sum(site_sql(s, f"SELECT count(*) FROM {table}") for s in catalog)
        assert pooled_rows == expected, table
    assert pooled.table("person").count().execute() == 800
    assert list(pooled.table("measurement").schema().names) == list(SCHEMAS["measurement"].names)


def test_ids_are_unique_although_sites_reuse_them(catalog: Catalog, pooled: PooledCdm) -> None:
    # the premise: every site numbers its persons from 1
    assert all(site_sql(s, "SELECT min(person_id) FROM person") == 1 for s in catalog)
    for table, key in PRIMARY_KEYS.items():
        if table in VOCABULARY:
            continue
        t = pooled.table(table)
        assert t[key].nunique().execute() == t.count().execute(), table


def test_references_between_tables_survive(catalog: Catalog, pooled: PooledCdm) -> None:
    for (table, column), (ref_table, ref_column) in FOREIGN_KEYS.items():
        sql = f"SELECT count(*) FROM {table} t JOIN {ref_table} r ON t.{column} = r.{ref_column}"
        per_site = sum(site_sql(s, sql) for s in catalog)
        t, r = pooled.table(table), pooled.table(ref_table)
        joined = t.join(r, t[column] == r[ref_column]).count().execute()
        assert joined == per_site, (table, column)


def test_pooled_ids_map_back_to_their_sites(catalog: Catalog, pooled: PooledCdm) -> None:
    person = pooled.table("person")
    mapped = person.select(
        "person_id",
        site=pooled.site_of(person.person_id),
        original=pooled.original_id(person.person_id),
    ).to_pandas()
    expected = {
        (s.id, int(pid)) for s in catalog for pid in s.table("person").person_id.to_pandas()
    }
    assert set(zip(mapped.site, mapped.original, strict=True)) == expected
    index = {sid: i for i, sid in enumerate(catalog.site_ids)}
    n = len(catalog)
    assert all(
        pid == orig * n + index[sid]
        for pid, sid, orig in zip(mapped.person_id, mapped.site, mapped.original, strict=True)
    )
    one = catalog.sites[2]
    assert site_label(one, ibis.literal(7)).execute() == one.id
    assert site_label(pooled, ibis.literal(7 * n + 2)).execute() == one.id


def test_id_columns_are_the_non_concept_identifiers() -> None:
    renumbered = {
        c for t, s in SCHEMAS.items() if t not in VOCABULARY for c in s if is_id_column(c)
    }
    assert {"person_id", "visit_occurrence_id", "subject_id", "measurement_event_id"} <= renumbered
    assert not any(c.endswith("concept_id") for c in renumbered)
    assert "cohort_definition_id" not in renumbered


def test_policy_is_the_strictest_of_the_sites(catalog: Catalog) -> None:
    policies = [
        DisclosurePolicy(min_cell_count=3, min_cohort_size=30, allow_quantiles=True),
        DisclosurePolicy(
            min_cell_count=11,
            km_time_bin_days=7,
            max_params_per_obs=0.05,
            allow_quantiles=False,
            allowed_analyses=("cohort", "characterize"),
        ),
    ]
    sites = [s.model_copy(update={"policy": p}) for s, p in zip(catalog, policies, strict=False)]
    with pooled_site(sites) as p:
        assert p.policy == DisclosurePolicy(
            min_cell_count=11,
            min_cohort_size=30,
            km_time_bin_days=7,
            max_params_per_obs=0.05,
            allow_quantiles=False,
            allowed_analyses=("cohort", "characterize"),
            km_min_events_per_bin=11,  # each site's effective minimum, the largest of them
            differencing_guard=True,
        )
        assert p.sites == tuple(catalog.site_ids[:2])
    alone = strictest([policies[0]])
    assert alone.km_min_count == policies[0].km_min_count == 3
    assert alone.model_copy(update={"km_min_events_per_bin": None}) == policies[0]


def test_non_duckdb_sites_cannot_be_pooled(catalog: Catalog) -> None:
    pg = Site(id="remote", name="Remote", country="DE", backend="postgres", location_env="PG_URL")
    with pytest.raises(PooledModeError, match=r"site 'remote' uses backend 'postgres'.*federated"):
        pooled_site([catalog.sites[0], pg])
    with pytest.raises(PooledModeError, match="at least one site"):
        pooled_site([])
    with pytest.raises(PooledModeError, match="duplicate site ids"):
        pooled_site([catalog.sites[0], catalog.sites[0]])


def test_files_with_other_spellings_and_missing_tables(catalog: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        'CREATE TABLE "PERSON" ("PERSON_ID" INTEGER, "GENDER_CONCEPT_ID" INTEGER, '
        '"YEAR_OF_BIRTH" INTEGER, "RACE_CONCEPT_ID" INTEGER, "ETHNICITY_CONCEPT_ID" INTEGER)'
    )
    con.execute("INSERT INTO PERSON VALUES (1, 8532, 1980, 0, 0), (2, 8507, 1990, 0, 0)")
    con.execute(
        'CREATE TABLE "Observation_Period" ("Observation_Period_Id" BIGINT, "Person_Id" BIGINT, '
        '"Observation_Period_Start_Date" DATE, "Observation_Period_End_Date" DATE, '
        '"Period_Type_Concept_Id" BIGINT)'
    )
    con.execute("INSERT INTO Observation_Period VALUES (1, 1, '2010-01-01', '2020-01-01', 0)")
    con.close()
    other = DuckDBFileCdm(path, id="other")
    first = catalog.sites[0]
    try:
        with pooled_site([first, other]) as p:
            person = p.table("person")
            assert person.count().execute() == first.table("person").count().execute() + 2
            theirs = person.filter(p.site_of(person.person_id) == "other").to_pandas()
            assert sorted(theirs.person_id) == [1 * 2 + 1, 2 * 2 + 1]
            assert theirs.birth_datetime.isna().all()  # a column the file lacks
            visits = p.table("visit_occurrence").count().execute()
            assert visits == first.table("visit_occurrence").count().execute()
            op = p.table("observation_period")
            assert op.filter(op.person_id == 3).count().execute() == 1
    finally:
        other.close()


def test_each_pooled_site_is_its_own_backend(catalog: Catalog) -> None:
    with pooled_site(catalog.sites[:2]) as a, pooled_site(catalog.sites[:2]) as b:
        assert a.connect() != b.connect()
        persons = a.table("person").count().execute()
    with pooled_site(catalog.sites[:2]) as c:
        assert c.table("person").count().execute() == persons


def test_a_closed_pooled_site_says_so(catalog: Catalog) -> None:
    p = pooled_site(catalog.sites[:1])
    with pytest.raises(PooledModeError, match="no CDM table 'dq_results'"):
        p.table("dq_results")
    p.close()
    with pytest.raises(PooledModeError, match="closed"):
        p.table("person")
