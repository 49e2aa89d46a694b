"""FHIR R4 NDJSON bulk exports and Bundles -> logical rows in the common raw layout.

Each resource is parsed with :mod:`json` (or ``orjson`` when installed; a parse error
quarantines the line as ``invalid_json`` with the column), validated with
``fhir.resources.R4B`` (a validation error quarantines it as ``invalid_resource`` naming the
element path) and flattened to the logical fields of its table kind (``spec.LOGICAL_FIELDS``):

=====================  ===========  ==================================================
resource               kind         fields
=====================  ===========  ==================================================
Patient                patients     id, birthDate, gender, deceasedDateTime
Encounter              visits       id, subject, class.code, period.start/end
Condition              diagnoses    subject, encounter, code, onsetDateTime|recordedDate
MedicationStatement    medications  subject, medication[x], effective[x]
MedicationRequest      medications  subject, medication[x], authoredOn, validityPeriod.end
Observation + value    labs         subject, encounter, code, effective[x], valueQuantity
Observation, no value  events       subject, encounter, code, effective[x]
Procedure              procedures   subject, encounter, code, performed[x]
=====================  ===========  ==================================================

**Codings.** Every coding whose system is in ``spec.systems`` is carried through, in the
priority order the spec declares (the order of ``spec.systems``, not of the resource):
``_vocab`` lists their vocabularies (``ICD10|SNOMED``), ``code`` holds the first one's code and,
when there are several, ``_codes`` holds all codes in the same order (joined by
:data:`CODE_SEP`). The code mapping (:mod:`.load`) then takes the first coding that maps to a
standard concept, and its code as source value; if none maps, the first known coding stays.
With no known coding, the first coding is kept with an empty vocabulary, so it loads with
concept 0. Partial FHIR dates are completed to the first day (``2015`` -> ``2015-01-01``).

**Memory.** The collector hands its rows to a ``sink`` (the site database) every
:data:`FLUSH_ROWS` resources, so a site of any size is read in bounded memory.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa

from clinnova_explore.harmonize.errors import HarmonizeError
from clinnova_explore.harmonize.fhir_validate import ResourceValidator
from clinnova_explore.harmonize.reader import SURROGATE, bad_byte, escape
from clinnova_explore.harmonize.spec import LOGICAL_FIELDS, FhirSpec

orjson: Any
try:
    import orjson
except ImportError:  # pragma: no cover - optional speed-up
    orjson = None

__all__ = [
    "CODE_SEP",
    "DEFAULT_KIND",
    "FLUSH_ROWS",
    "RAW_COLUMNS",
    "FhirCollector",
    "bundle_date",
    "load_bundle",
    "read_bundle",
    "read_ndjson",
]

RAW_COLUMNS = (
    "source_table",
    "source_file",
    "_line",
    "_raw",
    "_pre",
    "_detail",
    "_vocab",
    "_codes",
)
#: Separator of the codes in ``_codes`` (a control character no code contains).
CODE_SEP = "\x1f"
#: Resources held in Python before they are handed to the sink.
FLUSH_ROWS = 100_000
Sink = Callable[[str, pa.Table], None]

#: The table kind a resource type feeds (Observation: labs, or events when it has no value).
DEFAULT_KIND = {
    "Patient": "patients",
    "Encounter": "visits",
    "Condition": "diagnoses",
    "MedicationStatement": "medications",
    "MedicationRequest": "medications",
    "Observation": "labs",
    "Procedure": "procedures",
}


def _ref(value: Any) -> str | None:
    ref = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(ref, str) or not ref:
        return None
    if ref.startswith("urn:uuid:"):
        return ref[len("urn:uuid:") :]
    return ref.rsplit("/", 1)[-1]


def _date(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    if len(value) == 4:
        return value + "-01-01"
    if len(value) == 7:
        return value + "-01"
    return value[:10]


def _period(res: dict[str, Any], key: str, end: bool = False) -> str | None:
    period = res.get(key)
    return _date(period.get("end" if end else "start")) if isinstance(period, dict) else None


class FhirCollector:
    """Flatten resources per table kind in the common raw layout, flushing them to a sink.

    Parameters
    ----------
    spec
        The FHIR site spec (coding systems, unit system, value maps).
    sink
        Called with (table kind, Arrow table of strings) whenever :data:`FLUSH_ROWS`
        resources are pending, and by :meth:`flush`.
    """

    def __init__(self, spec: FhirSpec, sink: Sink) -> None:
        self.spec = spec
        self.sink = sink
        self.validator = ResourceValidator()
        self.medications: dict[str, dict[str, Any] | None] = {}
        self.priority = {system: i for i, system in enumerate(spec.systems)}
        self.pending = 0
        self.cols: dict[str, dict[str, list[Any]]] = {
            kind: {c: [] for c in (*RAW_COLUMNS, *fields)}
            for kind, fields in LOGICAL_FIELDS.items()
        }

    def _coding(self, concept: Any) -> tuple[str | None, str, str | None, str | None]:
        """(code, vocabularies, label, all codes) of a CodeableConcept."""
        if not isinstance(concept, dict):
            return None, "", None, None
        codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
        known = sorted(
            (c for c in codings if c.get("system") in self.priority),
            key=lambda c: self.priority[c["system"]],
        )
        if not known:
            chosen = codings[0] if codings else {}
            return chosen.get("code"), "", chosen.get("display") or concept.get("text"), None
        vocab = "|".join(self.spec.systems[c["system"]] for c in known)
        codes = None
        if len(known) > 1:
            codes = CODE_SEP.join(str(c.get("code") or "") for c in known)
        first = known[0]
        return first.get("code"), vocab, first.get("display") or concept.get("text"), codes

    def _flatten(self, res: dict[str, Any]) -> tuple[str, tuple[str, str | None], dict[str, Any]]:
        rtype = res["resourceType"]
        subject = _ref(res.get("subject") or res.get("patient"))
        encounter = _ref(res.get("encounter") or res.get("context"))
        if rtype == "Patient":
            return (
                "patients",
                ("", None),
                {
                    "patient_id": res.get("id"),
                    "birth_date": _date(res.get("birthDate")),
                    "sex": res.get("gender"),
                    "death_date": _date(res.get("deceasedDateTime")),
                },
            )
        if rtype == "Encounter":
            cls = res.get("class")
            cls = cls[0] if isinstance(cls, list) and cls else cls
            return (
                "visits",
                ("", None),
                {
                    "visit_id": res.get("id"),
                    "patient_id": subject,
                    "visit_type": cls.get("code") if isinstance(cls, dict) else None,
                    "start_date": _period(res, "period"),
                    "end_date": _period(res, "period", True),
                },
            )
        if rtype in ("MedicationStatement", "MedicationRequest"):
            concept = res.get("medicationCodeableConcept")
            if concept is None:
                concept = self.medications.get(_ref(res.get("medicationReference")) or "")
            code, vocab, label, codes = self._coding(concept)
            if rtype == "MedicationStatement":
                start = _date(res.get("effectiveDateTime")) or _period(res, "effectivePeriod")
                end = _period(res, "effectivePeriod", True)
            else:
                start = _date(res.get("authoredOn"))
                disp = res.get("dispenseRequest") or {}
                end = _period(disp, "validityPeriod", True) if isinstance(disp, dict) else None
            return (
                "medications",
                (vocab, codes),
                {
                    "patient_id": subject,
                    "code": code,
                    "label": label,
                    "start_date": start,
                    "end_date": end,
                },
            )
        code, vocab, label, codes = self._coding(res.get("code"))
        row = {"patient_id": subject, "visit_id": encounter, "code": code, "label": label}
        if rtype == "Condition":
            row["date"] = (
                _date(res.get("onsetDateTime"))
                or _period(res, "onsetPeriod")
                or _date(res.get("recordedDate"))
            )
            return "diagnoses", (vocab, codes), row
        if rtype == "Procedure":
            row["date"] = _date(res.get("performedDateTime")) or _period(res, "performedPeriod")
            return "procedures", (vocab, codes), row
        row["date"] = (
            _date(res.get("effectiveDateTime"))
            or _period(res, "effectivePeriod")
            or _date(res.get("issued"))
        )
        quantity = res.get("valueQuantity")
        if not isinstance(quantity, dict):
            return "events", (vocab, codes), row
        unit = quantity.get("code") if quantity.get("system") == self.spec.units_system else None
        value = quantity.get("value")
        row["value"] = None if value is None else repr(value)
        row["unit"] = unit or quantity.get("unit")
        return "labs", (vocab, codes), row

    def _append(
        self,
        kind: str,
        base: tuple[Any, ...],
        coding: tuple[str, str | None] | None,
        values: dict[str, Any],
    ) -> None:
        cols = self.cols[kind]
        for name, value in zip(RAW_COLUMNS, (*base, *(coding or (None, None))), strict=True):
            cols[name].append(value)
        for name in LOGICAL_FIELDS[kind]:
            value = values.get(name)
            cols[name].append(None if value is None else str(value))
        self.pending += 1
        if self.pending >= FLUSH_ROWS:
            self.flush()

    def add(
        self,
        rtype: str,
        file: str,
        line: int,
        raw: str,
        resource: Any,
        error: tuple[str, str] | None = None,
    ) -> None:
        """Add one resource (or a quarantined line) read from ``file`` at ``line``."""
        kind = DEFAULT_KIND.get(rtype, "labs")
        if error is None and not isinstance(resource, dict):
            error = ("invalid_resource", "the line is not a JSON object")
        if error is None and resource.get("resourceType") != rtype:
            error = (
                "invalid_resource",
                f"element resourceType: expected {rtype!r}, found {resource.get('resourceType')!r}",
            )
        if error is None:
            problem = self.validator.validate(resource, raw)
            if problem is not None:
                error = ("invalid_resource", problem)
        if error is not None:
            detail = f"{error[1]} (line {line})"
            self._append(kind, (rtype, file, line, raw, error[0], detail), None, {})
            return
        kind, coding, values = self._flatten(resource)
        self._append(kind, (rtype, file, line, raw, None, None), coding, values)

    def flush(self) -> None:
        """Hand every pending row to the sink (one Arrow table per kind) and forget them."""
        for kind, cols in self.cols.items():
            if not cols["_line"]:
                continue
            data = {
                name: pa.array(values, pa.int64() if name == "_line" else pa.string())
                for name, values in cols.items()
            }
            for values in cols.values():
                values.clear()
            self.sink(kind, pa.table(data))
        self.pending = 0


def _loads(text: str) -> Any:
    """Parse JSON text like :func:`json.loads` (errors and all), with orjson when installed."""
    if orjson is not None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # json.loads decides: it accepts NaN and huge integers, and words the error
    return json.loads(text)


def read_ndjson(collector: FhirCollector, path: Path, rtype: str) -> int:
    """Read one NDJSON file of ``rtype`` resources; returns the number of lines read."""
    if not path.is_file():
        raise HarmonizeError(
            f"{path}: file not found; the site spec lists it for {rtype} "
            "resources. Check the export folder."
        )
    count = 0
    enc = collector.spec.encoding
    try:
        fh = path.open(encoding=enc, errors="surrogateescape", newline="")
        with fh:
            for line_no, text in enumerate(fh, start=1):
                raw = text.rstrip("\r\n")
                count += 1
                if SURROGATE.search(raw):
                    problem = bad_byte(raw, enc, [], [])
                    collector.add(
                        rtype, path.name, line_no, escape(raw), None, ("invalid_encoding", problem)
                    )
                    continue
                if not raw.strip():
                    collector.add(
                        rtype,
                        path.name,
                        line_no,
                        raw,
                        None,
                        ("invalid_json", "empty line, expected a JSON resource"),
                    )
                    continue
                try:
                    resource = _loads(raw)
                except json.JSONDecodeError as exc:
                    collector.add(
                        rtype,
                        path.name,
                        line_no,
                        raw,
                        None,
                        ("invalid_json", f"JSON error at column {exc.colno}: {exc.msg}"),
                    )
                    continue
                collector.add(rtype, path.name, line_no, raw, resource)
    except OSError as exc:
        raise HarmonizeError(f"{path}: line {count + 1}: cannot read: {exc}") from None
    collector.flush()
    return count


def load_bundle(path: Path) -> dict[str, Any]:
    """Parse a FHIR Bundle JSON file.

    Raises
    ------
    HarmonizeError
        If the file cannot be read, is not JSON (naming line and column) or not a Bundle.
    """
    try:
        bundle = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise HarmonizeError(f"{path}: cannot read the bundle: {exc}") from None
    except json.JSONDecodeError as exc:
        raise HarmonizeError(
            f"{path}: line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}"
        ) from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise HarmonizeError(f"{path}: line 1, column 1: expected a FHIR Bundle resource")
    return bundle


def bundle_date(bundle: dict[str, Any], path: Path) -> dt.date | None:
    """The date part of ``Bundle.timestamp`` as written (no time zone shift); None if absent.

    Raises
    ------
    HarmonizeError
        If the timestamp does not start with an ISO date.
    """
    stamp = bundle.get("timestamp")
    if stamp is None:
        return None
    try:
        return dt.date.fromisoformat(str(stamp)[:10])
    except ValueError:
        raise HarmonizeError(
            f"{path}: element Bundle.timestamp: {stamp!r} is not a FHIR "
            "instant (YYYY-MM-DDThh:mm:ss+zz:zz)"
        ) from None


def read_bundle(
    collector: FhirCollector, path: Path, bundle: dict[str, Any] | None = None
) -> dict[str, int]:
    """Read a FHIR Bundle JSON file; ``source_line`` is the 1-based entry index.

    ``bundle`` is the parsed file when the caller has it already (:func:`load_bundle`).
    Returns the number of entries skipped per resource type this harmonizer does not map
    (Composition, Practitioner, ...).
    """
    if bundle is None:
        bundle = load_bundle(path)
    entries: Iterable[Any] = bundle.get("entry") or []
    resources = [
        (i, e.get("resource")) for i, e in enumerate(entries, start=1) if isinstance(e, dict)
    ]
    for _, res in resources:
        if isinstance(res, dict) and res.get("resourceType") == "Medication" and "id" in res:
            collector.medications[res["id"]] = res.get("code")
    skipped: dict[str, int] = {}
    for index, res in resources:
        rtype = res.get("resourceType") if isinstance(res, dict) else None
        if rtype not in DEFAULT_KIND:
            skipped[str(rtype)] = skipped.get(str(rtype), 0) + 1
            continue
        raw = json.dumps(res, ensure_ascii=False, separators=(",", ":"))
        collector.add(rtype, path.name, index, raw, res)
    collector.flush()
    return skipped
