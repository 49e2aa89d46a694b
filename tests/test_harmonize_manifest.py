"""The export manifest fixes a build's data cut, so rebuilding on another day changes nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from clinnova_explore.harmonize import HarmonizeError, harmonize_site
from clinnova_explore.harmonize.manifest import MANIFEST, export_date, write_manifest
from clinnova_explore.harmonize.spec import load_site_specs
from clinnova_explore.pipeline import BuildResult


def test_export_date_from_manifest_or_today(tmp_path: Path) -> None:
    assert export_date(tmp_path) == dt.date.today()
    write_manifest(tmp_path, "basel", dt.date(2024, 3, 1), {"a.tsv": 3})
    assert export_date(tmp_path) == dt.date(2024, 3, 1)
    (tmp_path / MANIFEST).write_text('{"export_date": "01.03.2024"}', encoding="utf-8")
    with pytest.raises(HarmonizeError, match=r"field `export_date` must be an ISO date"):
        export_date(tmp_path)
    (tmp_path / MANIFEST).write_text("{", encoding="utf-8")
    with pytest.raises(HarmonizeError, match="not a JSON manifest"):
        export_date(tmp_path)


def test_earlier_export_date_cuts_observation_periods(
    small_build: BuildResult, tmp_path: Path
) -> None:
    raw = small_build.out_dir / "raw" / "basel"
    copy = tmp_path / "basel"
    copy.mkdir()
    for f in raw.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    cut = dt.date(2020, 1, 1)
    write_manifest(copy, "basel", cut, {})
    db = tmp_path / "basel.duckdb"
    harmonize_site(load_site_specs()["basel"], copy, db)
    with duckdb.connect(str(db), read_only=True) as con:
        ((release,),) = con.sql("select source_release_date from cdm_source").fetchall()
        ((latest,),) = con.sql(
            "select max(observation_period_end_date) from observation_period"
        ).fetchall()
    assert release == cut
    assert latest <= cut
    with duckdb.connect(str(small_build.out_dir / "cdm" / "basel.duckdb"), read_only=True) as con:
        ((full_latest,),) = con.sql(
            "select max(observation_period_end_date) from observation_period"
        ).fetchall()
    assert full_latest > cut
