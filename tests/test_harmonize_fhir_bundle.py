"""FHIR Bundles -> CDM: a public HL7 example bundle and a hand-written one with Observations."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb

from clinnova_explore.cdm import concepts as C
from clinnova_explore.cdm.vocabulary import source_to_standard
from clinnova_explore.harmonize import harmonize_fhir_bundle, read_reconciliation
from clinnova_explore.harmonize.spec import load_site_specs

SPECS = load_site_specs()

IPS = Path(__file__).parent / "data" / "fhir" / "Bundle-IPS-examples-Bundle-minimal.json"


def _count(bundle: dict, rtype: str) -> int:
    return sum(1 for e in bundle["entry"] if e["resource"]["resourceType"] == rtype)


def _expected_coding(concept: dict, systems: dict[str, str]) -> tuple[str, int]:
    """(source value, standard concept) by the declared rule, from the vocabulary tables."""
    order = list(systems)
    known = sorted(
        (c for c in concept["coding"] if c.get("system") in systems),
        key=lambda c: order.index(c["system"]),
    )
    for c in known:
        s2s = source_to_standard(systems[c["system"]])
        hit = s2s[(s2s.source_code == c["code"]) & s2s.standard_concept_id.notna()]
        if len(hit):
            return c["code"], int(hit.standard_concept_id.min())
    return known[0]["code"], 0


def test_hl7_ips_bundle_loads(tmp_path: Path) -> None:
    bundle = json.loads(IPS.read_text(encoding="utf-8"))
    db = tmp_path / "ips.duckdb"
    report = harmonize_fhir_bundle(IPS, db)
    assert report.loaded["person"] == _count(bundle, "Patient") == 1
    assert report.loaded["condition_occurrence"] == _count(bundle, "Condition") == 1
    assert report.loaded["drug_exposure"] == _count(bundle, "MedicationStatement") == 1
    assert report.quarantine == {}
    assert report.skipped == {
        "Composition": 1,
        "Practitioner": 1,
        "Organization": 1,
        "Medication": 1,
        "AllergyIntolerance": 1,
    }
    with duckdb.connect(str(db), read_only=True) as con:
        person = con.execute(
            "SELECT gender_concept_id, year_of_birth, person_source_value FROM person"
        ).fetchall()
        cond = con.execute(
            "SELECT condition_concept_id, condition_source_value, "
            "condition_start_date, person_id FROM condition_occurrence"
        ).fetchall()
        drug = con.execute(
            "SELECT drug_concept_id, drug_source_value, drug_exposure_start_date FROM drug_exposure"
        ).fetchall()
        ((release,),) = con.execute("SELECT source_release_date FROM cdm_source").fetchall()
    assert person == [(C.FEMALE, 1972, "2b90dd2b-2dab-4c75-9bb9-a355e07401e8")]
    # both resources carry SNOMED CT first and ICD-10 / ATC later; the spec ranks ICD-10 and
    # ATC above SNOMED, and none of these codes maps in the subset, so the highest-ranked
    # known coding is kept, with concept 0
    systems = SPECS["luxembourg"].systems
    res = {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}
    cond_code, cond_concept = _expected_coding(res["Condition"]["code"], systems)
    drug_code, drug_concept = _expected_coding(res["Medication"]["code"], systems)
    assert (cond_code, cond_concept, drug_code, drug_concept) == ("N95.1", 0, "L02BG03", 0)
    assert cond == [(cond_concept, cond_code, dt.date(2015, 1, 1), 1)]
    assert drug == [(drug_concept, drug_code, dt.date(2015, 3, 1))]
    # the export date is the date part of Bundle.timestamp as written
    assert bundle["timestamp"] == "2020-12-11T14:30:00+01:00"
    assert release == dt.date(2020, 12, 11)
    rec = read_reconciliation(db)
    assert (rec.rows_in == rec.loaded + rec.quarantined).all()
    assert rec.rows_in.sum() == 3
    assert rec.physical_lines.isna().all()  # bundle entries are not lines


def _bundle(path: Path, entries: list[dict], **extra: str) -> Path:
    path.write_text(
        json.dumps({"resourceType": "Bundle", "type": "collection", **extra, "entry": entries}),
        encoding="utf-8",
    )
    return path


def test_first_mapping_coding_wins(tmp_path: Path) -> None:
    subj = {"reference": "urn:uuid:p-1"}
    icd10, snomed = "http://hl7.org/fhir/sid/icd-10", "http://snomed.info/sct"
    atc, other = "http://www.whocc.no/atc", "http://example.org/local"

    def condition(cid: str, codings: list[dict], onset: str) -> dict:
        return {
            "resource": {
                "resourceType": "Condition",
                "id": cid,
                "subject": subj,
                "code": {"coding": codings},
                "onsetDateTime": onset,
            }
        }

    entries = [
        {
            "fullUrl": "urn:uuid:p-1",
            "resource": {
                "resourceType": "Patient",
                "id": "p-1",
                "gender": "female",
                "birthDate": "1980-01-01",
            },
        },
        # ICD-10 ranks first but N95.1 does not map; the second coding (SNOMED, MS) does
        condition(
            "c-1",
            [{"system": icd10, "code": "N95.1"}, {"system": snomed, "code": "24700007"}],
            "2019-01-01",
        ),
        # both map: the spec's order (ICD-10 before SNOMED) wins over the resource's order
        condition(
            "c-2",
            [{"system": snomed, "code": "24700007"}, {"system": icd10, "code": "K50.9"}],
            "2019-02-01",
        ),
        # unknown systems are skipped; the only known coding does not map: concept 0
        condition(
            "c-3",
            [{"system": other, "code": "X1"}, {"system": icd10, "code": "N95.1"}],
            "2019-03-01",
        ),
        {
            "resource": {
                "resourceType": "MedicationStatement",
                "id": "m-1",
                "status": "active",
                "subject": subj,
                "effectiveDateTime": "2019-04-01",
                "medicationCodeableConcept": {
                    "coding": [
                        {"system": snomed, "code": "108774000"},
                        {"system": atc, "code": "L04AA23"},
                    ]
                },
            }
        },
    ]
    db = tmp_path / "c.duckdb"
    harmonize_fhir_bundle(_bundle(tmp_path / "c.json", entries), db)
    with duckdb.connect(str(db), read_only=True) as con:
        cond = con.execute(
            "SELECT condition_start_date, condition_concept_id, "
            "condition_source_value, condition_source_concept_id > 0 "
            "FROM condition_occurrence ORDER BY 1"
        ).fetchall()
        drug = con.execute(
            "SELECT drug_concept_id, drug_source_value FROM drug_exposure"
        ).fetchall()
    assert cond == [
        (dt.date(2019, 1, 1), C.MULTIPLE_SCLEROSIS, "24700007", True),
        (dt.date(2019, 2, 1), C.CROHNS_DISEASE, "K50.9", True),
        (dt.date(2019, 3, 1), 0, "N95.1", False),
    ]
    assert drug == [(C.NATALIZUMAB, "L04AA23")]


def test_bundle_with_observations(tmp_path: Path) -> None:
    subj = {"reference": "urn:uuid:p-1"}
    loinc = "http://loinc.org"
    entries = [
        {
            "fullUrl": "urn:uuid:p-1",
            "resource": {
                "resourceType": "Patient",
                "id": "p-1",
                "gender": "male",
                "birthDate": "1960-02-03",
            },
        },
        {
            "resource": {
                "resourceType": "Observation",
                "id": "o-1",
                "status": "final",
                "subject": subj,
                "code": {"coding": [{"system": loinc, "code": "718-7"}]},
                "effectiveDateTime": "2019-04-05T08:00:00Z",
                "valueQuantity": {
                    "value": 140,
                    "unit": "g/L",
                    "system": "http://unitsofmeasure.org",
                    "code": "g/L",
                },
            }
        },
        {
            "resource": {
                "resourceType": "Observation",
                "id": "o-2",
                "status": "final",
                "subject": subj,
                "code": {"coding": [{"system": "http://example.org/x", "code": "Z"}]},
                "effectiveDateTime": "2019-04-05",
            }
        },
        {
            "resource": {
                "resourceType": "Observation",
                "id": "o-3",
                "subject": subj,
                "code": {"coding": [{"system": loinc, "code": "718-7"}]},
            }
        },
    ]
    path = _bundle(tmp_path / "b.json", entries)  # no timestamp: exported today
    report = harmonize_fhir_bundle(path, tmp_path / "b.duckdb")
    n_obs = sum(1 for e in entries if e["resource"]["resourceType"] == "Observation")
    assert (
        report.loaded["measurement"]
        + report.loaded["observation"]
        + sum(report.quarantine.values())
        == n_obs
    )
    assert report.quarantine == {"invalid_resource": 1}  # o-3 lacks the required status
    with duckdb.connect(str(tmp_path / "b.duckdb"), read_only=True) as con:
        meas = con.execute(
            "SELECT measurement_concept_id, value_as_number FROM measurement"
        ).fetchall()
        obs = con.execute(
            "SELECT observation_concept_id, observation_source_value FROM observation"
        ).fetchall()
        q = con.execute("SELECT source_line, detail FROM quarantine").fetchall()
        ((release,),) = con.execute("SELECT source_release_date FROM cdm_source").fetchall()
    assert release == dt.date.today()
    assert meas == [(C.HEMOGLOBIN, 14.0)]  # 140 g/L -> 14 g/dL
    assert obs == [(0, "Z")]  # unknown system: loaded with concept 0
    assert q[0][0] == 4 and "Observation.status" in q[0][1]
