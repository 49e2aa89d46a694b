"""End to end: every fault the generator injects for quarantine is quarantined exactly there."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinnova_explore.harmonize import harmonize_all, read_quarantine, read_reconciliation
from clinnova_explore.harmonize.spec import load_site_specs
from clinnova_explore.synth.generate import generate


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Path]:
    out = tmp_path_factory.mktemp("synth")
    truth = generate(out, persons=600, seed=11)
    reports = harmonize_all(out / "raw", out / "cdm")
    return truth, reports, out


def test_quarantine_matches_truth_exactly(federation: tuple[dict, dict, Path]) -> None:
    truth, reports, _ = federation
    expected = {
        (f["site"], Path(f["file"]).name, f["line"], f["catcher"].split(":", 1)[1])
        for f in truth["faults"]
        if f["catcher"].startswith("quarantine:")
    }
    got = set()
    for site, report in reports.items():
        q = read_quarantine(report.db_path)
        got |= set(zip([site] * len(q), q.source_file, q.source_line, q.reason, strict=True))
    assert expected, "the generator injected no quarantine faults"
    assert got == expected


def test_every_file_reconciles(federation: tuple[dict, dict, Path]) -> None:
    _, reports, out = federation
    assert sorted(reports) == sorted(p.stem for p in (out / "cdm").glob("*.duckdb"))
    for report in reports.values():
        rec = read_reconciliation(report.db_path)
        assert (rec.rows_in == rec.loaded + rec.quarantined).all()
        spec = load_site_specs()[report.site]
        files = (
            spec.files.values()
            if hasattr(spec, "files")
            else [t.file for t in spec.tables.values()]
        )
        assert sorted(rec.source_file) == sorted(files)
        assert rec.rows_in.min() > 0
