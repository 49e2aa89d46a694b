"""Nothing lost, nothing doubled: stray quotes, physical lines, the manifest, duplicated rows."""

from __future__ import annotations

import datetime as dt
import inspect
from pathlib import Path

import duckdb
import pytest
from test_harmonize_fixtures import strasbourg

from clinnova_explore.harmonize import (
    HarmonizeError,
    harmonize_site,
    read_quarantine,
    read_reconciliation,
)
from clinnova_explore.harmonize.build import AUX_TABLES
from clinnova_explore.harmonize.load import load_cdm
from clinnova_explore.harmonize.manifest import write_manifest
from clinnova_explore.harmonize.reconcile import check_provenance, reconcile
from clinnova_explore.harmonize.spec import LOGICAL_FIELDS, load_site_specs

SPEC = load_site_specs()["strasbourg"]
STRAY = [
    'P1;S1;G35;"Sclérose;01/02/2020',  # line 9: opens a quote it never closes
    "P2;S2;K500;Crohn;05/03/2020",  # line 10
    "P1;S1;G35;SEP;06/02/2020",  # line 11
]


def _rows(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_stray_quote_loses_no_following_row(tmp_path: Path) -> None:
    raw = strasbourg(tmp_path / "raw")
    diag = raw / "diagnostics.csv"
    before = diag.read_bytes()
    first = len(before.splitlines()) + 1
    diag.write_bytes(before + ("\n".join(STRAY) + "\n").encode("latin-1"))
    db = tmp_path / "s.duckdb"
    harmonize_site(SPEC, raw, db)
    q = read_quarantine(db)
    stray = q[(q.source_file == "diagnostics.csv") & (q.source_line == first)]
    assert stray.reason.tolist() == ["malformed_line"]
    column = STRAY[0].index('"') + 1
    assert stray.detail.iloc[0].startswith(
        f"an unterminated quote starts at line {first}, column {column}:"
    )
    assert stray.raw.tolist() == [STRAY[0]]
    loaded = _rows(
        db,
        "SELECT p.source_line, c.condition_source_value, c.condition_start_date "
        "FROM source_provenance p JOIN condition_occurrence c "
        "ON p.cdm_table = 'condition_occurrence' "
        "AND c.condition_occurrence_id = p.record_id "
        f"WHERE p.source_line > {first} ORDER BY 1",
    )
    assert loaded == [
        (first + 1, "K500", dt.date(2020, 3, 5)),
        (first + 2, "G35", dt.date(2020, 2, 6)),
    ]
    rec = read_reconciliation(db).set_index("source_file").loc["diagnostics.csv"]
    lines = len(diag.read_bytes().splitlines()) - 1
    assert rec.physical_lines == lines == rec.rows_in
    assert rec.loaded_lines + rec.quarantined_lines == lines
    assert rec.rows_in == rec.loaded + rec.quarantined


def _manifest(raw: Path) -> None:
    files = {p.name: len(p.read_bytes().splitlines()) for p in raw.iterdir()}
    write_manifest(raw, "strasbourg", dt.date(2024, 1, 1), files)


def test_file_not_matching_the_manifest_is_refused(tmp_path: Path) -> None:
    raw = strasbourg(tmp_path / "raw")
    _manifest(raw)
    harmonize_site(SPEC, raw, tmp_path / "ok.duckdb")  # the complete export builds
    labs = raw / "biologie.csv"
    lines = labs.read_bytes().splitlines(keepends=True)
    labs.write_bytes(b"".join(lines[:-1]))  # the export lost its last line
    n = len(lines)
    with pytest.raises(
        HarmonizeError,
        match=(
            rf"biologie\.csv: the file has {n - 1} physical lines but the export manifest "
            rf"\(manifest\.json\) declares {n}; the file was truncated or altered"
        ),
    ):
        harmonize_site(SPEC, raw, tmp_path / "bad.duckdb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.duckdb", "raw"]


def test_duplicated_rows_are_detected(tmp_path: Path) -> None:
    raw = strasbourg(tmp_path / "raw")
    db = tmp_path / "s.duckdb"
    harmonize_site(SPEC, raw, db)
    with duckdb.connect(str(db)) as con:
        # person and death share a patient line: documented, not a duplicate
        assert (
            con.execute(
                "SELECT count(*) FROM source_provenance WHERE cdm_table = 'death'"
            ).fetchone()[0]
            == 1
        )
        check_provenance(con, "strasbourg")
        (line,) = con.execute(
            "SELECT min(source_line) FROM source_provenance "
            "WHERE cdm_table = 'condition_occurrence'"
        ).fetchone()
        con.execute(
            "INSERT INTO source_provenance VALUES "
            f"('condition_occurrence', 99, 'diagnostics.csv', {line})"
        )
        with pytest.raises(
            HarmonizeError,
            match=(
                rf"site strasbourg: 1 source line\(s\) produced more than one CDM row: "
                rf"diagnostics\.csv line {line}: 2 rows \(condition_occurrence \d+, "
                r"condition_occurrence 99\)"
            ),
        ):
            check_provenance(con, "strasbourg")


def _staged(con: duckdb.DuckDBPyConnection) -> None:
    for kind in LOGICAL_FIELDS:
        con.execute(
            f"CREATE TABLE stg_{kind} (source_table VARCHAR, source_file VARCHAR, "
            "_line BIGINT, _nl INTEGER, reason VARCHAR)"
        )
    # line 2 loaded; lines 3-4 one quoted record, quarantined
    con.execute(
        "INSERT INTO stg_diagnoses VALUES ('diagnoses', 'd.csv', 2, 1, NULL), "
        "('diagnoses', 'd.csv', 3, 2, 'malformed_line')"
    )
    con.execute(f"CREATE TABLE source_provenance ({AUX_TABLES['source_provenance']})")
    con.execute("INSERT INTO source_provenance VALUES ('condition_occurrence', 1, 'd.csv', 2)")
    con.execute(
        "CREATE TABLE evt_final (source_table VARCHAR, source_file VARCHAR, "
        "visit_id VARCHAR, visit_occurrence_id BIGINT)"
    )
    con.execute(f"CREATE TABLE reconciliation ({AUX_TABLES['reconciliation']})")


def test_reconciliation_accounts_for_every_physical_line(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "r.duckdb")) as con:
        _staged(con)
        reconcile(con, "x", {"d.csv": ("diagnoses", 2, 3)})
        assert con.execute(
            "SELECT rows_in, loaded, quarantined, physical_lines, loaded_lines, "
            "quarantined_lines FROM reconciliation"
        ).fetchall() == [(2, 1, 1, 3, 1, 2)]
        con.execute("DELETE FROM reconciliation")
        with pytest.raises(
            HarmonizeError,
            match=(
                r"site x: reconciliation failed for d\.csv: the file has 4 physical lines "
                r"after the header, but loaded records span 1 and quarantined ones 2"
            ),
        ):
            reconcile(con, "x", {"d.csv": ("diagnoses", 2, 4)})


def test_load_cdm_takes_only_what_it_uses() -> None:
    assert list(inspect.signature(load_cdm).parameters) == ["con", "units"]
