"""Hand-written tiny native exports (following the site specs) for the harmonize tests."""

from __future__ import annotations

import json
from pathlib import Path


def write(path: Path, lines: list[str], encoding: str, newline: str = "\n") -> Path:
    """Write ``lines`` as a text file in ``encoding``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(lines) + newline).encode(encoding))
    return path


def strasbourg(raw: Path) -> Path:
    """Latin-1, ';', decimal comma, dd/mm/yyyy, undotted CIM10 codes, CRP in mg/l."""
    d = raw / "strasbourg"
    enc = "latin-1"
    write(
        d / "patients.csv",
        [
            "IPP;date_naissance;sexe;date_deces",
            "P1;15/03/1980;1;",
            "P2;01/01/1990;2;10/10/2030",
            "P3;32/01/1990;2;",  # line 4: invalid_date
            "P4;01/01/1970;9;",  # line 5: unknown_value (sex)
        ],
        enc,
    )
    write(
        d / "sejours.csv",
        [
            "num_sejour;IPP;type_sejour;date_entree;date_sortie",
            "S1;P1;HC;01/02/2020;05/02/2020",
            "S2;P2;CS;03/03/2020;03/03/2020",
            "S3;P9;HC;01/02/2020;05/02/2020",  # line 4: unknown_person
            "S4;P1;XX;01/02/2020;05/02/2020",  # line 5: unknown_value (visit type)
            "S5;P1;URG;01/06/2019;01/06/2019",
        ],
        enc,
    )
    write(
        d / "diagnostics.csv",
        [
            "IPP;num_sejour;code_cim10;libelle;date_diagnostic",
            "P1;S1;G35;Sclérose en plaques;01/02/2020",
            "P2;S2;K500;Maladie de Crohn;03/03/2020",
            "P2;S2;K500;Maladie de Crohn;03/03/2020",  # line 4: duplicate of line 3
            "P1;S99;ZZZ9;Inconnu;01/02/2020",  # unmapped, unknown visit
            "P1;S1;G35;trop;de;champs",  # line 6: malformed_line
            "P3;S1;G35;x;01/02/2020",  # line 7: person_quarantined
            '"P2";"S2";"K501";"Crohn; iléon";"04/03/2020"',
        ],
        enc,
    )
    write(
        d / "traitements.csv",
        [
            "IPP;code_atc;libelle_medicament;date_debut;date_fin",
            "P1;L04AA23;Natalizumab;01/02/2020;01/01/2020",  # end before start: loaded as is
            "P2;A07EC02;Mésalazine;03/03/2020;",
        ],
        enc,
    )
    write(
        d / "biologie.csv",
        [
            "IPP;num_sejour;code_analyse;libelle_analyse;date_prelevement;resultat;unite",
            "P1;S1;CRP;Protéine C réactive;01/02/2020;12,5;mg/l",
            "P1;S1;HB;Hémoglobine;01/02/2020;135;g/l",
            "P1;S1;CRP;Protéine C réactive;01/02/2020;abc;mg/l",  # line 4: invalid_number
            "P1;S1;CRP;Protéine C réactive;2020-02-01;3,0;mg/l",  # line 5: invalid_date
            "P2;;EDSS;Score EDSS;03/03/2020;3,5;score",
        ],
        enc,
    )
    write(
        d / "actes.csv",
        [
            "IPP;num_sejour;code_ccam;libelle_acte;date_acte",
            "P1;S1;ZZHH001;IRM cérébrale;02/02/2020",
        ],
        enc,
    )
    write(
        d / "evenements.csv",
        [
            "IPP;num_sejour;code_evenement;libelle_evenement;date_evenement",
            "P1;S1;MS_RELAPSE;Poussée;02/02/2020",
            "P1;S1;MS_RELAPSE;Poussée;",  # line 3: missing_required
        ],
        enc,
    )
    return d


def freiburg(raw: Path) -> Path:
    """UTF-8 with BOM, ';', decimal comma, CRP in mg/dl, one invalid UTF-8 byte."""
    d = raw / "freiburg"
    enc = "utf-8-sig"
    write(
        d / "patienten.csv",
        ["PatNr;GebDatum;Geschlecht;Sterbedatum", "F1;02.05.1975;W;", "F2;03.06.1960;M;01.01.2021"],
        enc,
    )
    write(
        d / "faelle.csv",
        [
            "FallNr;PatNr;Fallart;Aufnahmedatum;Entlassdatum",
            "A1;F1;S;10.01.2020;12.01.2020",
            "A2;F2;A;01.02.2020;01.02.2020",
        ],
        enc,
    )
    write(
        d / "diagnosen.csv",
        ["PatNr;FallNr;ICD_Kode;ICD_Text;Diagnosedatum", "F1;A1;K50.0;Morbus Crohn;10.01.2020"],
        enc,
    )
    write(
        d / "medikation.csv",
        [
            "PatNr;ATC_Kode;Wirkstoff;Startdatum;Stoppdatum",
            "F1;L04AA23;Natalizumab;10.01.2020;10.07.2020",
        ],
        enc,
    )
    labs = d / "labor.csv"
    write(
        labs,
        [
            "PatNr;FallNr;Laborkuerzel;Laborbezeichnung;Abnahmedatum;Messwert;Einheit",
            "F1;A1;CRP_S;C-reaktives Protein;10.01.2020;1,2;mg/dl",
            "F1;A1;HB_B;Hämoglobin;10.01.2020;13,1;g/dl",
            "F1;A1;CALP_ST;Calprotectin;10.01.2020;250;µg/g",
        ],
        enc,
    )
    # line 5: a latin-1 byte (0xE4, 'ä') in a UTF-8 file -> invalid_encoding
    with labs.open("ab") as fh:
        fh.write(b"F1;A1;HB_B;H" + b"\xe4" + b"moglobin;11.01.2020;12,0;g/dl\n")
    write(d / "prozeduren.csv", ["PatNr;FallNr;OPS_Kode;OPS_Text;OP_Datum"], enc)
    write(d / "ereignisse.csv", ["PatNr;FallNr;Ereignis;Ereignistext;Datum"], enc)
    return d


def _ndjson(path: Path, items: list[object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [i if isinstance(i, str) else json.dumps(i) for i in items]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def luxembourg(raw: Path) -> Path:
    """FHIR NDJSON: two patients, one invalid JSON line, one invalid resource."""
    d = raw / "luxembourg"
    subj = {"reference": "Patient/L1"}
    enc = {"reference": "Encounter/E1"}
    _ndjson(
        d / "Patient.ndjson",
        [
            {"resourceType": "Patient", "id": "L1", "gender": "female", "birthDate": "1985-04-02"},
            {
                "resourceType": "Patient",
                "id": "L2",
                "gender": "male",
                "birthDate": "1950-01-01",
                "deceasedDateTime": "2021-03-04T10:00:00+01:00",
            },
            '{"resourceType": "Patient", "id": "L3", "gender": "male"',  # invalid_json
            {
                "resourceType": "Patient",
                "id": "L4",
                "gender": "male",
                "birthDate": "1950-13-45",
            },  # invalid_resource
        ],
    )
    _ndjson(
        d / "Encounter.ndjson",
        [
            {
                "resourceType": "Encounter",
                "id": "E1",
                "status": "finished",
                "subject": subj,
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "IMP",
                },
                "period": {"start": "2020-05-01", "end": "2020-05-04"},
            },
        ],
    )
    _ndjson(
        d / "Condition.ndjson",
        [
            {
                "resourceType": "Condition",
                "id": "C1",
                "subject": subj,
                "encounter": enc,
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "G35"}]},
                "onsetDateTime": "2020-05-01",
            },
        ],
    )
    _ndjson(
        d / "MedicationStatement.ndjson",
        [
            {
                "resourceType": "MedicationStatement",
                "id": "M1",
                "status": "active",
                "subject": subj,
                "medicationCodeableConcept": {
                    "coding": [{"system": "http://www.whocc.no/atc", "code": "L04AA23"}]
                },
                "effectivePeriod": {"start": "2020-05-02", "end": "2020-11-02"},
            },
        ],
    )
    _ndjson(
        d / "Observation.ndjson",
        [
            {
                "resourceType": "Observation",
                "id": "O1",
                "status": "final",
                "subject": subj,
                "encounter": enc,
                "code": {"coding": [{"system": "http://loinc.org", "code": "1988-5"}]},
                "effectiveDateTime": "2020-05-01",
                "valueQuantity": {
                    "value": 0.8,
                    "unit": "mg/dL",
                    "system": "http://unitsofmeasure.org",
                    "code": "mg/dL",
                },
            },
            {
                "resourceType": "Observation",
                "id": "O2",
                "status": "final",
                "subject": subj,
                "code": {
                    "coding": [
                        {
                            "system": "https://clinnova.lu/fhir/CodeSystem/clinical-event",
                            "code": "MS_RELAPSE",
                        }
                    ]
                },
                "effectiveDateTime": "2020-06-01",
            },
            {
                "resourceType": "Observation",
                "id": "O3",
                "status": "final",
                "subject": {"reference": "Patient/NOPE"},
                "code": {"coding": [{"system": "http://loinc.org", "code": "1988-5"}]},
                "effectiveDateTime": "2020-06-01",
            },  # unknown_person
        ],
    )
    _ndjson(d / "Procedure.ndjson", [])
    (d / "Procedure.ndjson").write_text("", encoding="utf-8")
    return d
