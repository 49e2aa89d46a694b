"""FHIR Bundles -> CDM: a public HL7 example bundle and a hand-written one with Observations."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb

from clinnova_explore.cdm import concepts as C
from clinnova_explore.harmonize import harmonize_fhir_bundle, read_reconciliation

IPS = Path(__file__).parent / "data" / "fhir" / "Bundle-IPS-examples-Bundle-minimal.json"


def _count(bundle: dict, rtype: str) -> int:
    return sum(1 for e in bundle["entry"] if e["resource"]["resourceType"] == rtype)


def test_hl7_ips_bundle_loads(tmp_path: Path) -> None:
    bundle = json.loads(IPS.read_text(encoding="utf-8"))
    db = tmp_path / "ips.duckdb"
    report = harmonize_fhir_bundle(IPS, db)
    assert report.loaded["person"] == _count(bundle, "Patient") == 1
    assert report.loaded["condition_occurrence"] == _count(bundle, "Condition") == 1
    assert report.loaded["drug_exposure"] == _count(bundle, "MedicationStatement") == 1
    assert report.quarantine == {}
    assert report.skipped == {"Composition": 1, "Practitioner": 1, "Organization": 1,
                              "Medication": 1, "AllergyIntolerance": 1}
    with duckdb.connect(str(db), read_only=True) as con:
        person = con.execute("SELECT gender_concept_id, year_of_birth, person_source_value "
                             "FROM person").fetchall()
        cond = con.execute("SELECT condition_concept_id, condition_source_value, "
                           "condition_start_date, person_id FROM condition_occurrence"
                           ).fetchall()
        drug = con.execute("SELECT drug_concept_id, drug_source_value, "
                           "drug_exposure_start_date FROM drug_exposure").fetchall()
    assert person == [(C.FEMALE, 1972, "2b90dd2b-2dab-4c75-9bb9-a355e07401e8")]
    # SNOMED CT comes first among the known systems; the subset does not map it: concept 0
    assert cond == [(0, "198436008", dt.date(2015, 1, 1), 1)]
    assert drug == [(0, "108774000", dt.date(2015, 3, 1))]
    rec = read_reconciliation(db)
    assert (rec.rows_in == rec.loaded + rec.quarantined).all()
    assert rec.rows_in.sum() == 3


def test_bundle_with_observations(tmp_path: Path) -> None:
    subj = {"reference": "urn:uuid:p-1"}
    loinc = "http://loinc.org"
    entries = [
        {"fullUrl": "urn:uuid:p-1", "resource": {"resourceType": "Patient", "id": "p-1",
                                                 "gender": "male", "birthDate": "1960-02-03"}},
        {"resource": {"resourceType": "Observation", "id": "o-1", "status": "final",
                      "subject": subj, "code": {"coding": [{"system": loinc, "code": "718-7"}]},
                      "effectiveDateTime": "2019-04-05T08:00:00Z",
                      "valueQuantity": {"value": 140, "unit": "g/L",
                                        "system": "http://unitsofmeasure.org", "code": "g/L"}}},
        {"resource": {"resourceType": "Observation", "id": "o-2", "status": "final",
                      "subject": subj,
                      "code": {"coding": [{"system": "http://example.org/x", "code": "Z"}]},
                      "effectiveDateTime": "2019-04-05"}},
        {"resource": {"resourceType": "Observation", "id": "o-3", "subject": subj,
                      "code": {"coding": [{"system": loinc, "code": "718-7"}]}}},
    ]
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                "entry": entries}), encoding="utf-8")
    report = harmonize_fhir_bundle(path, tmp_path / "b.duckdb")
    n_obs = sum(1 for e in entries if e["resource"]["resourceType"] == "Observation")
    assert report.loaded["measurement"] + report.loaded["observation"] + sum(
        report.quarantine.values()) == n_obs
    assert report.quarantine == {"invalid_resource": 1}   # o-3 lacks the required status
    with duckdb.connect(str(tmp_path / "b.duckdb"), read_only=True) as con:
        meas = con.execute("SELECT measurement_concept_id, value_as_number FROM measurement"
                           ).fetchall()
        obs = con.execute("SELECT observation_concept_id, observation_source_value "
                          "FROM observation").fetchall()
        q = con.execute("SELECT source_line, detail FROM quarantine").fetchall()
    assert meas == [(C.HEMOGLOBIN, 14.0)]      # 140 g/L -> 14 g/dL
    assert obs == [(0, "Z")]                  # unknown system: loaded with concept 0
    assert q[0][0] == 4 and "Observation.status" in q[0][1]
