"""Writing a delimited-text site export (CSV/TSV/pipe) exactly as its site spec describes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clinnova_explore.harmonize.spec import SiteSpec
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
from clinnova_explore.synth.records import FINAL, INPATIENT, Tables

__all__ = ["CsvSiteWriter", "concepts_of"]

_VISIT_TYPES = {INPATIENT: "inpatient", 1: "outpatient", 2: "emergency"}
_BAD_DATES = {
    "%d.%m.%Y": ("31.02.2019", "30.02.2021", "00.13.2018", "32.01.2020"),
    "%d/%m/%Y": ("31/02/2019", "30/02/2021", "00/13/2018", "32/01/2020"),
    "%Y-%m-%d": ("2019-13-45", "2021-02-30", "2018-00-12", "2020-04-31"),
}
_BAD_NUMBERS = ("n.a.", "1,2,3", "?", "pos.", "1.2.3")


def concepts_of(table: str) -> tuple[int, ...]:
    """Every standard concept the generator can write into a logical table."""
    from clinnova_explore.cdm import concepts as c
    from clinnova_explore.synth.params import EFFECTS

    if table == "diagnoses":
        return (
            c.RRMS,
            c.SPMS,
            c.PPMS,
            c.RHEUMATOID_ARTHRITIS,
            c.SEROPOSITIVE_RA,
            c.CROHNS_DISEASE,
            c.ULCERATIVE_COLITIS,
            c.PNEUMONIA,
            c.SEPSIS,
            c.HYPERTENSION,
            c.TYPE_2_DIABETES,
            c.DEPRESSION,
        )
    if table == "medications":
        drugs = {c.METHOTREXATE, c.MESALAMINE, c.AZATHIOPRINE, c.PREDNISOLONE}
        for e in EFFECTS.values():
            drugs |= set(e.exposed) | set(e.reference)
        return tuple(sorted(drugs))
    if table == "labs":
        return (c.EDSS, c.DAS28_CRP, c.CRP, c.FECAL_CALPROTECTIN, c.HEMOGLOBIN, c.BODY_WEIGHT)
    if table == "procedures":
        return (c.COLECTOMY, c.BOWEL_RESECTION, c.MRI_BRAIN)
    if table == "events":
        return (c.MS_RELAPSE, c.RA_FLARE, c.IBD_FLARE)
    raise KeyError(table)


def _invert(values: dict[str, dict[str, str]], field: str) -> dict[str, str]:
    return {logical: native for native, logical in values.get(field, {}).items()}


class CsvSiteWriter:
    """Streams one delimited-text site export, chunk by chunk, with injected faults."""

    def __init__(self, spec: SiteSpec, directory: Path) -> None:
        self.spec = spec
        self.null = spec.null_values[-1] if spec.null_values else ""
        directory.mkdir(parents=True, exist_ok=True)
        self.files = {
            t: NativeFile(
                directory / ts.file, spec.encoding, spec.delimiter, list(ts.columns.values())
            )
            for t, ts in spec.tables.items()
        }
        self.faults: list[dict] = []

    def _dates(self, days: np.ndarray) -> np.ndarray:
        return format_dates(days, self.spec.date_format, self.null)

    def _columns(self, numbers: np.ndarray, tb: Tables) -> dict[str, dict[str, np.ndarray]]:
        spec = self.spec
        pid = patient_ids(spec.site, numbers)
        v = tb["visits"]
        vid = visit_ids(spec.site, numbers[v["owner"]], v["seq"])
        sex = _invert(spec.tables["patients"].values, "sex")
        vt = _invert(spec.tables["visits"].values, "visit_type")
        pt = tb["patients"]
        cols: dict[str, dict[str, np.ndarray]] = {
            "patients": {
                "patient_id": pid,
                "birth_date": self._dates(pt["birth"]),
                "sex": np.where(pt["female"], sex["F"], sex["M"]).astype(object),
                "death_date": self._dates(pt["death"]),
            },
            "visits": {
                "visit_id": vid,
                "patient_id": pid[v["owner"]],
                "visit_type": np.array([vt[_VISIT_TYPES[int(t)]] for t in v["type"]], dtype=object),
                "start_date": self._dates(v["start"]),
                "end_date": self._dates(v["end"]),
            },
        }
        for table in ("diagnoses", "medications", "labs", "procedures", "events"):
            t, ts = tb[table], spec.tables[table]
            ct = code_table(concepts_of(table), ts.vocabulary, ts.code_format == "undotted")
            code, label = ct.pick(t["concept"], numbers[t["owner"]])
            out = {"patient_id": pid[t["owner"]], "code": code, "label": label}
            if table == "medications":
                out["start_date"] = self._dates(t["start"])
                out["end_date"] = self._dates(t["end"])
            else:
                out["visit_id"] = vid[t["visit"]]
                out["date"] = self._dates(t["date"])
            if table == "labs":
                out["value"], out["unit"], _ = format_values(
                    t["concept"], t["value"], spec.units, spec.decimal
                )
            cols[table] = out
        return cols

    def write_chunk(
        self, numbers: np.ndarray, tb: Tables, rng: np.random.Generator, first_chunk: bool
    ) -> None:
        """Write one chunk of persons (``numbers`` are their site-wide person numbers)."""
        cols = self._columns(numbers, tb)
        ctx = self._context(numbers, tb, cols)
        rows_by_table = {}
        for table, ts in self.spec.tables.items():
            order = [cols[table][f] for f in ts.columns]
            rows_by_table[table] = list(zip(*order, strict=True))
        kinds = dict(fl.CSV_KINDS)
        if self.spec.encoding.lower().replace("_", "-") not in {"utf-8", "utf-8-sig", "utf8"}:
            kinds.pop("invalid_encoding")
        plan = fl.plan_faults(
            rng,
            kinds,
            {t: len(r) for t, r in rows_by_table.items() if t != "patients"},
            first_chunk,
        )
        for table, rows in rows_by_table.items():
            inserts = self._inserts(table, rows, plan.get(table, []), rng, ctx)
            self.faults += self.files[table].write(rows, inserts, self.spec.site)

    def _context(self, numbers: np.ndarray, tb: Tables, cols: dict) -> dict:
        v = tb["visits"]
        final = np.nonzero(v["kind"] == FINAL)[0]
        lab_ts = self.spec.tables["labs"]
        ct = code_table(concepts_of("labs"), lab_ts.vocabulary)
        return {
            "final_pid": cols["visits"]["patient_id"][final],
            "final_vid": cols["visits"]["visit_id"][final],
            "final_date": cols["visits"]["start_date"][final],
            "final_number": numbers[v["owner"][final]],
            "birth": dict(
                zip(cols["patients"]["patient_id"], tb["patients"]["birth"], strict=True)
            ),
            "lab_codes": ct,
        }

    def _inserts(
        self, table: str, rows: list, kinds: list[str], rng: np.random.Generator, ctx: dict
    ) -> list[Insert]:
        if not kinds or not rows:
            return []
        spec, ts = self.spec, self.spec.tables[table]
        pos = {f: i for i, f in enumerate(ts.columns)}
        date_field = "start_date" if "start_date" in pos else "date"
        sources = rng.choice(len(rows), size=min(len(kinds), len(rows)), replace=False)
        finals = rng.permutation(len(ctx["final_pid"]))
        out: list[Insert] = []
        for j, kind in enumerate(kinds[: len(sources)]):
            src = int(sources[j])
            row = list(rows[src])
            at = int(rng.integers(src + 1, len(rows) + 1))
            detail = ""
            payload: list[str] | bytes = row
            if kind == "malformed_line":
                payload = [*row, row[-1]] if j % 2 else row[:-1]
                detail = f"{len(payload)} fields, expected {len(row)}"
            elif kind == "invalid_date":
                row[pos[date_field]] = str(rng.choice(_BAD_DATES[spec.date_format]))
                detail = f"{ts.columns[date_field]}={row[pos[date_field]]!r}"
            elif kind == "invalid_number":
                row[pos["value"]] = str(rng.choice(_BAD_NUMBERS))
                detail = f"{ts.columns['value']}={row[pos['value']]!r}"
            elif kind == "duplicate":
                detail = "exact copy of line {line}"
                out.append(Insert(at, row, kind, table, detail, source=src))
                continue
            elif kind == "invalid_encoding":
                row[pos["label"]] = row[pos["label"]] + " (é)"
                text = self.files[table]._csv([row]).rstrip("\n")
                payload = text.encode("latin-1", errors="replace")
                detail = "latin-1 byte 0xE9 in a UTF-8 file"
            elif kind == "unknown_person":
                n = UNKNOWN_PERSON_BASE + int(rng.integers(0, 999_999))
                row[pos["patient_id"]] = patient_ids(spec.site, np.array([n]))[0]
                if "visit_id" in pos:
                    row[pos["visit_id"]] = visit_ids(spec.site, np.array([n]), np.array([1]))[0]
                detail = f"{ts.columns['patient_id']}={row[pos['patient_id']]} not in patients"
            elif kind == "unmapped_code":
                row[pos["code"]] = unmapped_code(table, ts.vocabulary, ts.code_format == "undotted")
                detail = f"{ts.columns['code']}={row[pos['code']]!r}"
            elif kind == "end_before_start":
                start = _parse(row[pos["start_date"]], spec.date_format)
                row[pos["end_date"]] = self._dates(np.array([start - int(rng.integers(1, 60))]))[0]
                detail = f"{ts.columns['end_date']} before {ts.columns['start_date']}"
            elif kind == "date_out_of_range":
                birth = ctx["birth"][row[pos["patient_id"]]]
                day = (
                    int(birth) - int(rng.integers(30, 3000))
                    if j % 2
                    else 47482 + int(rng.integers(0, 365))
                )  # 2100-01-01 minus < 1 year
                row[pos[date_field]] = self._dates(np.array([day]))[0]
                detail = "before birth" if j % 2 else "after the data cut (2099)"
            elif kind == "impossible_value":
                k = finals[j % finals.size]
                concept = int(rng.choice(list(fl.IMPOSSIBLE)))
                code, label = ctx["lab_codes"].pick(
                    np.array([concept]), np.array([ctx["final_number"][k]])
                )
                texts, unit, num = format_values(
                    np.array([concept]),
                    np.array([fl.IMPOSSIBLE[concept]]),
                    spec.units,
                    spec.decimal,
                )
                values = {
                    "patient_id": ctx["final_pid"][k],
                    "visit_id": ctx["final_vid"][k],
                    "code": code[0],
                    "label": label[0],
                    "date": ctx["final_date"][k],
                    "value": texts[0],
                    "unit": unit[0],
                }
                payload = [values[f] for f in ts.columns]
                at = int(rng.integers(0, len(rows) + 1))
                detail = f"value {num[0]:g} {unit[0]}"
            out.append(Insert(at, payload, kind, table, detail))
        return out

    def close(self) -> dict[str, int]:
        """Close all files; return physical lines per file (header included)."""
        for f in self.files.values():
            f.close()
        return {f.name: f.lines for f in self.files.values()}


def _parse(text: str, fmt: str) -> int:
    import datetime as dt

    from clinnova_explore.synth.params import day

    return day(dt.datetime.strptime(text, fmt).date())
