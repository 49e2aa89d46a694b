"""The fast paths of harmonization keep every record, line number and verdict exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinnova_explore.harmonize import reader
from clinnova_explore.harmonize.fhir_validate import ResourceValidator

TRICKY = (
    b"id;name;note\r\n"  # 1 header
    b"1;plain;x\r\n"  # 2
    b'2;"quoted; with delimiter";y\n'  # 3
    b'3;"two\nlines";z\n'  # 4-5 one record over two lines
    b"\n"  # 6 blank: no fields
    b"4;too;many;fields\r"  # 7 lone CR ending
    b"5;caf\xe9;w\n"  # 8 invalid UTF-8 byte
    b'6;"three\n;\nlines";v\n'  # 9-11
    b"7;last;u"  # 12 no final newline
)


def _rows(path: Path) -> list[tuple]:
    cols = {"id": "id", "name": "name", "note": "note"}
    out = []
    for chunk in reader.read_delimited(path, "utf-8", ";", cols):
        out.extend(
            zip(
                *(
                    chunk.column(c).to_pylist()
                    for c in ("_line", "_nf", "id", "name", "note", "_raw")
                ),
                strict=True,
            )
        )
    return out


@pytest.mark.parametrize("chunk", [2, 3, 200_000])
def test_lines_fields_and_raw_text_are_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(TRICKY)
    monkeypatch.setattr(reader, "CHUNK_ROWS", chunk)  # records cross chunk boundaries
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


STRAY = b'a;b;c\n1;2;3\n4;"5;6\n7;8;9\n10;11;12\n'  # line 3 opens a quote it never closes
# the stray quote at line 3 runs on to the quote of line 5; line 5-6 is a real quoted record
STRAY_THEN_QUOTED = b'a;b;c\n1;2;3\n4;"5;6\n7;8;9\n10;"x\ny";12\n13;14;15\n'


def _records(path: Path) -> list[tuple]:
    out = []
    for chunk in reader.read_delimited(path, "utf-8", ";", {"a": "a", "b": "b", "c": "c"}):
        out.extend(
            zip(
                *(chunk.column(c).to_pylist() for c in ("_line", "_nl", "a", "b", "c", "_raw")),
                strict=True,
            )
        )
    return out


@pytest.mark.parametrize("chunk", [1, 2, 200_000])
def test_stray_quote_quarantines_only_its_own_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(reader, "CHUNK_ROWS", chunk)
    path = tmp_path / "stray.csv"
    path.write_bytes(STRAY)
    assert _records(path) == [
        (2, 1, "1", "2", "3", "1;2;3"),
        (3, 1, None, None, None, '4;"5;6'),
        (4, 1, "7", "8", "9", "7;8;9"),
        (5, 1, "10", "11", "12", "10;11;12"),
    ]
    quote = [
        q
        for c in reader.read_delimited(path, "utf-8", ";", {"a": "a"})
        for q in c.column("_quote").to_pylist()
        if q is not None
    ]
    assert len(quote) == 1
    assert quote[0].startswith("an unterminated quote starts at line 3, column 3:")
    path.write_bytes(STRAY_THEN_QUOTED)
    assert _records(path) == [
        (2, 1, "1", "2", "3", "1;2;3"),
        (3, 1, None, None, None, '4;"5;6'),
        (4, 1, "7", "8", "9", "7;8;9"),
        (5, 2, "10", "x\ny", "12", '10;"x\ny";12'),  # a real multi-line record stays whole
        (7, 1, "13", "14", "15", "13;14;15"),
    ]


@pytest.mark.parametrize(
    "data",
    [TRICKY, STRAY, STRAY_THEN_QUOTED, b"a;b;c\r\n1;2;3\r\r\n"],
    ids=["tricky", "stray", "stray_then_quoted", "cr_lf_and_lone_cr"],
)
def test_every_physical_line_belongs_to_one_record(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    physical = len(data.splitlines())  # bytes split at LF, CR LF and lone CR
    assert reader.count_lines(path) == physical
    cols = {"a": "a"} if data is not TRICKY else {"id": "id"}
    spans = {}
    for chunk in reader.read_delimited(path, "utf-8", ";", cols):
        spans.update(
            zip(chunk.column("_line").to_pylist(), chunk.column("_nl").to_pylist(), strict=True)
        )
    covered = sorted(line + k for line, n in spans.items() for k in range(n))
    assert covered == list(range(2, physical + 1))


def test_open_quote_column() -> None:
    assert reader.open_quote('4;"5;6', ";") == 3
    assert reader.open_quote('"a";"b""', ";") == 5  # "b"" : the doubled quote is inside
    assert reader.open_quote('"a";"b"""', ";") is None  # "b""" closes
    assert reader.open_quote('x"y;"z', ";") == 5  # a quote inside a field is plain text
    assert reader.open_quote("1;2;3", ";") is None


def test_invalid_byte_is_described(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(TRICKY)
    enc = [
        e
        for chunk in reader.read_delimited(path, "utf-8", ";", {"id": "id"})
        for e in chunk.column("_enc").to_pylist()
        if e is not None
    ]
    assert enc == ["byte 0xE9 at byte offset 5 (column 6, field 'name') is not valid utf-8"]


def _obs(oid: str, date: str, value: object) -> tuple[dict, str]:
    res = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "effectiveDateTime": date,
        "valueQuantity": {"value": value, "unit": "g/dL"},
    }
    return res, json.dumps(res, separators=(",", ":"))


def test_cached_shape_still_checks_each_volatile_value() -> None:
    v = ResourceValidator()
    assert v.validate(*_obs("o-1", "2020-01-02", 13.5)) is None
    assert v.validate(*_obs("o-2", "2021-03-04", 12)) is None
    assert v.full_validations == 1  # one shape, validated once
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
