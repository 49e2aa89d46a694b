"""What one site releases: a :class:`Payload` of small aggregate tables and scalar values.

A payload is plain data. It crosses the site boundary as bytes, either JSON (readable, for audit
and preview) or Arrow IPC (compact), and both encodings are exact: every column keeps its pandas
dtype (``int64``, nullable ``Int64``, ``float64``, nullable ``Float64``, ``bool``, nullable
``boolean``, ``string``, object columns of ``str`` or ``datetime.date``, and
``datetime64[s|ms|us|ns]``), floats keep their bits (``-0.0``, infinities and NaN bit
patterns included) and a missing value (``<NA>``) stays distinct from NaN. Decoding validates
everything and names what is malformed. The column and value codecs live in the private
:mod:`clinnova_explore.analysis._codec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from clinnova_explore.analysis._codec import (
    INT64_MAX,
    INT64_MIN,
    VALUE_TYPES,
    PayloadError,
    Scalar,
    arrow_table,
    arrow_values,
    dtype_tag,
    encode_cells,
    from_json_cell,
    get_field,
    ipc_bytes,
    json_cell,
    json_table,
    read_ipc,
    table_ipc,
    type_name,
    values_ipc,
)

__all__ = ["FORMAT", "FORMAT_VERSION", "Payload", "PayloadError", "Scalar", "dtype_tag"]

FORMAT = "clinnova_explore.payload"
FORMAT_VERSION = 1

_HEADER_KEY = b"clinnova_explore.payload"
_ENVELOPE = pa.schema([("kind", pa.string()), ("name", pa.string()), ("data", pa.binary())])


@dataclass(frozen=True, eq=False)
class Payload:
    """The aggregates one site releases for one analysis.

    Parameters
    ----------
    analysis
        The analysis name (as in ``policy.allowed_analyses``).
    site
        The releasing site's id.
    tables
        Small aggregate tables; column names are unique strings, the index is the default
        ``RangeIndex`` and every dtype is a supported one (module docstring). The payload
        keeps its own copies; treat them as read-only.
    values
        Named scalars: ``int`` (within int64), ``float``, ``str``, ``bool`` or ``None``;
        numpy scalars are converted to their Python equivalents.
    refused
        The policy rule that stopped the site (e.g. ``"min_cohort_size"``), else ``None``.
        A refused payload carries no tables and no values.

    Examples
    --------
    >>> p = Payload("cohort", "basel", {"counts": pd.DataFrame({"n": [12]})}, {"note": "x"})
    >>> Payload.from_json(p.to_json()).equals(p), Payload.from_arrow(p.to_arrow()).equals(p)
    (True, True)
    >>> p.to_json()[:60]
    b'{"format":"clinnova_explore.payload","version":1,"analysis":'
    """

    analysis: str
    site: str
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    values: Mapping[str, Scalar] = field(default_factory=dict)
    refused: str | None = None

    def __post_init__(self) -> None:
        for name in ("analysis", "site"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise PayloadError(f"payload: `{name}` must be a non-empty string")
        where = f"payload from site {self.site!r} for analysis {self.analysis!r}"
        if self.refused is not None and not (isinstance(self.refused, str) and self.refused):
            raise PayloadError(f"{where}: `refused` must be None or a rule name")
        if not isinstance(self.tables, Mapping) or not isinstance(self.values, Mapping):
            raise PayloadError(f"{where}: `tables` and `values` must be mappings")
        if self.refused is not None and (self.tables or self.values):
            raise PayloadError(f"{where}: a refused payload must carry no tables or values")
        tables = {}
        for name, df in self.tables.items():
            _check_name(name, f"{where}: table names")
            tables[name] = _checked_frame(df, f"{where}, table {name!r}")
        values = {}
        for key, value in self.values.items():
            _check_name(key, f"{where}: value names")
            values[key] = _checked_scalar(value, f"{where}, value {key!r}")
        object.__setattr__(self, "tables", MappingProxyType(tables))
        object.__setattr__(self, "values", MappingProxyType(values))

    def _header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "analysis": self.analysis,
            "site": self.site,
            "refused": self.refused,
        }

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> bytes:
        """Encode as UTF-8 JSON (exact; see the module docstring)."""
        tables = {}
        for name, df in self.tables.items():
            columns = []
            for col in df.columns:
                tag = dtype_tag(df[col], col)
                data = [json_cell(c) for c in encode_cells(df[col], tag)]
                columns.append({"name": col, "dtype": tag, "data": data})
            tables[name] = {"rows": len(df), "columns": columns}
        values = {k: {"type": type_name(v), "value": json_cell(v)} for k, v in self.values.items()}
        return orjson.dumps({**self._header(), "values": values, "tables": tables})

    @classmethod
    def from_json(cls, data: bytes | str) -> Payload:
        """Decode :meth:`to_json` output, validating every field.

        Raises
        ------
        PayloadError
            Naming the malformed field, table or column.
        """
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(f"JSON payload: not valid JSON ({exc})") from None
        header = _read_header(doc, "JSON payload", extra=("values", "tables"))
        where = f"JSON payload from site {header['site']!r} for analysis {header['analysis']!r}"
        values = {}
        for key, item in get_field(doc, "values", dict, where).items():
            at = f"{where}, value {key!r}"
            kind = get_field(item, "type", str, at) if isinstance(item, dict) else None
            if kind not in VALUE_TYPES or set(item) != {"type", "value"}:
                raise PayloadError(f"{at}: expected {{'type': int|float|str|bool|null, 'value'}}")
            kind_type = VALUE_TYPES[kind]
            values[key] = from_json_cell(item["value"], kind_type, kind_type is type(None), at)
        tables = {}
        for name, doc_table in get_field(doc, "tables", dict, where).items():
            tables[name] = json_table(doc_table, f"{where}, table {name!r}")
        return cls(tables=tables, values=values, **header)

    # ------------------------------------------------------------------ Arrow

    def to_arrow(self) -> bytes:
        """Encode as one Arrow IPC stream (exact; see the module docstring).

        The stream holds one envelope batch (``kind``, ``name``, ``data``) whose schema
        metadata carries the header; ``data`` holds a nested IPC stream per table and one
        for the values (a one-row table with one typed column per value).
        """
        kinds, names, blobs = ["values"], [""], [values_ipc(self.values)]
        for name, df in self.tables.items():
            kinds.append("table")
            names.append(name)
            blobs.append(table_ipc(df))
        schema = _ENVELOPE.with_metadata({_HEADER_KEY: orjson.dumps(self._header())})
        batch = pa.record_batch([pa.array(kinds), pa.array(names), pa.array(blobs)], schema=schema)
        return ipc_bytes(pa.Table.from_batches([batch]))

    @classmethod
    def from_arrow(cls, data: bytes) -> Payload:
        """Decode :meth:`to_arrow` output, validating every field.

        Raises
        ------
        PayloadError
            Naming the malformed field, table or column.
        """
        envelope = read_ipc(data, "Arrow payload")
        raw = (envelope.schema.metadata or {}).get(_HEADER_KEY)
        if raw is None or not envelope.schema.remove_metadata().equals(_ENVELOPE):
            raise PayloadError("Arrow payload: not a clinnova_explore payload (envelope schema)")
        try:
            header = _read_header(orjson.loads(raw), "Arrow payload", extra=())
        except orjson.JSONDecodeError:
            raise PayloadError("Arrow payload: header metadata is not valid JSON") from None
        where = f"Arrow payload from site {header['site']!r} for analysis {header['analysis']!r}"
        rows = envelope.to_pylist()
        if [r["kind"] for r in rows[:1]] != ["values"] or any(
            r["kind"] != "table" for r in rows[1:]
        ):
            raise PayloadError(f"{where}: envelope must hold one 'values' row, then 'table' rows")
        values = arrow_values(read_ipc(rows[0]["data"], f"{where}, values"), where)
        tables = {}
        for row in rows[1:]:
            if row["name"] in tables:
                raise PayloadError(f"{where}: table {row['name']!r} appears twice")
            at = f"{where}, table {row['name']!r}"
            tables[row["name"]] = arrow_table(read_ipc(row["data"], at), at)
        return cls(tables=tables, values=values, **header)

    # ------------------------------------------------------------------ helpers

    def equals(self, other: object) -> bool:
        """Exact equality: same fields, table and column order, dtypes and value bits."""
        return isinstance(other, Payload) and self.to_json() == other.to_json()

    def shapes(self) -> dict[str, tuple[int, int]]:
        """``{table: (rows, columns)}``: what a preview or an audit entry shows."""
        return {name: df.shape for name, df in self.tables.items()}


# ---------------------------------------------------------------------- validation


def _check_name(name: object, what: str) -> None:
    if not isinstance(name, str) or not name:
        raise PayloadError(f"{what} must be non-empty strings, got {name!r}")


def _checked_frame(df: object, where: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise PayloadError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
    labels = list(df.columns)
    if not all(isinstance(c, str) and c for c in labels) or len(set(labels)) != len(labels):
        raise PayloadError(f"{where}: column names must be unique non-empty strings: {labels}")
    index = df.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
        raise PayloadError(f"{where}: the index must be the default RangeIndex (reset_index)")
    for col in labels:
        try:
            dtype_tag(df[col], col)
        except PayloadError as exc:
            raise PayloadError(f"{where}: {exc}") from None
    return df.copy(deep=True)


def _checked_scalar(value: object, where: str) -> Scalar:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int) and not isinstance(value, bool):
        if not INT64_MIN <= value <= INT64_MAX:
            raise PayloadError(f"{where}: integer {value} does not fit in int64")
        return int(value)
    if value is None or isinstance(value, float | str | bool):
        return value
    raise PayloadError(f"{where}: {type(value).__name__} is not int, float, str, bool or None")


def _read_header(doc: object, where: str, *, extra: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise PayloadError(f"{where}: expected an object at the top level")
    expected = {"format", "version", "analysis", "site", "refused", *extra}
    if set(doc) != expected:
        raise PayloadError(f"{where}: fields {sorted(doc)} differ from {sorted(expected)}")
    if doc["format"] != FORMAT or doc["version"] != FORMAT_VERSION:
        raise PayloadError(
            f"{where}: format {doc['format']!r} version {doc['version']!r} is not "
            f"{FORMAT!r} version {FORMAT_VERSION} (are both sides on the same library version?)"
        )
    refused = doc["refused"]
    if refused is not None and not isinstance(refused, str):
        raise PayloadError(f"{where}: field `refused` must be a string or null")
    return {
        "analysis": get_field(doc, "analysis", str, where),
        "site": get_field(doc, "site", str, where),
        "refused": refused,
    }
