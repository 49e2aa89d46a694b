"""A federation with one site on PostgreSQL gives the same results as all-DuckDB.

One site of the session's 800-person federation is loaded into a throwaway PostgreSQL cluster
with :func:`clinnova_explore.cdm.to_postgres.load_site`; a copy of the catalog puts that site on
``backend: postgres`` (URL in an environment variable). The loaded tables equal the DuckDB file
value for value; the federated Kaplan-Meier curves, the site-stratified Cox model and Table 1
computed over the mixed federation equal those of the all-DuckDB federation.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import ibis
import numpy as np
import pandas as pd
import psycopg
import pytest
import yaml

from clinnova_explore.analysis.characterize import characterize
from clinnova_explore.analysis.survival.presets import comparison
from clinnova_explore.catalog import Catalog
from clinnova_explore.cdm.pg_cluster import server_bin
from clinnova_explore.cdm.to_postgres import LoadError, load_site
from clinnova_explore.cohort import builtin_definition
from clinnova_explore.federated.federation import Federation
from clinnova_explore.federated.process_runner import ProcessRunner
from clinnova_explore.federated.protocol import SiteRequest
from clinnova_explore.pipeline import BuildResult
from tests.characterize_reference import catalog_copy
from tests.support import need, throwaway_postgres
from tools import demo_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SITE = "homburg"
SITES = ("basel", SITE)  # one site on each engine keeps the test quick; more add nothing
ENV = "CLX_TEST_FED_PG"
PRESET = "ms_high_efficacy_vs_platform"
# the catalog's cell and cohort minimums stay; models may use 1 parameter per 2 persons, so
# the Cox preset runs at every site of the 800-person federation
POLICY = {"*": {"max_params_per_obs": 0.5}}


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with throwaway_postgres() as url:
        yield url


def _on_postgres(duck_path: Path, folder: Path, sites: tuple[str, ...] | None = None) -> Path:
    """A copy of a catalog file with SITE on PostgreSQL (its URL read from ``$ENV``)."""
    doc = yaml.safe_load(duck_path.read_text(encoding="utf-8"))
    doc["sites"] = [e for e in doc["sites"] if sites is None or e["id"] in sites]
    for entry in doc["sites"]:
        if entry["id"] == SITE:
            del entry["location"]
            entry.update(backend="postgres", location_env=ENV, schema=SITE)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "data_catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def catalogs(
    small_build: BuildResult, pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Catalog, Catalog]]:
    """(all-DuckDB catalog, the same catalog with SITE on PostgreSQL)."""
    folder = tmp_path_factory.mktemp("fed_pg")
    duck_path = catalog_copy(small_build, folder / "duckdb", POLICY, sites=SITES)
    duck = Catalog.load(duck_path)
    result = load_site(duck.site(SITE), pg_url, schema=SITE)
    assert result.rows["person"] == duck.site(SITE).table("person").count().execute() > 0
    pg_path = _on_postgres(duck_path, folder / "mixed")
    assert pg_url not in pg_path.read_text(encoding="utf-8")
    mp = pytest.MonkeyPatch()
    mp.setenv(ENV, pg_url)
    mixed = Catalog.load(pg_path)
    try:
        yield duck, mixed
    finally:
        duck.close()
        mixed.close()
        mp.undo()


def _sorted(t: ibis.Table) -> pd.DataFrame:
    df = t.to_pandas()
    for col in df.columns:  # the clients differ in timestamp resolution only (us vs ns)
        if pd.api.types.is_datetime64_any_dtype(df[col]):
            df[col] = df[col].astype("datetime64[us]")
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def test_loader_copies_every_table_exactly(catalogs: tuple[Catalog, Catalog], pg_url: str) -> None:
    duck, mixed = catalogs
    d, p = duck.site(SITE), mixed.site(SITE)
    assert p.backend == "postgres"
    names = sorted(d.connect().list_tables())
    assert sorted(p.connect().list_tables()) == names
    assert {"person", "concept", "concept_ancestor", "measurement", "source_provenance"} <= set(
        names
    )
    for name in names:
        a, b = d.table(name), p.table(name)
        assert a.schema() == b.schema(), name  # bigint ids, dates, timestamps, doubles, text
        pd.testing.assert_frame_equal(_sorted(a), _sorted(b), check_exact=True, obj=name)
    # loading again replaces the tables: same rows, nothing appended
    again = load_site(d, pg_url, schema=SITE, tables=["person", "measurement"])
    assert again.rows == {
        "person": d.table("person").count().execute(),
        "measurement": d.table("measurement").count().execute(),
    }
    p.close()
    assert p.table("person").count().execute() == again.rows["person"]


def test_loader_keeps_awkward_values_and_types(pg_url: str, tmp_path: Path) -> None:
    path = tmp_path / "awkward.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE t (id BIGINT NOT NULL, n INTEGER, amount DECIMAL(12,3), "
            "ok BOOLEAN, s VARCHAR, x DOUBLE, d DATE, ts TIMESTAMP)"
        )
        con.execute(
            "INSERT INTO t VALUES "
            "(1, 7, 12345.678, true, 'a,b \"q\"\nline', 0.1::DOUBLE + 0.2::DOUBLE, "
            "DATE '1900-02-28', TIMESTAMP '2020-01-02 03:04:05.123456'), "
            "(2, NULL, -0.001, false, '', 1e-300, NULL, NULL), "
            "(3, -2147483648, NULL, NULL, NULL, 'nan'::DOUBLE, DATE '2099-12-31', NULL), "
            "(4, 0, 0, NULL, '\\N', 1::DOUBLE / 3, NULL, NULL), "
            "(5, 1, 1, NULL, 'Grüße', 1.7976931348623157e308, NULL, NULL), "
            "(6, 2, 2, NULL, 'x', '-inf'::DOUBLE, NULL, NULL)"
        )
    result = load_site(path, pg_url, schema="awkward")
    assert result.rows == {"t": 6} and result.site == "awkward"

    with psycopg.connect(pg_url) as con:
        types = con.execute(
            "SELECT column_name, data_type, numeric_precision, numeric_scale, is_nullable "
            "FROM information_schema.columns WHERE table_schema = 'awkward' "
            "ORDER BY ordinal_position"
        ).fetchall()
        assert [t[1] for t in types] == [
            "bigint",
            "integer",
            "numeric",
            "boolean",
            "text",
            "double precision",
            "date",
            "timestamp without time zone",
        ]
        assert types[2][2:4] == (12, 3) and types[0][4] == "NO"
        got = con.execute('SELECT * FROM awkward."t" ORDER BY id').fetchall()
    with duckdb.connect(str(path), read_only=True) as con:
        want = con.execute("SELECT * FROM t ORDER BY id").fetchall()
    assert len(got) == len(want) == 6
    for a, b in zip(got, want, strict=True):
        for u, v in zip(a, b, strict=True):
            if isinstance(v, float):  # doubles bit for bit (NaN included)
                assert isinstance(u, float) and np.float64(u).tobytes() == np.float64(v).tobytes()
            else:
                assert u == v and type(u) is type(v), (u, v)
    assert got[1][4] == "" and got[2][4] is None  # empty string and NULL stay apart


def test_loader_errors_name_site_and_table(catalogs: tuple[Catalog, Catalog], pg_url: str) -> None:
    duck, _ = catalogs
    with pytest.raises(LoadError, match=r"site 'homburg', table 'no_such_table'"):
        load_site(duck.site(SITE), pg_url, schema=SITE, tables=["person", "no_such_table"])
    dead = pg_url.rsplit(":", 1)[0] + ":1/postgres"
    with pytest.raises(LoadError, match=r"site 'homburg', table .*PostgreSQL failed"):
        load_site(duck.site(SITE), dead, schema="elsewhere", tables=["person"])


KM: dict[str, Any] = {"duration": "duration", "event": "event", "group": "treatment"}


@pytest.fixture(scope="module")
def federations(catalogs: tuple[Catalog, Catalog]) -> Iterator[tuple[Federation, Federation]]:
    """The preset's federation over the all-DuckDB and over the mixed catalog (in process)."""
    duck, mixed = catalogs
    spec = comparison(PRESET)
    with Federation.from_cdm(duck, spec) as all_duck, Federation.from_cdm(mixed, spec) as both:
        yield all_duck, both


def test_kaplan_meier_and_cox_identical_with_a_postgres_site(
    federations: tuple[Federation, Federation],
) -> None:
    all_duck, mixed = federations
    # the site's time-to-event rows, built in PostgreSQL, equal those built in DuckDB, and
    # arrive in the same order (the engines return them in different orders; sums over rows
    # in a model would then round differently)
    rows_d, rows_p = all_duck.sites[-1].frame(), mixed.sites[-1].frame()
    assert mixed.sites[-1].id == SITE and len(rows_d) > 20
    pd.testing.assert_frame_equal(rows_d, rows_p, check_exact=True)

    km_d, km_p = all_duck.kaplan_meier(**KM), mixed.kaplan_meier(**KM)
    assert km_d.summary["n_events"].sum() > 20
    # bit for bit: counts, times, survival, standard errors and bands
    pd.testing.assert_frame_equal(km_d.summary, km_p.summary, check_exact=True)

    covariates = ["treatment", "baseline_edss", "prior_relapses"]
    fit_d = all_duck.cox(duration="duration", event="event", covariates=covariates)
    fit_p = mixed.cox(duration="duration", event="event", covariates=covariates)
    assert fit_d.provenance is not None and fit_d.provenance.sites == SITES
    assert fit_p.provenance is not None and fit_p.provenance.sites == SITES
    assert not fit_p.provenance.refused
    assert fit_d.n == fit_p.n > 50
    assert list(fit_d.summary.index) == list(fit_p.summary.index) == covariates
    pd.testing.assert_frame_equal(fit_d.summary, fit_p.summary, check_exact=True)


def test_process_runner_with_a_postgres_site_gives_the_same_curves(
    catalogs: tuple[Catalog, Catalog], federations: tuple[Federation, Federation]
) -> None:
    _, mixed = catalogs
    expected = federations[0].kaplan_meier(**KM)
    # each site in its own process; the PostgreSQL site's process reads the URL from $ENV
    with ProcessRunner.start(mixed, timeout=120) as runner:
        status = runner.exchange({s: (None, SiteRequest("status", "tester")) for s in SITES})
        engines = {s: getattr(getattr(a, "info", None), "engine", None) for s, a in status.items()}
        assert engines == {"basel": "duckdb", SITE: "postgres"}
        with Federation.from_cdm(mixed, comparison(PRESET), runner=runner) as fed:
            assert all(s.data is None for s in fed.sites)  # no rows in this process
            got = fed.kaplan_meier(**KM)
        assert [t.site for t in runner.traffic] == list(SITES)
    assert got.provenance is not None and got.provenance.sites == SITES
    assert expected.summary["n_events"].sum() > 10
    pd.testing.assert_frame_equal(got.summary, expected.summary, check_exact=True)


def test_table1_identical_with_a_postgres_site(catalogs: tuple[Catalog, Catalog]) -> None:
    duck, mixed = catalogs
    target = builtin_definition("ms_start_first_dmt_high_efficacy")
    comparator = builtin_definition("ms_start_first_dmt_platform")
    a = characterize(target, duck, comparator=comparator)
    b = characterize(target, mixed, comparator=comparator)
    sa, sb = a.summary, b.summary
    assert sa.index.equals(sb.index) and sa.columns.equals(sb.columns)
    assert ("target", SITE, "n") in sa.columns
    floats = [c for c in sa.columns if pd.api.types.is_float_dtype(sa[c])]
    exact = [c for c in sa.columns if c not in floats]
    assert floats and exact
    # counts, missing counts and suppression flags: equal
    pd.testing.assert_frame_equal(sa[exact], sb[exact], check_exact=True)
    # means and standard deviations are float sums taken in the database: summation order is
    # the database's own (DuckDB's parallel aggregation varies from run to run), so 1e-12
    x, y = sa[floats].to_numpy(float), sb[floats].to_numpy(float)
    assert np.array_equal(np.isnan(x), np.isnan(y))
    np.testing.assert_allclose(x, y, rtol=1e-12, atol=0)
    assert (sa[("target", SITE, "n")] > 0).any()


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (nobody may reap it in a container)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _postmaster(root: Path) -> int:
    return int((root / "data" / "postmaster.pid").read_text().split()[0])


def test_demo_cluster_is_reused_restarted_and_keeps_the_url_out_of_the_catalog(
    small_build: BuildResult,
) -> None:
    bindir = server_bin()
    need(bindir is not None, "PostgreSQL server binaries (initdb) not installed")
    assert bindir is not None
    # the postgres system user must reach the cluster folder: not pytest's private tmp dir
    demo = Path(tempfile.mkdtemp(prefix="clx-demo-"))
    demo.chmod(0o755)
    root = demo / "pg"
    try:
        catalog_copy(small_build, demo, {}, sites=["basel", SITE])
        url = demo_postgres.prepare(demo, SITE)
        first = _postmaster(root)
        assert demo_postgres.prepare(demo, SITE) == url  # a running cluster is reused
        assert _postmaster(root) == first
        os.kill(first, signal.SIGKILL)  # a stale cluster: postmaster gone, its pid file left
        deadline = time.monotonic() + 30
        while _alive(first) and time.monotonic() < deadline:
            time.sleep(0.1)
        again = demo_postgres.prepare(demo, SITE)
        assert _postmaster(root) != first
        text = (demo / demo_postgres.PG_CATALOG).read_text(encoding="utf-8")
        assert again not in text and "127.0.0.1" not in text
        mp = pytest.MonkeyPatch()
        mp.setenv(demo_postgres.env_var(SITE), again)
        try:
            mixed = Catalog.load(demo / demo_postgres.PG_CATALOG)
            duck = Catalog.load(demo / demo_postgres.CATALOG)
            assert [s.backend for s in mixed] == ["duckdb", "postgres"]
            n = mixed.site(SITE).table("person").count().execute()
            assert n == duck.site(SITE).table("person").count().execute() > 0
            mixed.close()
            duck.close()
        finally:
            mp.undo()
        assert demo_postgres.stop_cluster(root, bindir)
        assert not demo_postgres.stop_cluster(root, bindir)  # stopped: nothing left to stop
    finally:
        demo_postgres.stop_cluster(root, bindir)
        shutil.rmtree(demo, ignore_errors=True)
