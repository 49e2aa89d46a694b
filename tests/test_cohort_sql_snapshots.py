"""Snapshot tests of the compiled cohort SQL: a compiler change shows up as a readable diff.

The SQL of four shipped definitions (DuckDB, plus one in the PostgreSQL dialect) is stored in
``tests/snapshots/cohort/``. After an intended change, review the diff and rewrite the files with
``UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_cohort_sql_snapshots.py``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from clinnova_explore.catalog import Catalog, Site
from clinnova_explore.cohort import builtin_definition, compile_cohort
from tests.cohort_tiny import empty_cdm

SNAPSHOTS = Path(__file__).parent / "snapshots" / "cohort"
CASES = [
    ("ms_high_efficacy_start", "duckdb"),
    ("ms_platform_start", "duckdb"),
    ("ibd_hospitalization", "duckdb"),
    ("ms_relapse", "duckdb"),
    ("ms_platform_start", "postgres"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A catalog site on an empty CDM: the SQL must not depend on the data."""
    folder = tmp_path_factory.mktemp("snap")
    empty_cdm(folder / "site.duckdb")
    (folder / "catalog.yaml").write_text(
        "sites:\n  - {id: snap, name: Snapshot, country: LU, location: site.duckdb}\n",
        encoding="utf-8",
    )
    catalog = Catalog.load(folder / "catalog.yaml")
    yield catalog.site("snap")
    catalog.close()


@pytest.mark.parametrize(("name", "dialect"), CASES)
def test_compiled_sql_matches_snapshot(site: Site, name: str, dialect: str) -> None:
    sql = compile_cohort(builtin_definition(name), site).to_sql(dialect).rstrip() + "\n"
    path = SNAPSHOTS / f"{name}.{dialect}.sql"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sql, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}; run with UPDATE_SNAPSHOTS=1 to create it"
    stored = path.read_text(encoding="utf-8")
    if sql != stored:
        diff = "".join(
            difflib.unified_diff(
                stored.splitlines(keepends=True),
                sql.splitlines(keepends=True),
                fromfile=f"{path.name} (stored)",
                tofile=f"{path.name} (compiled now)",
            )
        )
        pytest.fail(
            f"compiled SQL of {name} ({dialect}) differs from its snapshot; if the change is "
            f"intended, rerun with UPDATE_SNAPSHOTS=1\n{diff}"
        )


def test_snapshots_are_valid_sql_that_runs(site: Site) -> None:
    """The stored DuckDB SQL runs as it is (on the empty CDM, giving no rows)."""
    con = duckdb.connect(site.resolved_location(), read_only=True)
    try:
        for name, dialect in CASES:
            if dialect == "duckdb":
                sql = (SNAPSHOTS / f"{name}.{dialect}.sql").read_text(encoding="utf-8")
                assert con.execute(sql).fetchall() == [], name
    finally:
        con.close()


def test_no_stale_snapshots() -> None:
    expected = {f"{name}.{dialect}.sql" for name, dialect in CASES}
    assert {p.name for p in SNAPSHOTS.glob("*.sql")} == expected
