"""Writing the FHIR R4 NDJSON bulk export of a FHIR site (one file per resource type).

Resources reference each other as ``Patient/<id>`` and ``Encounter/<id>``; labs and events are
both Observations (labs carry ``valueQuantity`` with a UCUM unit, events the CLX_EVENT system
and no value).
"""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from pathlib import Path

import numpy as np

from clinnova_explore.cdm.vocabulary import source_to_standard
from clinnova_explore.harmonize.spec import FhirSpec
from clinnova_explore.synth import faults as fl
from clinnova_explore.synth.codes import code_table, unmapped_code
from clinnova_explore.synth.formats import (
    UNKNOWN_PERSON_BASE,
    format_dates,
    format_values,
    patient_ids,
    visit_ids,
)
from clinnova_explore.synth.native_file import Insert, NativeFile
from clinnova_explore.synth.params import day
from clinnova_explore.synth.records import FINAL, Tables
from clinnova_explore.synth.writers_csv import concepts_of

__all__ = ["FhirSiteWriter"]

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_RESOURCE = {
    "visits": "Encounter",
    "diagnoses": "Condition",
    "medications": "MedicationStatement",
    "labs": "Observation",
    "procedures": "Procedure",
    "events": "Observation",
}
_VOCAB = {
    "diagnoses": ("ICD10",),
    "medications": ("ATC",),
    "labs": ("LOINC", "CLX_SCORE"),
    "procedures": ("SNOMED",),
    "events": ("CLX_EVENT",),
}
_CLASS_DISPLAY = {"IMP": "inpatient encounter", "AMB": "ambulatory", "EMER": "emergency"}


def _dumps(resource: dict) -> str:
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":"))


class FhirSiteWriter:
    """Streams one FHIR NDJSON site export, chunk by chunk, with injected faults."""

    def __init__(self, spec: FhirSpec, directory: Path) -> None:
        self.spec = spec
        directory.mkdir(parents=True, exist_ok=True)
        self.files = {
            rt: NativeFile(directory / name, spec.encoding, None) for rt, name in spec.files.items()
        }
        self.faults: list[dict] = []
        self.chunk = 0
        self.vclass = {lg: nat for nat, lg in spec.values.get("visit_type", {}).items()}
        self.gender = {lg: nat for nat, lg in spec.values.get("sex", {}).items()}

    def _system(self, vocabulary_id: str) -> str:
        return self.spec.system_for(vocabulary_id)

    def _coding(self, table: str, concept: np.ndarray, number: np.ndarray) -> list[dict]:
        vocabs = _VOCAB[table]
        code, label = code_table(concepts_of(table), vocabs).pick(concept, number)
        which = _code_vocabulary(vocabs)
        systems = {v: self._system(v) for v in vocabs}
        return [
            {"system": systems[which[cd]], "code": cd, "display": lb}
            for cd, lb in zip(code.tolist(), label.tolist(), strict=True)
        ]

    def _rows(self, numbers: np.ndarray, tb: Tables) -> dict[str, list[str]]:
        pid = patient_ids(self.spec.site, numbers)
        ref = np.array([f"Patient/{p}" for p in pid], dtype=object)
        v = tb["visits"]
        vid = visit_ids(self.spec.site, numbers[v["owner"]], v["seq"])
        pt = tb["patients"]
        rows: dict[str, list[str]] = {}
        out = []
        for p, birth, fem, death in zip(
            pid, d(pt["birth"]), pt["female"], d(pt["death"]), strict=True
        ):
            r = {
                "resourceType": "Patient",
                "id": p,
                "identifier": [{"system": "https://chl.lu/fhir/sid/patient-id", "value": p}],
                "gender": self.gender["F" if fem else "M"],
                "birthDate": birth,
            }
            if death:
                r["deceasedDateTime"] = death
            out.append(_dumps(r))
        rows["patients"] = out
        cls = [self.vclass[k] for k in ("inpatient", "outpatient", "emergency")]
        rows["visits"] = [
            _dumps(
                {
                    "resourceType": "Encounter",
                    "id": i,
                    "status": "finished",
                    "class": {
                        "system": ACT_CODE,
                        "code": cls[t],
                        "display": _CLASS_DISPLAY.get(cls[t], cls[t]),
                    },
                    "subject": {"reference": ref[o]},
                    "period": {"start": s, "end": e},
                }
            )
            for i, t, o, s, e in zip(
                vid,
                v["type"].tolist(),
                v["owner"].tolist(),
                d(v["start"]),
                d(v["end"]),
                strict=True,
            )
        ]
        for table in ("diagnoses", "medications", "labs", "procedures", "events"):
            t = tb[table]
            codings = self._coding(table, t["concept"], numbers[t["owner"]])
            ids = [f"{table[:3]}-{self.chunk}-{i}" for i in range(t["owner"].size)]
            if table == "medications":
                ends = d(t["end"])
                rows[table] = [
                    _dumps(
                        {
                            "resourceType": "MedicationStatement",
                            "id": i,
                            "status": "completed" if e else "active",
                            "medicationCodeableConcept": {"coding": [cd]},
                            "subject": {"reference": ref[o]},
                            "effectivePeriod": {"start": s, "end": e} if e else {"start": s},
                        }
                    )
                    for i, cd, o, s, e in zip(
                        ids, codings, t["owner"].tolist(), d(t["start"]), ends, strict=True
                    )
                ]
                continue
            base: list[dict[str, object]] = [
                {
                    "resourceType": _RESOURCE[table],
                    "id": i,
                    "subject": {"reference": ref[o]},
                    "encounter": {"reference": f"Encounter/{vid[vi]}"},
                }
                for i, o, vi in zip(ids, t["owner"].tolist(), t["visit"].tolist(), strict=True)
            ]
            dates = d(t["date"])
            if table == "labs":
                _, unit, num = format_values(t["concept"], t["value"], None)
                for r, cd, dt_, u, x in zip(base, codings, dates, unit, num.tolist(), strict=True):
                    r.update(
                        {
                            "status": "final",
                            "category": [
                                {"coding": [{"system": OBS_CATEGORY, "code": "laboratory"}]}
                            ],
                            "code": {"coding": [cd]},
                            "effectiveDateTime": dt_,
                            "valueQuantity": {
                                "value": int(x) if x == int(x) else x,
                                "unit": u,
                                "system": self.spec.units_system,
                                "code": u,
                            },
                        }
                    )
            elif table == "events":
                for r, cd, dt_ in zip(base, codings, dates, strict=True):
                    r.update(
                        {"status": "final", "code": {"coding": [cd]}, "effectiveDateTime": dt_}
                    )
            elif table == "diagnoses":
                for r, cd, dt_ in zip(base, codings, dates, strict=True):
                    r.update({"code": {"coding": [cd]}, "onsetDateTime": dt_})
            else:
                for r, cd, dt_ in zip(base, codings, dates, strict=True):
                    r.update(
                        {"status": "completed", "code": {"coding": [cd]}, "performedDateTime": dt_}
                    )
            rows[table] = [_dumps(r) for r in base]
        return rows

    def write_chunk(
        self, numbers: np.ndarray, tb: Tables, rng: np.random.Generator, first_chunk: bool
    ) -> None:
        """Write one chunk of persons (``numbers`` are their site-wide person numbers)."""
        rows = self._rows(numbers, tb)
        plan = fl.plan_faults(
            rng, fl.FHIR_KINDS, {t: len(r) for t, r in rows.items() if t != "patients"}, first_chunk
        )
        v = tb["visits"]
        final = np.nonzero(v["kind"] == FINAL)[0]
        ctx = {"final": final, "numbers": numbers, "tb": tb}
        for table, lines in rows.items():
            rtype = "Patient" if table == "patients" else _RESOURCE[table]
            inserts = self._inserts(table, lines, plan.get(table, []), rng, ctx)
            self.faults += self.files[rtype].write(lines, inserts, self.spec.site)
        self.chunk += 1

    def _inserts(
        self, table: str, lines: list[str], kinds: list[str], rng: np.random.Generator, ctx: dict
    ) -> list[Insert]:
        if not kinds or not lines:
            return []
        sources = rng.choice(len(lines), size=min(len(kinds), len(lines)), replace=False)
        out: list[Insert] = []
        for j, kind in enumerate(kinds[: len(sources)]):
            src = int(sources[j])
            at = int(rng.integers(src + 1, len(lines) + 1))
            r = json.loads(lines[src])
            r["id"] = f"{r['id']}-f{j}"
            payload: str | bytes = ""
            detail = ""
            if kind == "duplicate":
                out.append(
                    Insert(at, lines[src], kind, table, "exact copy of line {line}", source=src)
                )
                continue
            if kind == "invalid_json":
                text = _dumps(r)
                payload = text[: len(text) // 2]
                detail = "truncated JSON"
            elif kind == "invalid_resource":
                r.pop("status", None)
                detail = f"{r['resourceType']} without the required status"
            elif kind == "invalid_encoding":
                coding = _first_coding(r)
                coding["display"] = coding.get("display", "") + " (é)"
                payload = _dumps(r).encode("latin-1", errors="replace")
                detail = "latin-1 byte 0xE9 in a UTF-8 file"
            elif kind == "unknown_person":
                n = UNKNOWN_PERSON_BASE + int(rng.integers(0, 999_999))
                p = patient_ids(self.spec.site, np.array([n]))[0]
                r["subject"] = {"reference": f"Patient/{p}"}
                if "encounter" in r:
                    e = visit_ids(self.spec.site, np.array([n]), np.array([1]))[0]
                    r["encounter"] = {"reference": f"Encounter/{e}"}
                detail = f"subject Patient/{p} not in Patient.ndjson"
            elif kind == "unmapped_code":
                coding = _first_coding(r)
                coding["code"] = unmapped_code(table, _VOCAB[table][:1])
                detail = f"code {coding['code']!r}"
            elif kind == "end_before_start":
                start = day(_iso(r["effectivePeriod"]["start"]))
                end = format_dates(np.array([start - int(rng.integers(1, 60))]), "%Y-%m-%d", "")
                r["effectivePeriod"]["end"] = end[0]
                r["status"] = "completed"
                detail = "effectivePeriod.end before start"
            elif kind == "date_out_of_range":
                key = "onsetDateTime" if "onsetDateTime" in r else "effectiveDateTime"
                owner = {p: k for k, p in enumerate(patient_ids(self.spec.site, ctx["numbers"]))}
                k = owner[r["subject"]["reference"].split("/", 1)[1]]
                birth = int(ctx["tb"]["patients"]["birth"][k])
                dd = (
                    birth - int(rng.integers(30, 3000))
                    if j % 2
                    else day(_iso("2099-01-01")) + int(rng.integers(0, 365))
                )
                r[key] = format_dates(np.array([dd]), "%Y-%m-%d", "")[0]
                detail = "before birth" if j % 2 else "after the data cut (2099)"
            elif kind == "impossible_value":
                r = self._impossible(j, rng, ctx)
                at = int(rng.integers(0, len(lines) + 1))
                detail = f"value {r['valueQuantity']['value']} {r['valueQuantity']['unit']}"
            out.append(Insert(at, payload or _dumps(r), kind, table, detail))
        return out

    def _impossible(self, j: int, rng: np.random.Generator, ctx: dict) -> dict:
        final = ctx["final"]
        vi = int(final[(j * 7919) % final.size])
        tb, numbers = ctx["tb"], ctx["numbers"]
        owner = int(tb["visits"]["owner"][vi])
        concept = int(rng.choice(list(fl.IMPOSSIBLE)))
        coding = self._coding("labs", np.array([concept]), numbers[[owner]])[0]
        _, unit, num = format_values(np.array([concept]), np.array([fl.IMPOSSIBLE[concept]]), None)
        pid = patient_ids(self.spec.site, numbers[[owner]])[0]
        vid = visit_ids(self.spec.site, numbers[[owner]], tb["visits"]["seq"][[vi]])[0]
        when = format_dates(tb["visits"]["start"][[vi]], "%Y-%m-%d", "")[0]
        return {
            "resourceType": "Observation",
            "id": f"lab-{self.chunk}-x{j}",
            "status": "final",
            "code": {"coding": [coding]},
            "subject": {"reference": f"Patient/{pid}"},
            "encounter": {"reference": f"Encounter/{vid}"},
            "effectiveDateTime": when,
            "valueQuantity": {
                "value": float(num[0]),
                "unit": unit[0],
                "system": self.spec.units_system,
                "code": unit[0],
            },
        }

    def close(self) -> dict[str, int]:
        """Close all files; return lines per file."""
        for f in self.files.values():
            f.close()
        return {f.name: f.lines for f in self.files.values()}


def d(days: np.ndarray) -> np.ndarray:
    """ISO dates (FHIR ``date``); missing dates become empty strings."""
    return format_dates(days, "%Y-%m-%d", "")


@cache
def _code_vocabulary(vocabs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in reversed(vocabs):
        out.update(dict.fromkeys(source_to_standard(v)["source_code"], v))
    return out


def _first_coding(r: dict) -> dict:
    key = "medicationCodeableConcept" if "medicationCodeableConcept" in r else "code"
    return r[key]["coding"][0]


def _iso(text: str) -> dt.date:
    return dt.date.fromisoformat(text)
