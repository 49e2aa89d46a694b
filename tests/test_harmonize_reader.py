"""The fast paths of harmonization keep every record, line number and verdict exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinnova_explore.harmonize import reader
from clinnova_explore.harmonize.fhir_validate import ResourceValidator

TRICKY = (
    b"id;name;note\r\n"             # 1 header
    b"1;plain;x\r\n"                # 2
    b'2;"quoted; with delimiter";y\n'   # 3
    b'3;"two\nlines";z\n'           # 4-5 one record over two lines
    b"\n"                           # 6 blank: no fields
    b"4;too;many;fields\r"          # 7 lone CR ending
    b"5;caf\xe9;w\n"                # 8 invalid UTF-8 byte
    b'6;"three\n;\nlines";v\n'      # 9-11
    b"7;last;u"                     # 12 no final newline
)


def _rows(path: Path) -> list[tuple]:
    cols = {"id": "id", "name": "name", "note": "note"}
    out = []
    for chunk in reader.read_delimited(path, "utf-8", ";", cols):
        out.extend(zip(*(chunk.column(c).to_pylist() for c in
                         ("_line", "_nf", "id", "name", "note", "_raw")), strict=True))
    return out


@pytest.mark.parametrize("chunk", [2, 3, 200_000])
def test_lines_fields_and_raw_text_are_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             chunk: int) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(TRICKY)
    monkeypatch.setattr(reader, "CHUNK_ROWS", chunk)   # records cross chunk boundaries
    rows = _rows(path)
    assert rows == [
        (2, 3, "1", "plain", "x", "1;plain;x"),
        (3, 3, "2", "quoted; with delimiter", "y", '2;"quoted; with delimiter";y'),
        (4, 3, "3", "two\nlines", "z", '3;"two\nlines";z'),
        (6, 0, None, None, None, ""),
        (7, 4, None, None, None, "4;too;many;fields"),
        (8, 3, None, None, None, "5;caf\\xe9;w"),
        (9, 3, "6", "three\n;\nlines", "v", '6;"three\n;\nlines";v'),
        (12, 3, "7", "last", "u", "7;last;u"),
    ]


def test_invalid_byte_is_described(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(TRICKY)
    enc = [e for chunk in reader.read_delimited(path, "utf-8", ";", {"id": "id"})
           for e in chunk.column("_enc").to_pylist() if e is not None]
    assert enc == ["byte 0xE9 at byte offset 5 (column 6, field 'name') is not valid utf-8"]


def _obs(oid: str, date: str, value: object) -> tuple[dict, str]:
    res = {"resourceType": "Observation", "id": oid, "status": "final",
           "subject": {"reference": "Patient/p1"},
           "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
           "effectiveDateTime": date, "valueQuantity": {"value": value, "unit": "g/dL"}}
    return res, json.dumps(res, separators=(",", ":"))


def test_cached_shape_still_checks_each_volatile_value() -> None:
    v = ResourceValidator()
    assert v.validate(*_obs("o-1", "2020-01-02", 13.5)) is None
    assert v.validate(*_obs("o-2", "2021-03-04", 12)) is None
    assert v.full_validations == 1          # one shape, validated once
    bad_id = v.validate(*_obs("o 3", "2021-03-04", 12))
    bad_date = v.validate(*_obs("o-4", "2021-13-45", 12))
    bad_value = v.validate(*_obs("o-5", "2021-03-04", "twelve"))
    assert bad_id is not None and bad_id.startswith("element Observation.id:")
    assert bad_date is not None and "Observation.effectiveDateTime" in bad_date
    assert bad_value is not None and "Observation.valueQuantity.value" in bad_value
    # a JSON escape in a volatile value is judged by the full model, and it is valid here
    res, _ = _obs("o-6", "2021-03-04", 12)
    res["subject"]["display"] = 'Dr "Who"'
    assert v.validate(res, json.dumps(res, separators=(",", ":"))) is None
