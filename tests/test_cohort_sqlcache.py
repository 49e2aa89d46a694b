"""Reused cohort SQL: same answers as compiling afresh, shared only between like sources.

The reference for every count here is the uncached path: the definition compiled with
:func:`compile_cohort` and its count and attrition expressions executed by ibis itself (which
compiles them to SQL on the spot). The counts themselves are checked against pandas in
``tests/test_cohort_counts.py``; this module checks that caching never changes them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import ibis
import ibis.expr.types as ir
import pandas as pd
import pytest

from clinnova_explore.catalog import Catalog, CatalogError, DisclosurePolicy, Site
from clinnova_explore.cdm.source import CdmSource, DuckDBFileCdm
from clinnova_explore.cohort import (
    CohortDefinition,
    CompiledCohort,
    builtin_definition,
    compile_cohort,
    sqlcache,
)
from clinnova_explore.cohort import compile as compile_module
from clinnova_explore.cohort.compile import cohort_rows, count_and_attrition
from clinnova_explore.pipeline import BuildResult

DEFINITIONS = ["ms_high_efficacy_start", "ms_relapse", "ibd_advanced_start", "ra_csdmard_start"]

Counted = tuple[dict[str, int], list[tuple[str, int, int]]]


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    sqlcache.clear()
    yield
    sqlcache.clear()


@pytest.fixture(scope="module")
def catalog(small_build: BuildResult) -> Catalog:
    return Catalog.load(small_build.catalog_path)


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ids of the sources the cohort compiler built expressions for, in call order."""
    calls: list[str] = []
    real = compile_module.compile_cohort

    def counting(definition: CohortDefinition, cdm: CdmSource) -> CompiledCohort:
        calls.append(cdm.id)
        return real(definition, cdm)

    monkeypatch.setattr(compile_module, "compile_cohort", counting)
    return calls


def uncached(defn: CohortDefinition, cdm: CdmSource) -> Counted:
    """Counts and attrition through ibis, without any SQL cache."""
    compiled = compile_cohort(defn, cdm)
    c = compiled.cohort
    total = c.aggregate(persons=c.subject_id.nunique(), records=c.count()).execute()
    stages = compiled.attrition_expr().execute().set_index("stage")
    names = ["Qualifying entry events", *(r.name for r in defn.inclusion_rules)]
    steps = [
        (name, int(stages.persons.get(k, 0)), int(stages.records.get(k, 0)))
        for k, name in enumerate(names)
    ]
    return {"persons": int(total.persons[0]), "records": int(total.records[0])}, steps


def as_counted(counts: dict[str, int], attrition: pd.DataFrame) -> Counted:
    assert list(attrition.columns) == ["rule", "persons", "records"]
    assert attrition.dtypes.persons == "int64" and attrition.dtypes.records == "int64"
    steps = [(str(r), int(p), int(n)) for r, p, n in attrition.itertuples(index=False)]
    return counts, steps


def altered_site(source: Site, folder: Path, sql: str, id: str = "altered") -> Site:
    """A copy of ``source``'s DuckDB file changed by ``sql``, as a catalog site."""
    path = folder / f"{id}.duckdb"
    shutil.copyfile(source.resolved_location(), path)
    con = duckdb.connect(str(path))
    con.execute(sql)
    con.close()
    return Site(id=id, name=id, country="LU", location=str(path), policy=source.policy)


@pytest.mark.parametrize("name", DEFINITIONS)
def test_cached_sql_gives_the_uncached_results_at_every_site(
    catalog: Catalog, name: str, compiles: list[str]
) -> None:
    defn = builtin_definition(name)
    expected = {site.id: uncached(defn, site) for site in catalog}
    assert len({str(e) for e in expected.values()}) > 1, "sites should differ, or this is weak"
    compiles.clear()
    for round_ in range(2):  # first round: compile once, then reuse; second: all reused
        for site in catalog:
            got = as_counted(*count_and_attrition(defn, site))
            assert got == expected[site.id], f"{name} at {site.id}, round {round_}"
    assert compiles == [catalog.site_ids[0]]
    # the public methods give the same numbers, from their own cached queries
    for site in catalog:
        compiled = compile_cohort(defn, site)
        assert as_counted(compiled.count(), compiled.attrition()) == expected[site.id]


@pytest.mark.parametrize("name", DEFINITIONS)
def test_cached_rows_equal_the_ibis_expression_at_every_site(name: str, catalog: Catalog) -> None:
    defn = builtin_definition(name)
    for site in catalog:
        compiled = compile_cohort(defn, site)
        expected = compiled.cohort.execute()
        expected = expected.sort_values(["subject_id", "cohort_start_date"]).reset_index(drop=True)
        assert len(expected) > 0, (name, site.id)
        for _ in range(2):  # the first call compiles and stores the SQL, the second reuses it
            pd.testing.assert_frame_equal(compile_cohort(defn, site).to_pandas(), expected)
            pd.testing.assert_frame_equal(cohort_rows(defn, site), expected)
    assert len(sqlcache.SQL) == 1  # one compiled rows query, shared by the like-laid-out sites


def test_sites_of_one_layout_share_one_compilation(catalog: Catalog, compiles: list[str]) -> None:
    defn = builtin_definition("ms_high_efficacy_start")
    for site in catalog:
        count_and_attrition(defn, site)
    assert compiles == [catalog.site_ids[0]]
    assert len(sqlcache.SQL) == 1 and len(sqlcache.PLANS) == 1
    # counts, attrition and the combined query are separate entries of one definition
    compiled = compile_cohort(defn, catalog.site(catalog.site_ids[1]))
    compiled.count()
    compiled.attrition()
    assert len(sqlcache.SQL) == 3
    # a catalog loaded again (new connections, new table objects) still shares the entries
    again = Catalog.load(catalog.path)
    compiles.clear()
    for site in again:
        count_and_attrition(defn, site)
    assert compiles == [] and len(sqlcache.SQL) == 3
    for site in again:
        site.close()


def test_a_changed_definition_never_reuses_sql(catalog: Catalog, compiles: list[str]) -> None:
    site = catalog.site(catalog.site_ids[0])
    base = builtin_definition("ms_diagnosis")
    entry = base.entry.model_copy(
        update={"observation": base.entry.observation.model_copy(update={"prior_days": 730})}
    )
    stricter = base.model_copy(update={"entry": entry})
    first = as_counted(*count_and_attrition(base, site))
    second = as_counted(*count_and_attrition(stricter, site))
    assert first == uncached(base, site) and second == uncached(stricter, site)
    assert second[0]["persons"] < first[0]["persons"], "the edit should change the count"
    assert compiles == [site.id, site.id] and len(sqlcache.SQL) == 2


@pytest.mark.parametrize(
    ("change", "defn_name"),
    [
        # the age rule reads year_of_birth: stored as text it must be cast
        ("ALTER TABLE person ALTER year_of_birth TYPE VARCHAR", "ms_high_efficacy_start"),
        # the CDM in another schema: every table reference is qualified differently
        (
            "CREATE SCHEMA cdm; "
            + "; ".join(
                f"CREATE TABLE cdm.{t} AS SELECT * FROM main.{t}; DROP TABLE main.{t}"
                for t in (
                    "person",
                    "observation_period",
                    "condition_occurrence",
                    "drug_exposure",
                    "concept",
                    "concept_ancestor",
                    "concept_relationship",
                )
            ),
            "ms_high_efficacy_start",
        ),
    ],
    ids=["column-type", "schema"],
)
def test_a_differently_laid_out_source_gets_its_own_sql(
    catalog: Catalog, tmp_path: Path, compiles: list[str], change: str, defn_name: str
) -> None:
    defn = builtin_definition(defn_name)
    original = catalog.site(catalog.site_ids[0])
    expected = uncached(defn, original)
    assert as_counted(*count_and_attrition(defn, original)) == expected
    if change.startswith("CREATE SCHEMA"):
        path = tmp_path / "moved.duckdb"
        shutil.copyfile(original.resolved_location(), path)
        con = duckdb.connect(str(path))
        con.execute(change)
        con.close()
        other: Site | DuckDBFileCdm = DuckDBFileCdm(path, policy=original.policy)
    else:
        other = altered_site(original, tmp_path, change)
    try:
        for _ in range(2):
            assert as_counted(*count_and_attrition(defn, other)) == expected
        assert compiles == [original.id, other.id]
        assert len(sqlcache.SQL) == 2
        sql = sqlcache.SQL.values()
        assert sql[0] != sql[1], "the two layouts should need different SQL"
    finally:
        other.close()


def test_a_file_source_and_a_site_over_one_file_do_not_share(
    catalog: Catalog, compiles: list[str]
) -> None:
    site = catalog.site(catalog.site_ids[2])
    defn = builtin_definition("ms_relapse")
    cdm = DuckDBFileCdm(site.resolved_location(), policy=site.policy)
    try:
        results = [as_counted(*count_and_attrition(defn, s)) for s in (site, cdm, site, cdm)]
        assert results == [uncached(defn, site)] * 4
        assert compiles == [site.id, cdm.id]
    finally:
        cdm.close()


def test_a_missing_table_is_reported_as_without_the_cache(catalog: Catalog, tmp_path: Path) -> None:
    defn = builtin_definition("ms_high_efficacy_start")  # enters on a drug exposure
    lacking = altered_site(catalog.site(catalog.site_ids[0]), tmp_path, "DROP TABLE drug_exposure")
    try:
        with pytest.raises(CatalogError) as fresh:
            compile_cohort(defn, lacking)
        count_and_attrition(defn, catalog.site(catalog.site_ids[0]))  # the plan is now cached
        with pytest.raises(CatalogError) as planned:
            count_and_attrition(defn, lacking)
        assert str(planned.value) == str(fresh.value)
        assert "drug_exposure" in str(planned.value)
    finally:
        lacking.close()


class MemoryCdm:
    """A CDM source whose tables are in-memory ibis tables (copies of a site's tables)."""

    def __init__(self, site: Site, tables: list[str]) -> None:
        self.id = f"{site.id}_in_memory"
        self.policy = DisclosurePolicy(min_cell_count=1, min_cohort_size=1)
        self._con = ibis.duckdb.connect()
        self._tables = {t: ibis.memtable(site.table(t).to_pandas()) for t in tables}

    def connect(self) -> ibis.BaseBackend:
        return self._con

    def table(self, name: str) -> ir.Table:
        return self._tables[name]


def test_in_memory_tables_and_hand_built_cohorts_are_not_cached(catalog: Catalog) -> None:
    site = catalog.site(catalog.site_ids[1])
    defn = builtin_definition("ms_diagnosis")
    needed = ["person", "observation_period", "condition_occurrence", "concept"]
    needed += ["concept_ancestor", "concept_relationship"]
    memory = MemoryCdm(site, needed)
    assert as_counted(*count_and_attrition(defn, memory)) == uncached(defn, site)
    assert len(sqlcache.SQL) == 0
    compiled = compile_cohort(defn, site)
    by_hand = CompiledCohort(**{**compiled.__dict__, "tables": {}})
    assert by_hand.count() == compiled.count() == uncached(defn, site)[0]
    assert len(sqlcache.SQL) == 1  # only compiled.count(): the hand-built one read unknown tables


def test_lru_cache_keeps_the_most_recently_used() -> None:
    cache: sqlcache.LruCache[str, int] = sqlcache.LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert cache.get("b") is None
    assert (cache.hits, cache.misses, len(cache)) == (3, 1, 2)
    cache.clear()
    assert (cache.hits, cache.misses, len(cache)) == (0, 0, 0)
    with pytest.raises(ValueError, match="at least one entry"):
        sqlcache.LruCache(0)


def test_sql_text_runs_only_on_known_backends(catalog: Catalog) -> None:
    con: Any = object()  # no backend name: not one that runs SQL text
    with pytest.raises(ValueError, match="cannot run SQL text"):
        sqlcache.fetch_rows(con, "SELECT 1")
    assert sqlcache.fetch_rows(catalog.site(catalog.site_ids[0]).connect(), "SELECT 1") == [(1,)]
