"""Harmonization of hand-written native exports: exact CDM values, quarantine, reconciliation."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest
from test_harmonize_fixtures import freiburg, luxembourg, strasbourg, write

from clinnova_explore.cdm import concepts as C
from clinnova_explore.cdm import units as U
from clinnova_explore.cdm.schema import SCHEMAS
from clinnova_explore.harmonize import (
    HarmonizeError,
    fhir,
    harmonize_site,
    read_quarantine,
    read_reconciliation,
)
from clinnova_explore.harmonize.spec import load_site_specs

SPECS = load_site_specs()


def _build(tmp_path: Path, site: str) -> Path:
    maker = {"strasbourg": strasbourg, "freiburg": freiburg, "luxembourg": luxembourg}[site]
    raw = maker(tmp_path / "raw")
    db = tmp_path / "cdm" / f"{site}.duckdb"
    harmonize_site(SPECS[site], raw, db)
    return db


def _rows(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def stras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("stras"), "strasbourg")


def test_all_cdm_and_harmonization_tables_exist(stras: Path) -> None:
    tables = {r[0] for r in _rows(stras, "SELECT table_name FROM information_schema.tables")}
    assert (
        set(SCHEMAS) | {"source_provenance", "quarantine", "reconciliation", "mapping_coverage"}
        <= tables
    )
    assert not any(t.startswith(("raw_", "stg_")) for t in tables)
    src = _rows(
        stras, "SELECT cdm_source_abbreviation, cdm_version, vocabulary_version FROM cdm_source"
    )
    assert src[0][:2] == ("strasbourg", "5.4") and src[0][2]
    assert _rows(stras, "SELECT count(*) FROM concept")[0][0] > 100


def test_strasbourg_quarantine_reasons_at_exact_lines(stras: Path) -> None:
    q = read_quarantine(stras)
    got = set(zip(q.source_file, q.source_line, q.reason, strict=True))
    assert got == {
        ("patients.csv", 4, "invalid_date"),
        ("patients.csv", 5, "unknown_value"),
        ("sejours.csv", 4, "unknown_person"),
        ("sejours.csv", 5, "unknown_value"),
        ("diagnostics.csv", 4, "duplicate"),
        ("diagnostics.csv", 6, "malformed_line"),
        ("diagnostics.csv", 7, "person_quarantined"),
        ("biologie.csv", 4, "invalid_number"),
        ("biologie.csv", 5, "invalid_date"),
        ("evenements.csv", 3, "missing_required"),
    }
    detail = dict(zip(zip(q.source_file, q.source_line, strict=True), q.detail, strict=True))
    assert "expected 5 fields, found 6, at line 6" in detail[("diagnostics.csv", 6)]
    assert "line 3" in detail[("diagnostics.csv", 4)]
    assert "date_naissance" in detail[("patients.csv", 4)]
    assert "32/01/1990" in detail[("patients.csv", 4)] and "%d/%m/%Y" in detail[("patients.csv", 4)]
    assert "resultat" in detail[("biologie.csv", 4)] and "abc" in detail[("biologie.csv", 4)]
    assert set(q.site) == {"strasbourg"}
    assert q.raw[q.source_line == 6].tolist() == ["P1;S1;G35;trop;de;champs"]


def test_reconciliation_balances_every_file(stras: Path) -> None:
    rec = read_reconciliation(stras)
    assert len(rec) == 7
    assert (rec.rows_in == rec.loaded + rec.quarantined).all()
    by_file = rec.set_index("source_file")
    assert by_file.loc["diagnostics.csv", ["rows_in", "loaded", "quarantined"]].tolist() == [
        7,
        4,
        3,
    ]
    assert by_file.loc["diagnostics.csv", "visit_unresolved"] == 1
    prov = _rows(
        stras, "SELECT count(*), count(DISTINCT (cdm_table, record_id)) FROM source_provenance"
    )
    assert prov[0][0] == prov[0][1]
    # every physical line after the header belongs to a loaded or a quarantined record
    raw = stras.parent.parent / "raw" / "strasbourg"
    for r in rec.itertuples():
        lines = len((raw / r.source_file).read_bytes().splitlines()) - 1
        assert (r.physical_lines, r.loaded_lines + r.quarantined_lines) == (lines, lines)
    # one record (diagnostics line 8, a quoted field) per line here: lines = records
    assert (rec.physical_lines == rec.rows_in).all()


def test_strasbourg_person_visit_and_observation_period(stras: Path) -> None:
    persons = _rows(
        stras,
        "SELECT person_id, person_source_value, gender_concept_id, "
        "year_of_birth, month_of_birth, day_of_birth FROM person ORDER BY 1",
    )
    assert persons == [(1, "P1", C.MALE, 1980, 3, 15), (2, "P2", C.FEMALE, 1990, 1, 1)]
    visits = _rows(
        stras,
        "SELECT visit_occurrence_id, person_id, visit_concept_id, "
        "visit_start_date, visit_end_date, visit_type_concept_id "
        "FROM visit_occurrence ORDER BY 1",
    )
    assert visits == [
        (1, 1, C.INPATIENT_VISIT, dt.date(2020, 2, 1), dt.date(2020, 2, 5), C.EHR),
        (2, 2, C.OUTPATIENT_VISIT, dt.date(2020, 3, 3), dt.date(2020, 3, 3), C.EHR),
        (3, 1, C.ER_VISIT, dt.date(2019, 6, 1), dt.date(2019, 6, 1), C.EHR),
    ]
    # death in 2030 is in the future: it does not extend the period
    periods = _rows(
        stras,
        "SELECT person_id, observation_period_start_date, "
        "observation_period_end_date FROM observation_period ORDER BY 1",
    )
    assert periods == [
        (1, dt.date(2019, 6, 1), dt.date(2020, 2, 5)),
        (2, dt.date(2020, 3, 3), dt.date(2020, 3, 3)),
    ]
    assert _rows(stras, "SELECT person_id, death_date FROM death") == [(2, dt.date(2030, 10, 10))]


def test_strasbourg_undotted_codes_and_unmapped(stras: Path) -> None:
    cond = _rows(
        stras,
        "SELECT condition_source_value, condition_concept_id, "
        "condition_source_concept_id > 0, visit_occurrence_id, "
        "condition_start_date FROM condition_occurrence ORDER BY 1, 5",
    )
    assert cond == [
        ("G35", C.MULTIPLE_SCLEROSIS, True, 1, dt.date(2020, 2, 1)),
        ("K500", C.CROHNS_DISEASE, True, 2, dt.date(2020, 3, 3)),
        ("K501", C.CROHNS_DISEASE, True, 2, dt.date(2020, 3, 4)),  # quoted field with ';'
        ("ZZZ9", 0, False, None, dt.date(2020, 2, 1)),  # unmapped, unknown visit
    ]
    cov = _rows(
        stras,
        "SELECT rows, mapped_rows, unmapped_source_codes FROM mapping_coverage "
        "WHERE cdm_table = 'condition_occurrence'",
    )
    assert cov == [(4, 3, "ZZZ9")]


def test_strasbourg_measurements_decimal_comma_and_units(stras: Path) -> None:
    meas = _rows(
        stras,
        "SELECT measurement_concept_id, value_as_number, unit_concept_id, "
        "unit_source_value, value_source_value, visit_occurrence_id "
        "FROM measurement ORDER BY measurement_id",
    )
    assert meas == [
        (C.CRP, 12.5, U.UCUM["mg/L"], "mg/l", "12,5", 1),
        (C.HEMOGLOBIN, pytest.approx(13.5), U.UCUM["g/dL"], "g/l", "135", 1),  # g/L -> g/dL
        (C.EDSS, 3.5, U.UCUM["{score}"], "score", "3,5", None),
    ]


def test_strasbourg_drug_end_before_start_kept(stras: Path) -> None:
    drugs = _rows(
        stras,
        "SELECT drug_concept_id, drug_exposure_start_date, "
        "drug_exposure_end_date, verbatim_end_date FROM drug_exposure "
        "ORDER BY drug_exposure_id",
    )
    assert drugs == [
        (C.NATALIZUMAB, dt.date(2020, 2, 1), dt.date(2020, 1, 1), dt.date(2020, 1, 1)),
        (C.MESALAMINE, dt.date(2020, 3, 3), dt.date(2020, 3, 3), None),
    ]
    obs = _rows(stras, "SELECT observation_concept_id, observation_date FROM observation")
    assert obs == [(C.MS_RELAPSE, dt.date(2020, 2, 2))]
    prov = _rows(
        stras,
        "SELECT source_file, source_line FROM source_provenance WHERE cdm_table = 'observation'",
    )
    assert prov == [("evenements.csv", 2)]


def test_freiburg_bom_encoding_and_mg_per_dl(tmp_path: Path) -> None:
    db = _build(tmp_path, "freiburg")
    meas = _rows(
        db,
        "SELECT measurement_concept_id, value_as_number, unit_concept_id, "
        "unit_source_value FROM measurement ORDER BY measurement_id",
    )
    assert meas == [
        (C.CRP, pytest.approx(12.0), U.UCUM["mg/L"], "mg/dl"),
        (C.HEMOGLOBIN, pytest.approx(13.1), U.UCUM["g/dL"], "g/dl"),
        (C.FECAL_CALPROTECTIN, 250.0, U.UCUM["ug/g"], "µg/g"),
    ]
    q = read_quarantine(db)
    assert q[["source_file", "source_line", "reason"]].values.tolist() == [
        ["labor.csv", 5, "invalid_encoding"]
    ]
    assert "0xE4" in q.detail[0] and "column 13" in q.detail[0]
    assert "Laborbezeichnung" in q.detail[0]
    # BOM stripped: the first column (PatNr) was found
    assert _rows(db, "SELECT person_source_value FROM person ORDER BY 1") == [("F1",), ("F2",)]


def test_fhir_ndjson_site(tmp_path: Path) -> None:
    db = _build(tmp_path, "luxembourg")
    q = read_quarantine(db)
    got = {(f, line, r) for f, line, r in zip(q.source_file, q.source_line, q.reason, strict=True)}
    assert got == {
        ("Patient.ndjson", 3, "invalid_json"),
        ("Patient.ndjson", 4, "invalid_resource"),
        ("Observation.ndjson", 3, "unknown_person"),
    }
    detail = dict(zip(q.source_line, q.detail, strict=True))
    assert "column" in detail[3] and "Patient.birthDate" in detail[4]
    assert _rows(
        db, "SELECT measurement_concept_id, value_as_number, unit_concept_id FROM measurement"
    ) == [(C.CRP, pytest.approx(8.0), U.UCUM["mg/L"])]
    assert _rows(db, "SELECT observation_concept_id FROM observation") == [(C.MS_RELAPSE,)]
    assert _rows(db, "SELECT visit_concept_id FROM visit_occurrence") == [(C.INPATIENT_VISIT,)]
    assert _rows(db, "SELECT death_date FROM death") == [(dt.date(2021, 3, 4),)]
    rec = read_reconciliation(db)
    assert (rec.rows_in == rec.loaded + rec.quarantined).all()
    assert set(rec.source_file) == set(SPECS["luxembourg"].files.values())


def test_fhir_rows_are_flushed_in_bounded_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = luxembourg(tmp_path / "raw")
    spec = SPECS["luxembourg"]
    tables = [*SCHEMAS, "source_provenance", "quarantine", "reconciliation", "mapping_coverage"]
    harmonize_site(spec, raw, tmp_path / "one.duckdb")
    monkeypatch.setattr(fhir, "FLUSH_ROWS", 2)
    batches: list[tuple[str, int]] = []
    collector = fhir.FhirCollector(spec, lambda kind, t: batches.append((kind, t.num_rows)))
    held = []
    added = 0
    for rtype in ("Patient", "Observation"):
        for line, text in enumerate((raw / spec.files[rtype]).read_text().splitlines(), 1):
            try:
                resource, error = json.loads(text), None
            except json.JSONDecodeError:
                resource, error = None, ("invalid_json", "cut short")
            collector.add(rtype, spec.files[rtype], line, text, resource, error)
            added += 1
            held.append(collector.pending)
    collector.flush()
    assert max(held) == 1 and collector.pending == 0
    assert all(n <= 2 for _, n in batches) and sum(n for _, n in batches) == added
    # flushing every two resources builds exactly the same database
    harmonize_site(spec, raw, tmp_path / "many.duckdb")
    for t in tables:
        sql = f"SELECT * FROM {t} ORDER BY ALL"
        assert _rows(tmp_path / "many.duckdb", sql) == _rows(tmp_path / "one.duckdb", sql), t


def test_rebuild_is_idempotent(tmp_path: Path) -> None:
    raw = strasbourg(tmp_path / "raw")
    db = tmp_path / "s.duckdb"
    tables = [*SCHEMAS, "source_provenance", "quarantine", "reconciliation", "mapping_coverage"]

    def snapshot() -> dict[str, list[tuple]]:
        return {t: _rows(db, f"SELECT * FROM {t} ORDER BY ALL") for t in tables}

    harmonize_site(SPECS["strasbourg"], raw, db)
    first = snapshot()
    harmonize_site(SPECS["strasbourg"], raw, db)
    assert snapshot() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "s.duckdb"]


def test_missing_file_and_bad_header_raise_clear_errors(tmp_path: Path) -> None:
    raw = strasbourg(tmp_path / "raw")
    (raw / "actes.csv").unlink()
    with pytest.raises(HarmonizeError, match=r"actes\.csv: file not found"):
        harmonize_site(SPECS["strasbourg"], raw, tmp_path / "x.duckdb")
    write(raw / "actes.csv", ["IPP;num_sejour;code_acte;libelle_acte;date_acte"], "latin-1")
    with pytest.raises(
        HarmonizeError,
        match=r"actes\.csv: line 1, column \d+: header lacks "
        r"column 'code_ccam'",
    ):
        harmonize_site(SPECS["strasbourg"], raw, tmp_path / "x.duckdb")
    # neither the database nor the temporary file it is built in (nor its WAL) is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_header_in_wrong_encoding_raises(tmp_path: Path) -> None:
    raw = freiburg(tmp_path / "raw")
    (raw / "faelle.csv").write_bytes(b"FallNr;PatNr;Fallart;Aufnahmedatum;Entla\xdfdatum\n")
    with pytest.raises(
        HarmonizeError,
        match=r"faelle\.csv: line 1: header is not valid "
        r"utf-8-sig: byte 0xDF at byte offset 40 \(column 41",
    ):
        harmonize_site(SPECS["freiburg"], raw, tmp_path / "x.duckdb")
