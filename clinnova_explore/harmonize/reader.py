"""Stream a delimited native export file into Arrow tables, one chunk at a time.

Every record keeps its 1-based starting line number (header = line 1), its raw text, the
number of fields found, the number of physical lines it spans and, when the bytes are invalid in
the declared encoding, a description of the first bad byte. A quoted field may hold line breaks,
so a record may span several physical lines; but a quote left open by mistake would swallow the
lines after it, so a record over several lines with the wrong number of fields is taken for an
unterminated quote: its first line alone becomes a malformed record (described in ``_quote``)
and the following lines are read as records of their own. So every physical line after the
header belongs to exactly one record. Field values stay strings; parsing happens in DuckDB.
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

__all__ = [
    "CHUNK_ROWS",
    "SURROGATE",
    "bad_byte",
    "count_lines",
    "escape",
    "open_quote",
    "read_delimited",
    "read_header",
    "read_header_span",
]

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
    return (
        f"byte 0x{byte:02X} at byte offset {offset} (column {pos + 1}{field}) "
        f"is not valid {encoding}"
    )


def escape(raw: str) -> str:
    """Raw text with invalid bytes shown as ``\\xNN`` so it can be stored as UTF-8."""
    if not SURROGATE.search(raw):
        return raw
    return SURROGATE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", raw)


def read_header(path: Path, encoding: str, delimiter: str) -> list[str]:
    """Read and check the header row; raise :class:`HarmonizeError` if unusable."""
    return read_header_span(path, encoding, delimiter)[0]


def read_header_span(path: Path, encoding: str, delimiter: str) -> tuple[list[str], int]:
    """The header row and the number of physical lines it takes (1 unless a quoted name
    holds a line break); raise :class:`HarmonizeError` if it is unusable."""
    if not path.is_file():
        raise HarmonizeError(f"{path}: file not found; check the export folder and the site spec")
    consumed: list[str] = []
    try:
        with path.open(encoding=encoding, errors="surrogateescape", newline="") as fh:
            header = next(csv.reader(_recorded(iter(fh), consumed), delimiter=delimiter), None)
    except (OSError, csv.Error) as exc:
        raise HarmonizeError(f"{path}: line 1: cannot read the header: {exc}") from None
    if not header:
        raise HarmonizeError(f"{path}: line 1: the file is empty; expected a header row")
    joined = delimiter.join(header)
    if SURROGATE.search(joined):
        detail = bad_byte(joined, encoding, header, header)
        raise HarmonizeError(
            f"{path}: line 1: header is not valid {encoding}: {detail}; "
            "re-export the file in the encoding the site spec declares"
        )
    header = [h.strip() for h in header]
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    return header, len(consumed)


def count_lines(path: Path) -> int:
    """Physical lines of a text file, counted on its bytes.

    A line ends at LF, CR LF or a lone CR (as Python's universal newlines split text); a last
    line without a line break counts too. Valid for the ASCII-compatible encodings the sites
    use (UTF-8, Latin-1, cp1252), where these bytes only ever mean line breaks.
    """
    lines = 0
    prev_cr = False
    last = b""
    with Path(path).open("rb") as fh:
        while block := fh.read(1 << 22):
            crlf = block.count(b"\r\n") + (prev_cr and block[:1] == b"\n")
            lines += block.count(b"\n") + block.count(b"\r") - crlf
            prev_cr = block[-1:] == b"\r"
            last = block[-1:]
    return lines + (last not in (b"", b"\n", b"\r"))


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
        description or null), ``_nl`` (physical lines of the record), ``_quote`` (the
        unterminated quote of a malformed record, or null) and one string column per logical
        field (null when the record has the wrong number of fields, invalid bytes or an
        unterminated quote).

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
                f"(logical field {logical!r}); found {header}. Fix the export or the site spec."
            )
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
            plain, special, line_no = _split_chunk(path, fh, lines, line_no, delimiter, n)
            parts = [_plain_table(names, picks, n, delimiter, *plain)]
            if special.line:
                parts.append(_special_table(names, picks, n, encoding, header, special))
            table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
            yield table.sort_by("_line") if len(parts) > 1 else table
            if not lines:
                break


def _recorded(lines: Iterator[str], consumed: list[str]) -> Iterator[str]:
    for ln in lines:
        consumed.append(ln)
        yield ln


def _split_chunk(
    path: Path, fh: Iterator[str], lines: list[str], line_no: int, delimiter: str, n: int
) -> tuple[tuple[list[str], int, list[bool]], _Special, int]:
    """Split a chunk of physical lines into plain lines and parsed special records.

    A *plain* line has no quote character, NUL, invalid byte and is not blank: the CSV
    reader would give exactly ``line.rstrip("\r\n").split(delimiter)`` for it, so those are
    split in bulk by Arrow. Every other line starts a record parsed by :mod:`csv` (which may
    take further lines, from this chunk or beyond it). A record over several lines with the
    wrong number of fields (``n`` expected) is an unterminated quote, not a record: only its
    first line becomes a (malformed) record and the lines after it are read again as records
    of their own; lines taken from beyond the chunk join the chunk for that. Returns (plain
    lines with a mask of the ones to use and the line number of ``lines[0]``), the special
    records, and the line number after the chunk.
    """
    first = line_no
    odd = _odd(lines, 0)
    mask = [True] * len(lines)
    special = _Special()
    consumed: list[str] = []
    k_next = 0
    i = 0
    while i < len(odd):
        k = odd[i]
        i += 1
        if k < k_next:
            continue  # taken by a multi-line record
        consumed.clear()
        rest = itertools.chain(map(lines.__getitem__, range(k, len(lines))), fh)
        try:
            row: list[str] | None = next(csv.reader(_recorded(rest, consumed), delimiter=delimiter))
        except csv.Error as exc:
            if len(consumed) <= 1:
                raise HarmonizeError(f"{path}: line {first + k}: {exc}") from None
            row = None  # a quoted field ran on until the field size limit
        beyond = k + len(consumed) - len(lines)  # lines the record took from beyond the chunk
        if len(consumed) > 1 and (row is None or len(row) != n):
            if beyond > 0:
                odd.extend(_odd(consumed[-beyond:], len(lines)))
                lines.extend(consumed[-beyond:])
                mask.extend([True] * beyond)
            text = lines[k].rstrip("\r\n")
            alone = next(csv.reader([text], delimiter=delimiter), [])
            special.add(
                first + k,
                text,
                alone,
                1,
                _unterminated(text, delimiter, first + k, len(consumed), row, n),
            )
            mask[k] = False
            k_next = k + 1
            continue
        assert row is not None
        special.add(first + k, "".join(consumed).rstrip("\r\n"), row, len(consumed), None)
        k_next = k + len(consumed)
        for j in range(k, min(k_next, len(lines))):
            mask[j] = False
    extra = max(0, k_next - len(lines))  # lines a record took from beyond the chunk
    return (lines, first, mask), special, first + len(lines) + extra


def _odd(lines: list[str], offset: int) -> list[int]:
    """Indexes (plus ``offset``) of the lines that need the CSV parser, in order."""
    blob = "".join(lines)
    if '"' in blob or "\x00" in blob or SURROGATE.search(blob):
        return [
            offset + k
            for k, ln in enumerate(lines)
            if '"' in ln or "\x00" in ln or SURROGATE.search(ln) or ln.isspace()
        ]
    return [offset + k for k, ln in enumerate(lines) if ln.isspace()]


def open_quote(text: str, delimiter: str) -> int | None:
    """1-based column of the quote opening a field still open at the end of ``text``.

    Follows the :mod:`csv` reader's rules (double quotes escape a quote inside a quoted
    field; a quote inside an unquoted field is a plain character). None if no field is open.
    """
    state = "start"
    opened = 0
    for pos, ch in enumerate(text):
        if state == "start":
            if ch == '"':
                state, opened = "quoted", pos
            elif ch != delimiter:
                state = "field"
        elif state == "field":
            if ch == delimiter:
                state = "start"
        elif state == "quoted":
            if ch == '"':
                state = "quote"
        elif ch == '"':  # state "quote": a doubled quote stays inside the field
            state = "quoted"
        else:
            state = "start" if ch == delimiter else "field"
    return opened + 1 if state == "quoted" else None


def _unterminated(
    text: str, delimiter: str, line: int, span: int, row: list[str] | None, n: int
) -> str:
    col = open_quote(text, delimiter)
    where = f"line {line}, column {col}" if col is not None else f"line {line}"
    found = "a field larger than the size limit" if row is None else f"{len(row)} fields"
    return (
        f"an unterminated quote starts at {where}: read as one record it runs over "
        f"{span} lines with {found} instead of {n}, so only line {line} is quarantined "
        "and the lines after it are read as records of their own"
    )


class _Special:
    """Records parsed by :mod:`csv`: line, raw text, fields, physical lines, quote problem."""

    def __init__(self) -> None:
        self.line: list[int] = []
        self.raw: list[str] = []
        self.rows: list[list[str]] = []
        self.span: list[int] = []
        self.quote: list[str | None] = []

    def add(self, line: int, raw: str, row: list[str], span: int, quote: str | None) -> None:
        """Add one record."""
        self.line.append(line)
        self.raw.append(raw)
        self.rows.append(row)
        self.span.append(span)
        self.quote.append(quote)


def _plain_table(
    names: list[str],
    picks: list[int],
    n: int,
    delimiter: str,
    lines: list[str],
    first: int,
    mask: list[bool],
) -> pa.Table:
    if not all(mask):
        lines = [ln if keep else "" for ln, keep in zip(lines, mask, strict=True)]
    keep = pa.array(mask, pa.bool_())
    raw = pc.utf8_rtrim(pa.array(lines, pa.string()), characters="\r\n").filter(keep)
    line = pa.array(range(first, first + len(mask)), pa.int64()).filter(keep)
    lists = pc.split_pattern(raw, delimiter)
    nf = pc.list_value_length(lists).cast(pa.int32())
    whole = pc.if_else(pc.equal(nf, n), lists, pa.scalar(None, lists.type))
    data = {
        "_line": line,
        "_raw": raw,
        "_nf": nf,
        "_enc": pa.nulls(len(raw), pa.string()),
        "_nl": pa.repeat(pa.scalar(1, pa.int32()), len(raw)),
        "_quote": pa.nulls(len(raw), pa.string()),
    }
    for name, i in zip(names, picks, strict=True):
        data[name] = pc.list_element(whole, i)
    return pa.table(data)


def _special_table(
    names: list[str], picks: list[int], n: int, encoding: str, header: list[str], special: _Special
) -> pa.Table:
    out_raw: list[str] = []
    nf: list[int] = []
    enc: list[str | None] = []
    fields: list[tuple[str | None, ...]] = []
    empty: tuple[str | None, ...] = (None,) * len(names)
    for raw, row, quote in zip(special.raw, special.rows, special.quote, strict=True):
        problem = None
        if SURROGATE.search(raw):
            problem = bad_byte(raw, encoding, row, header)
            raw = escape(raw)
            values = empty
        elif len(row) == n and quote is None:
            values = tuple(row[i] for i in picks)
        else:
            values = empty
        out_raw.append(raw)
        nf.append(len(row))
        enc.append(problem)
        fields.append(values)
    return _table(names, special.line, out_raw, nf, enc, fields, special.span, special.quote)


def _table(
    names: list[str],
    line: list[int],
    raw: list[str],
    nf: list[int],
    enc: list[str | None],
    rows: list[tuple[str | None, ...]],
    span: list[int],
    quote: list[str | None],
) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    data = {
        "_line": pa.array(line, pa.int64()),
        "_raw": pa.array(raw, pa.string()),
        "_nf": pa.array(nf, pa.int32()),
        "_enc": pa.array(enc, pa.string()),
        "_nl": pa.array(span, pa.int32()),
        "_quote": pa.array(quote, pa.string()),
    }
    for name, col in zip(names, cols, strict=True):
        data[name] = pa.array(col, pa.string())
    return pa.table(data)
