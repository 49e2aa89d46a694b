"""Catalog and backend adapter: loading, validation errors, lazy tables."""

from __future__ import annotations

from pathlib import Path

import ibis
import pandas as pd
import pytest

from clinnova_explore.backends import BackendError
from clinnova_explore.catalog import Catalog, CatalogError, default_catalog_path
from clinnova_explore.cdm.schema import create_cdm_tables


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "data_catalog.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def _site_db(path: Path, persons: int) -> None:
    con = ibis.duckdb.connect(str(path))
    create_cdm_tables(con)
    con.insert(
        "person",
        pd.DataFrame(
            {
                "person_id": range(1, persons + 1),
                "gender_concept_id": [8532] * persons,
                "year_of_birth": [1980] * persons,
                "race_concept_id": [0] * persons,
                "ethnicity_concept_id": [0] * persons,
            }
        ),
    )
    con.disconnect()


def test_load_resolves_relative_locations_and_returns_lazy_tables(tmp_path: Path) -> None:
    (tmp_path / "cdm").mkdir()
    _site_db(tmp_path / "cdm" / "a.duckdb", 7)
    _site_db(tmp_path / "cdm" / "b.duckdb", 3)
    p = _write(
        tmp_path,
        """
name: test
sites:
  - {id: a, name: Site A, country: LU, location: cdm/a.duckdb,
     policy: {min_cell_count: 3}}
  - {id: b, name: Site B, country: DE, region: Saarland, location: cdm/b.duckdb}
""",
    )
    cat = Catalog.load(p)
    assert cat.site_ids == ["a", "b"]
    assert cat.site("a").policy.min_cell_count == 3
    assert cat.site("b").policy.min_cell_count == 5  # the default policy
    t = cat.site("a").table("person")
    assert isinstance(t, ibis.Table)
    assert t.count().execute() == 7
    assert cat.site("b").table("PERSON").count().execute() == 3
    with pytest.raises(CatalogError, match="site 'a': table 'persons' not found"):
        cat.site("a").table("persons")
    cat.close()
    assert len(cat) == 2 and [s.id for s in cat] == ["a", "b"]


def test_round_trip_to_yaml(tmp_path: Path) -> None:
    p = _write(tmp_path, "sites:\n  - {id: a, name: A, country: FR, location: x.duckdb}\n")
    cat = Catalog.load(p)
    again = Catalog.load(_write(tmp_path, cat.to_yaml()))
    assert again.sites[0].model_dump() == cat.sites[0].model_dump()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sites: []\n", "`sites` must be a non-empty list"),
        ("sites:\n  - {id: A!, name: x, country: LU, location: a}\n", "field `sites.0.id`"),
        ("sites:\n  - {id: a, name: x, country: LU, backend: oracle}\n", "field `sites.0.backend`"),
        ("sites:\n  - {id: a, name: x, country: LU, cdm_version: '6.0'}\n", "cdm_version"),
        (
            "sites:\n  - {id: a, name: x, country: LU, policy: {min_cell_count: 0}}\n",
            "sites.0.policy.min_cell_count",
        ),
        (
            "sites:\n  - {id: a, name: x, country: LU}\n  - {id: a, name: y, country: DE}\n",
            "duplicate site ids ['a']",
        ),
        ("sites: [\n", "not valid YAML"),
        (
            "sites:\n  - {id: a, name: x, country: LU, backend: postgres, "
            "location: 'postgresql://u:secret@h/db'}\n",
            "needs `location_env`",
        ),
    ],
)
def test_invalid_catalogs_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    p = _write(tmp_path, text)
    with pytest.raises(CatalogError) as err:
        Catalog.load(p)
    assert message in str(err.value)
    assert str(p) in str(err.value)


def test_missing_catalog_and_missing_database_explain_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="not found; run `make demo`"):
        Catalog.load(tmp_path / "nope.yaml")
    cat = Catalog.load(
        _write(tmp_path, "sites:\n  - {id: a, name: A, country: LU, location: missing.duckdb}\n")
    )
    with pytest.raises(BackendError, match=r"site .a.: DuckDB file .*missing.duckdb does not"):
        cat.site("a").table("person")
    with pytest.raises(KeyError, match="known: a"):
        cat.site("zz")


def test_postgres_location_comes_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cat = Catalog.load(
        _write(
            tmp_path,
            "sites:\n  - {id: pg, name: P, country: CH, "
            "backend: postgres, location_env: CLX_TEST_PG_URL}\n",
        )
    )
    monkeypatch.delenv("CLX_TEST_PG_URL", raising=False)
    with pytest.raises(BackendError, match="CLX_TEST_PG_URL is not set"):
        cat.site("pg").resolved_location()
    monkeypatch.setenv("CLX_TEST_PG_URL", "postgresql://u@127.0.0.1:1/db")
    assert cat.site("pg").resolved_location() == "postgresql://u@127.0.0.1:1/db"
    assert "CLX_TEST_PG_URL" in cat.to_yaml()
    assert "127.0.0.1" not in cat.to_yaml()


def test_default_catalog_path_honours_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLINNOVA_CATALOG", str(tmp_path / "c.yaml"))
    assert default_catalog_path() == tmp_path / "c.yaml"
    monkeypatch.delenv("CLINNOVA_CATALOG")
    assert default_catalog_path().name == "data_catalog.yaml"
