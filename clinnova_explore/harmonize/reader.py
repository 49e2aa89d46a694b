"""Stream a delimited native export file into Arrow tables, one chunk at a time.

Every physical record keeps its 1-based starting line number (header = line 1), its raw text,
the number of fields found and, when the bytes are invalid in the declared encoding, a
description of the first bad byte. Field values stay strings; parsing happens in DuckDB.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from clinnova_explore.harmonize.errors import HarmonizeError

__all__ = ["CHUNK_ROWS", "SURROGATE", "bad_byte", "escape", "read_delimited", "read_header"]

CHUNK_ROWS = 200_000
SURROGATE = re.compile("[\udc80-\udcff]")
csv.field_size_limit(1 << 24)


def bad_byte(raw: str, encoding: str, fields: list[str], header: list[str]) -> str:
    """Describe the first byte of ``raw`` that is invalid in ``encoding``."""
    m = SURROGATE.search(raw)
    assert m is not None
    pos = m.start()
    byte = ord(raw[pos]) - 0xDC00
    plain = "utf-8" if encoding.lower().replace("_", "-") == "utf-8-sig" else encoding
    offset = len(raw[:pos].encode(plain, "surrogateescape"))
    field = ""
    for i, value in enumerate(fields):
        if SURROGATE.search(value):
            name = escape(header[i]) if i < len(header) else f"#{i + 1}"
            field = f", field {name!r}"
            break
    return (f"byte 0x{byte:02X} at byte offset {offset} (column {pos + 1}{field}) "
            f"is not valid {encoding}")


def escape(raw: str) -> str:
    """Raw text with invalid bytes shown as ``\\xNN`` so it can be stored as UTF-8."""
    if not SURROGATE.search(raw):
        return raw
    return SURROGATE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", raw)


def read_header(path: Path, encoding: str, delimiter: str) -> list[str]:
    """Read and check the header row; raise :class:`HarmonizeError` if unusable."""
    if not path.is_file():
        raise HarmonizeError(f"{path}: file not found; check the export folder and the site spec")
    try:
        with path.open(encoding=encoding, errors="surrogateescape", newline="") as fh:
            header = next(csv.reader(fh, delimiter=delimiter), None)
    except (OSError, csv.Error) as exc:
        raise HarmonizeError(f"{path}: line 1: cannot read the header: {exc}") from None
    if not header:
        raise HarmonizeError(f"{path}: line 1: the file is empty; expected a header row")
    joined = delimiter.join(header)
    if SURROGATE.search(joined):
        detail = bad_byte(joined, encoding, header, header)
        raise HarmonizeError(f"{path}: line 1: header is not valid {encoding}: {detail}; "
                             "re-export the file in the encoding the site spec declares")
    header = [h.strip() for h in header]
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    return header


def read_delimited(
    path: Path, encoding: str, delimiter: str, columns: dict[str, str]
) -> Iterator[pa.Table]:
    """Yield chunks of a delimited file as Arrow tables of strings.

    Parameters
    ----------
    path
        The native file.
    encoding, delimiter
        As declared by the site spec.
    columns
        Logical field -> native column name; every native column must be in the header.

    Yields
    ------
    pyarrow.Table
        Columns ``_line`` (int64), ``_raw``, ``_nf`` (fields found), ``_enc`` (invalid byte
        description or null) and one string column per logical field (null when the record
        has the wrong number of fields or invalid bytes).

    Raises
    ------
    HarmonizeError
        If the file is missing, its header unreadable or lacking a spec column.
    """
    header = read_header(path, encoding, delimiter)
    index = {}
    for logical, native in columns.items():
        if native not in header:
            col = len(delimiter.join(header)) + 1
            raise HarmonizeError(
                f"{path}: line 1, column {col}: header lacks column {native!r} "
                f"(logical field {logical!r}); found {header}. Fix the export or the site spec.")
        index[logical] = header.index(native)
    n = len(header)
    names = list(columns)
    picks = [index[f] for f in names]
    consumed: list[str] = []

    def lines() -> Iterator[str]:
        for ln in fh:
            consumed.append(ln)
            yield ln

    with path.open(encoding=encoding, errors="surrogateescape", newline="") as fh:
        reader = csv.reader(lines(), delimiter=delimiter)
        next(reader)
        line_no = 1 + len(consumed)
        consumed.clear()
        buf_line: list[int] = []
        buf_raw: list[str] = []
        buf_nf: list[int] = []
        buf_enc: list[str | None] = []
        buf_rows: list[tuple[str | None, ...]] = []
        empty = (None,) * len(names)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise HarmonizeError(f"{path}: line {line_no}: {exc}") from None
            raw = "".join(consumed).rstrip("\r\n")
            start = line_no
            line_no += len(consumed)
            consumed.clear()
            enc = None
            if SURROGATE.search(raw):
                enc = bad_byte(raw, encoding, row, header)
                raw = escape(raw)
                fields = empty
            elif len(row) == n:
                fields = tuple([row[i] for i in picks])
            else:
                fields = empty
            buf_line.append(start)
            buf_raw.append(raw)
            buf_nf.append(len(row))
            buf_enc.append(enc)
            buf_rows.append(fields)
            if len(buf_line) >= CHUNK_ROWS:
                yield _table(names, buf_line, buf_raw, buf_nf, buf_enc, buf_rows)
                buf_line, buf_raw, buf_nf, buf_enc, buf_rows = [], [], [], [], []
        yield _table(names, buf_line, buf_raw, buf_nf, buf_enc, buf_rows)


def _table(names: list[str], line: list[int], raw: list[str], nf: list[int],
           enc: list[str | None], rows: list[tuple[str | None, ...]]) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    data = {
        "_line": pa.array(line, pa.int64()),
        "_raw": pa.array(raw, pa.string()),
        "_nf": pa.array(nf, pa.int32()),
        "_enc": pa.array(enc, pa.string()),
    }
    for name, col in zip(names, cols, strict=True):
        data[name] = pa.array(col, pa.string())
    return pa.table(data)
