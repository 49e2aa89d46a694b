"""One native export file written line by line, interleaving natural and faulty lines."""

from __future__ import annotations

import csv
import io
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from clinnova_explore.synth.faults import CATCHER

__all__ = ["Insert", "NativeFile"]


@dataclass
class Insert:
    """A faulty line to write before natural row ``position`` (``len(rows)``: at the end)."""

    position: int
    payload: list[str] | str | bytes  # a CSV row, a text line, or raw bytes
    kind: str
    table: str
    detail: str
    source: int | None = None  # natural row this line copies (duplicates name its line)


class NativeFile:
    """A CSV or NDJSON file with known physical line numbers.

    Parameters
    ----------
    path
        File to create.
    encoding
        Python codec of the site (``utf-8-sig`` writes the BOM once, at the start).
    delimiter
        CSV delimiter, or ``None`` for NDJSON (one text line per row).
    header
        CSV header row (line 1); NDJSON files have none.
    """

    def __init__(
        self, path: Path, encoding: str, delimiter: str | None, header: list[str] | None = None
    ) -> None:
        self.path = path
        self.name = path.name
        self.fh: IO[bytes] = path.open("wb")
        self.delimiter = delimiter
        self.encoding = "utf-8" if encoding.lower() in {"utf-8-sig", "utf_8_sig"} else encoding
        self.lines = 0
        if encoding.lower() in {"utf-8-sig", "utf_8_sig"}:
            self.fh.write(b"\xef\xbb\xbf")
        if header is not None:
            self._write_text(self._csv([header]))
            self.lines = 1

    def _csv(self, rows: list) -> str:
        buf = io.StringIO()
        csv.writer(
            buf, delimiter=self.delimiter or ",", lineterminator="\n", quoting=csv.QUOTE_MINIMAL
        ).writerows(rows)
        return buf.getvalue()

    def _write_text(self, text: str) -> None:
        self.fh.write(text.encode(self.encoding))

    def _segment(self, rows: list) -> None:
        if not rows:
            return
        if self.delimiter is None:
            self._write_text("\n".join(rows) + "\n")
        else:
            self._write_text(self._csv(rows))
        self.lines += len(rows)

    def write(self, rows: list, inserts: list[Insert], site: str) -> list[dict]:
        """Write natural ``rows`` with ``inserts`` among them; return the fault records."""
        inserts = sorted(inserts, key=lambda i: i.position)
        records: list[dict] = []
        first_line = self.lines + 1
        positions = [i.position for i in inserts]
        done = 0
        for ins in inserts:
            self._segment(rows[done : ins.position])
            done = ins.position
            detail = ins.detail
            if ins.source is not None:
                src_line = first_line + ins.source + bisect_right(positions, ins.source)
                detail = detail.format(line=src_line)
            payload = ins.payload
            if isinstance(payload, bytes):
                self.fh.write(payload + b"\n")
            elif isinstance(payload, str):
                self._write_text(payload + "\n")
            else:
                self._write_text(self._csv([payload]))
            self.lines += 1
            records.append(
                {
                    "site": site,
                    "file": self.name,
                    "line": self.lines,
                    "table": ins.table,
                    "kind": ins.kind,
                    "catcher": CATCHER[ins.kind],
                    "detail": detail,
                }
            )
        self._segment(rows[done:])
        return records

    def close(self) -> None:
        """Close the file."""
        self.fh.close()
