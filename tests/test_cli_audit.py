"""`clinnova-explore audit verify|show` and `site serve` on a real catalog and audit log."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from clinnova_explore.analysis.payload import Payload
from clinnova_explore.catalog import Catalog, DisclosurePolicy
from clinnova_explore.cli import app
from clinnova_explore.federated.audit import AuditLog
from clinnova_explore.pipeline import BuildResult
from tests.characterize_reference import catalog_copy

runner = CliRunner()
ENV = {"COLUMNS": "200"}

CATALOG = """\
name: audit-test
sites:
  - id: basel
    name: Universitätsspital Basel
    country: CH
    location: cdm/basel.duckdb
    policy: {min_cell_count: 3}
  - id: homburg
    name: Universitätsklinikum des Saarlandes
    country: DE
    location: cdm/homburg.duckdb
    audit: logs/homburg-audit.jsonl
"""


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "data_catalog.yaml"
    path.write_text(CATALOG, encoding="utf-8")
    return path


def _fill(catalog: Path, site: str = "basel") -> AuditLog:
    """Four entries: releases of 3, 4, 5 time bins by ana1..ana3, then a refusal for ana4."""
    entry = Catalog.load(catalog).site(site)
    log = AuditLog(entry.audit_path(), site=site)
    for i in (1, 2, 3):
        table = pd.DataFrame({"time": range(i + 2), "n_events": [5] * (i + 2)})
        payload = Payload(site=site, analysis="survival", tables={"events": table}, values={"n": 9})
        log.append(
            requester=f"ana{i}",
            analysis="survival",
            parameters={"i": i},
            policy=entry.policy,
            payload=payload,
            kind="preview" if i == 2 else "release",
        )
    log.append(
        requester="ana4", analysis="cox", parameters={}, policy=entry.policy, refused="min_cell"
    )
    return log


def test_catalog_places_the_audit_log(catalog: Path) -> None:
    cat = Catalog.load(catalog)
    assert cat.site("basel").audit_path() == catalog.parent / "audit" / "basel.jsonl"
    assert cat.site("homburg").audit_path() == catalog.parent / "logs" / "homburg-audit.jsonl"
    # a written catalog keeps the setting as given
    assert "audit: logs/homburg-audit.jsonl" in cat.to_yaml()
    assert cat.to_yaml().count("audit:") == 1


def test_verify_reports_entries_and_head(catalog: Path) -> None:
    log = _fill(catalog)
    out = runner.invoke(app, ["audit", "verify", "basel", "--catalog", str(catalog)], env=ENV)
    assert out.exit_code == 0, out.output
    assert f"OK basel: 4 entries, head {log.verify().head}" in out.output
    # an empty log is a valid (empty) chain
    empty = runner.invoke(app, ["audit", "verify", "homburg", "-c", str(catalog)], env=ENV)
    assert empty.exit_code == 0, empty.output
    assert "OK homburg: 0 entries" in empty.output and "no entries yet" in empty.output


def test_verify_names_the_tampered_line(catalog: Path) -> None:
    log = _fill(catalog)
    lines = log.path.read_text(encoding="utf-8").splitlines(keepends=True)
    # someone shrinks what the third entry says was released: 5 time bins -> 4
    assert '"events": [5, 2]' in lines[2]
    lines[2] = lines[2].replace('"events": [5, 2]', '"events": [4, 2]')
    log.path.write_text("".join(lines), encoding="utf-8")
    out = runner.invoke(app, ["audit", "verify", "basel", "--catalog", str(catalog)], env=ENV)
    assert out.exit_code == 1, out.output
    assert "TAMPERED basel: line 3 (entry seq 3)" in out.output
    assert "edited" in out.output and str(log.path) in out.output


def test_show_lists_the_last_entries(catalog: Path) -> None:
    _fill(catalog)
    out = runner.invoke(
        app, ["audit", "show", "basel", "--catalog", str(catalog), "--last", "2"], env=ENV
    )
    assert out.exit_code == 0, out.output
    rows = {m.group(1): m.group(0) for m in re.finditer(r"│\s*(\d+)\s*│.*", out.output)}
    assert sorted(rows) == ["3", "4"]
    assert "ana3" in rows["3"] and "release" in rows["3"] and "events 5x2; values: n" in rows["3"]
    assert "ana4" in rows["4"] and "refused: min_cell" in rows["4"]
    assert "ana1" not in out.output and "ana2" not in out.output
    everything = runner.invoke(app, ["audit", "show", "basel", "-c", str(catalog), "-n", "0"])
    assert all(f"ana{i}" in everything.output for i in (1, 2, 3, 4))
    assert "preview" in everything.output


def test_show_json_is_the_stored_entries(catalog: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _fill(catalog)
    # the default catalog follows $CLINNOVA_CATALOG, as for every other command
    out = runner.invoke(
        app, ["audit", "show", "basel", "--json"], env={"CLINNOVA_CATALOG": str(catalog)}
    )
    assert out.exit_code == 0, out.output
    entries = json.loads(out.output)
    assert entries == log.tail(20) == log.entries()
    assert [e["kind"] for e in entries] == ["release", "preview", "release", "release"]
    two = json.loads(
        runner.invoke(
            app, ["audit", "show", "basel", "-c", str(catalog), "--last", "1", "--json"]
        ).output
    )
    assert [e["seq"] for e in two] == [4]


def test_unknown_site_and_unreadable_log_are_clear_errors(catalog: Path) -> None:
    out = runner.invoke(app, ["audit", "verify", "zurich", "-c", str(catalog)], env=ENV)
    assert out.exit_code == 2
    assert "no site 'zurich'" in out.output and "basel, homburg" in out.output
    log = _fill(catalog)
    with log.path.open("a", encoding="utf-8") as fh:
        fh.write("{oops\n")
    shown = runner.invoke(app, ["audit", "show", "basel", "-c", str(catalog), "-n", "0"], env=ENV)
    assert shown.exit_code == 2 and "basel.jsonl:5: not a JSON entry" in shown.output
    check = runner.invoke(app, ["audit", "verify", "basel", "-c", str(catalog)], env=ENV)
    assert check.exit_code == 1 and "line 5 (entry seq 5) not valid JSON" in check.output


def test_site_serve_needs_the_shared_key(catalog: Path) -> None:
    out = runner.invoke(
        app,
        ["site", "serve", "--catalog", str(catalog), "--site", "basel"],
        env={**ENV, "CLINNOVA_SITE_KEY": ""},
    )
    assert out.exit_code == 2
    assert "CLINNOVA_SITE_KEY" in out.output and "'basel'" in out.output


@pytest.mark.parametrize("command", [["audit", "verify"], ["audit", "show"], ["site", "serve"]])
def test_commands_have_help_with_examples(command: list[str]) -> None:
    out = runner.invoke(app, [*command, "--help"], env=ENV)
    assert out.exit_code == 0, out.output
    assert "Examples" in out.output and f"clinnova-explore {' '.join(command)}" in out.output


def test_entries_record_the_site_policy_version(catalog: Path) -> None:
    from clinnova_explore.federated.audit import policy_version

    log = _fill(catalog)
    assert {e["policy"] for e in log.entries()} == {
        policy_version(DisclosurePolicy(min_cell_count=3))
    }


def _listening(proc: subprocess.Popen[str], seconds: float = 90.0) -> tuple[str, int]:
    """The address a `site serve` process prints once it listens."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], seconds)
    line = proc.stdout.readline() if ready else ""
    found = re.search(r"listening on ([\d.]+):(\d+)", line)
    assert found, f"no address from `site serve`: {line!r} {proc.poll()}"
    return found.group(1), int(found.group(2))


def test_a_served_site_answers_and_its_audit_log_shows_it(
    small_build: BuildResult, tmp_path: Path
) -> None:
    """`site serve` in its own process answers a coordinator holding the key; what it released
    is in its audit log, which `audit verify` and `audit show` read."""
    from clinnova_explore.analysis.counts import count_cohort
    from clinnova_explore.cohort import builtin_definition
    from clinnova_explore.federated.process_runner import ProcessRunner

    path = catalog_copy(small_build, tmp_path, {}, sites=["basel"])
    key = "not-a-real-secret"
    command = [sys.executable, "-m", "clinnova_explore.cli", "site", "serve"]
    with subprocess.Popen(
        [*command, "--catalog", str(path), "--site", "basel"],
        env={**os.environ, "CLINNOVA_SITE_KEY": key, "COLUMNS": "400"},
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            address = _listening(proc)
            with ProcessRunner.connect({"basel": address}, key.encode(), requester="dpo") as site:
                counted = count_cohort(
                    builtin_definition("ms_diagnosis"), Catalog.load(path), runner=site
                )
        finally:
            proc.terminate()
    persons = counted.summary.set_index("site").loc["basel", "persons"]
    check = runner.invoke(app, ["audit", "verify", "basel", "-c", str(path)], env=ENV)
    assert check.exit_code == 0 and "OK basel: 1 entries" in check.output, check.output
    shown = json.loads(
        runner.invoke(app, ["audit", "show", "basel", "-c", str(path), "--json"]).output
    )
    assert [(e["requester"], e["analysis"], e["kind"]) for e in shown] == [
        ("dpo", "cohort", "release")
    ]
    assert shown[0]["released"]["shapes"]["counts"][0] == 1 and persons >= 10
