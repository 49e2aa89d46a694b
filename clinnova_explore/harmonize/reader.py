"""Stream a delimited native export file into Arrow tables, one chunk at a time.

Every physical record keeps its 1-based starting line number (header = line 1), its raw text,
the number of fields found and, when the bytes are invalid in the declared encoding, a
description of the first bad byte. Field values stay strings; parsing happens in DuckDB.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

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
    with path.open(encoding=encoding, errors="surrogateescape", newline="") as fh:
        consumed: list[str] = []
        next(csv.reader(_recorded(iter(fh), consumed), delimiter=delimiter))
        line_no = 1 + len(consumed)
        first = True
        while True:
            lines = list(itertools.islice(fh, CHUNK_ROWS))
            if not lines and not first:
                break
            first = False
            plain, special, line_no = _split_chunk(path, fh, lines, line_no, delimiter)
            parts = [_plain_table(names, picks, n, delimiter, *plain)]
            if special[0]:
                parts.append(_special_table(names, picks, n, encoding, header, *special))
            table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
            yield table.sort_by("_line") if len(parts) > 1 else table
            if not lines:
                break


def _recorded(lines: Iterator[str], consumed: list[str]) -> Iterator[str]:
    for ln in lines:
        consumed.append(ln)
        yield ln


def _split_chunk(path: Path, fh: Iterator[str], lines: list[str], line_no: int,
                 delimiter: str) -> tuple[tuple[list[str], int, list[bool]],
                                          tuple[list[int], list[str], list[list[str]]], int]:
    """Split a chunk of physical lines into plain lines and parsed special records.

    A *plain* line has no quote character, NUL, invalid byte and is not blank: the CSV
    reader would give exactly ``line.rstrip("\r\n").split(delimiter)`` for it, so those are
    split in bulk by Arrow. Every other line starts a record parsed by :mod:`csv` (which may
    take further lines, from this chunk or beyond it). Returns (plain lines with a mask of the
    ones to use and the line number of ``lines[0]``), (line, raw text, fields) of each special
    record, and the line number after the chunk.
    """
    first = line_no
    blob = "".join(lines)
    odd = set()
    if '"' in blob or "\x00" in blob or SURROGATE.search(blob):
        odd = {k for k, ln in enumerate(lines)
               if '"' in ln or "\x00" in ln or SURROGATE.search(ln)}
    odd.update(k for k, ln in enumerate(lines) if ln.isspace())
    mask = [True] * len(lines)
    sp_line: list[int] = []
    sp_raw: list[str] = []
    sp_rows: list[list[str]] = []
    consumed: list[str] = []
    k_next = 0
    for k in sorted(odd):
        if k < k_next:
            continue  # taken by a multi-line record
        consumed.clear()
        rest = itertools.chain(map(lines.__getitem__, range(k, len(lines))), fh)
        try:
            row = next(csv.reader(_recorded(rest, consumed), delimiter=delimiter))
        except csv.Error as exc:
            raise HarmonizeError(f"{path}: line {first + k}: {exc}") from None
        sp_line.append(first + k)
        sp_raw.append("".join(consumed).rstrip("\r\n"))
        sp_rows.append(row)
        k_next = k + len(consumed)
        for j in range(k, min(k_next, len(lines))):
            mask[j] = False
    extra = max(0, k_next - len(lines))  # lines a record took from beyond the chunk
    return (lines, first, mask), (sp_line, sp_raw, sp_rows), first + len(lines) + extra


def _plain_table(names: list[str], picks: list[int], n: int, delimiter: str,
                 lines: list[str], first: int, mask: list[bool]) -> pa.Table:
    if not all(mask):
        lines = [ln if keep else "" for ln, keep in zip(lines, mask, strict=True)]
    keep = pa.array(mask, pa.bool_())
    raw = pc.utf8_rtrim(pa.array(lines, pa.string()), characters="\r\n").filter(keep)
    line = pa.array(range(first, first + len(mask)), pa.int64()).filter(keep)
    lists = pc.split_pattern(raw, delimiter)
    nf = pc.list_value_length(lists).cast(pa.int32())
    whole = pc.if_else(pc.equal(nf, n), lists, pa.scalar(None, lists.type))
    data = {"_line": line, "_raw": raw, "_nf": nf, "_enc": pa.nulls(len(raw), pa.string())}
    for name, i in zip(names, picks, strict=True):
        data[name] = pc.list_element(whole, i)
    return pa.table(data)


def _special_table(names: list[str], picks: list[int], n: int, encoding: str,
                   header: list[str], line: list[int], raws: list[str],
                   rows: list[list[str]]) -> pa.Table:
    out_raw: list[str] = []
    nf: list[int] = []
    enc: list[str | None] = []
    fields: list[tuple[str | None, ...]] = []
    empty = (None,) * len(names)
    for raw, row in zip(raws, rows, strict=True):
        problem = None
        if SURROGATE.search(raw):
            problem = bad_byte(raw, encoding, row, header)
            raw = escape(raw)
            values = empty
        elif len(row) == n:
            values = tuple([row[i] for i in picks])
        else:
            values = empty
        out_raw.append(raw)
        nf.append(len(row))
        enc.append(problem)
        fields.append(values)
    return _table(names, line, out_raw, nf, enc, fields)


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
