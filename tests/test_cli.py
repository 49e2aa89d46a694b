"""The `clinnova-explore` command line on a real build."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinnova_explore.cli import app
from clinnova_explore.pipeline import BuildResult

runner = CliRunner()


@pytest.mark.parametrize("command", ["build", "sites", "quality", "reconcile", "serve"])
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
    out = runner.invoke(app, ["sites", "--catalog", str(tmp_path / "none.yaml")],
                        env={"COLUMNS": "200"})
    assert out.exit_code == 2
    assert "not found" in out.output and "make demo" in out.output
