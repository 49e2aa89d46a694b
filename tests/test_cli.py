"""The `clinnova-explore` command line on a real build."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinnova_explore.cli import app
from clinnova_explore.pipeline import BuildResult

runner = CliRunner()


@pytest.mark.parametrize(
    "command", ["build", "harmonize", "sites", "quality", "reconcile", "serve"]
)
def test_every_command_has_help_with_examples(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Examples" in result.output or "Example" in result.output
    assert f"clinnova-explore {command}" in result.output


def test_sites_reconcile_and_quality_on_a_build(small_build: BuildResult) -> None:
    cat = str(small_build.catalog_path)
    env = {"COLUMNS": "200"}
    out = runner.invoke(app, ["sites", "--catalog", cat], env=env)
    assert out.exit_code == 0
    for site in small_build.truth["sites"]:
        assert site in out.output
    rec = runner.invoke(app, ["reconcile", "--catalog", cat, "--detail"], env=env)
    assert rec.exit_code == 0, rec.output
    assert "labor.csv" in rec.output and "Observation" in rec.output
    q = runner.invoke(app, ["quality", "--catalog", cat, "--site", "basel", "--failing"], env=env)
    assert q.exit_code == 0, q.output
    assert "basel" in q.output and "strasbourg" not in q.output


def test_missing_catalog_is_a_clear_error(tmp_path: Path) -> None:
    out = runner.invoke(
        app, ["sites", "--catalog", str(tmp_path / "none.yaml")], env={"COLUMNS": "200"}
    )
    assert out.exit_code == 2
    assert "not found" in out.output and "make demo" in out.output


def test_build_command_writes_the_documented_layout(tmp_path: Path) -> None:
    out = tmp_path / "fed"
    result = runner.invoke(
        app,
        ["build", "--persons", "120", "--seed", "3", "--out", str(out), "--no-quality"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "built 120 persons" in result.output and "harmonize" in result.output
    assert (out / "truth.json").is_file() and (out / "data_catalog.yaml").is_file()
    for site in ("luxembourg", "strasbourg", "basel", "freiburg", "homburg"):
        assert (out / "cdm" / f"{site}.duckdb").is_file()
        assert any((out / "raw" / site).iterdir())
    again = runner.invoke(
        app,
        ["harmonize", "--raw", str(out / "raw"), "--out", str(tmp_path / "cdm2"), "-s", "basel"],
        env={"COLUMNS": "200"},
    )
    assert again.exit_code == 0, again.output
    assert (tmp_path / "cdm2" / "basel.duckdb").is_file()
    # a damaged export is reported in one line naming the file, not as a traceback
    (out / "raw" / "basel" / "labor.tsv").write_text("not\tthe\theader\n", encoding="utf-8")
    broken = runner.invoke(
        app,
        ["harmonize", "--raw", str(out / "raw"), "--out", str(tmp_path / "cdm3"), "-s", "basel"],
        env={"COLUMNS": "200"},
    )
    assert broken.exit_code == 2, broken.output
    assert "error:" in broken.output and "labor.tsv" in broken.output
    assert "Traceback" not in broken.output
    unknown = runner.invoke(
        app,
        ["quality", "--catalog", str(out / "data_catalog.yaml"), "-s", "nowhere"],
        env={"COLUMNS": "200"},
    )
    assert unknown.exit_code == 2 and "no site 'nowhere'" in unknown.output
