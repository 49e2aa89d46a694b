"""Exact encodings of payload columns and values: pandas dtypes to JSON cells and Arrow IPC.

The private half of :mod:`clinnova_explore.analysis.payload`: every supported column dtype has
a tag (:func:`dtype_tag`) that travels with the column, so decoding rebuilds the same dtype;
floats keep their bits and a missing value (``None``) stays distinct from NaN. Every decoder
checks what it reads and raises :class:`PayloadError` naming the table, column or row.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "VALUE_TYPES",
    "PayloadError",
    "Scalar",
    "arrow_table",
    "arrow_values",
    "decode_column",
    "dtype_tag",
    "encode_cells",
    "from_json_cell",
    "get_field",
    "ipc_bytes",
    "json_cell",
    "json_table",
    "read_ipc",
    "table_ipc",
    "type_name",
    "values_ipc",
]

Scalar = int | float | str | bool | None
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_CANONICAL_NAN = 0x7FF8000000000000
_NAT = np.iinfo(np.int64).min

# dtype tag -> (Arrow type, Python type of a present cell, may hold missing cells)
_TAGS: dict[str, tuple[pa.DataType, type, bool]] = {
    "int64": (pa.int64(), int, False),
    "Int64": (pa.int64(), int, True),
    "float64": (pa.float64(), float, False),
    "Float64": (pa.float64(), float, True),
    "bool": (pa.bool_(), bool, False),
    "boolean": (pa.bool_(), bool, True),
    "string[python]": (pa.string(), str, True),
    "string[pyarrow]": (pa.string(), str, True),
    "object:str": (pa.string(), str, True),
    "object:date": (pa.date32(), dt.date, True),
    **{f"datetime64[{u}]": (pa.timestamp(u), int, True) for u in ("s", "ms", "us", "ns")},
}
_VALUE_ARROW = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}
VALUE_TYPES: dict[str, type] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "null": type(None),
}


class PayloadError(ValueError):
    """A payload is malformed; the message says which site, table, column or field."""


# public home (and pickling path) of the error, which payload.py re-exports
PayloadError.__module__ = "clinnova_explore.analysis.payload"


def dtype_tag(series: pd.Series, column: object = None) -> str:
    """The payload dtype tag of a column, or :class:`PayloadError` if it cannot travel.

    Examples
    --------
    >>> dtype_tag(pd.Series([1, None], dtype="Int64")), dtype_tag(pd.Series(["a", None]))
    ('Int64', 'object:str')
    """
    dtype = series.dtype
    label = f"column {column!r} " if column is not None else ""
    if isinstance(dtype, pd.StringDtype) and dtype.storage in ("python", "pyarrow"):
        return f"string[{dtype.storage}]"
    if isinstance(dtype, pd.Int64Dtype | pd.Float64Dtype | pd.BooleanDtype):
        return str(dtype)
    if isinstance(dtype, np.dtype) and dtype.kind == "M":
        if np.datetime_data(dtype)[0] in ("s", "ms", "us", "ns"):
            return str(dtype)
    elif isinstance(dtype, np.dtype) and str(dtype) in ("int64", "float64", "bool"):
        return str(dtype)
    elif isinstance(dtype, np.dtype) and dtype.kind == "O":
        present = [v for v in series if v is not None]
        if all(type(v) is str for v in present):
            return "object:str"
        if all(type(v) is dt.date for v in present):
            return "object:date"
        bad = next(v for v in present if type(v) not in (str, dt.date))
        raise PayloadError(
            f"{label}holds {type(bad).__name__} value {bad!r}; object columns may hold only "
            "str or datetime.date values and None for missing (use a nullable dtype otherwise)"
        )
    raise PayloadError(
        f"{label}has dtype {dtype}, which a payload cannot carry; use one of "
        f"{', '.join(t for t in _TAGS if not t.startswith('datetime64['))}, datetime64[s|ms|us|ns]"
    )


def type_name(value: Scalar) -> str:
    """The ``VALUE_TYPES`` name of a scalar (``"int"``, ..., ``"null"``)."""
    return next(k for k, t in VALUE_TYPES.items() if type(value) is t)


def get_field(doc: object, key: str, kind: type, where: str) -> Any:
    """``doc[key]`` checked to be present and of type ``kind``."""
    if not isinstance(doc, dict) or key not in doc:
        raise PayloadError(f"{where}: field `{key}` is missing")
    if not isinstance(doc[key], kind) or (kind is int and isinstance(doc[key], bool)):
        raise PayloadError(f"{where}: field `{key}` must be {kind.__name__}, got {doc[key]!r}")
    return doc[key]


# ---------------------------------------------------------------------- cells


def encode_cells(series: pd.Series, tag: str) -> list[Any]:
    """Column -> Python cells (``None`` = missing); floats keep their bits."""
    missing = series.isna().to_numpy(dtype=bool) if _TAGS[tag][2] else None
    if tag in ("int64", "float64", "bool"):
        return series.to_numpy().tolist()
    if tag.startswith("datetime64["):
        raw: list[Any] = series.to_numpy().view(np.int64).tolist()
    elif tag in ("Int64", "Float64", "boolean"):
        fill = {"Int64": 0, "Float64": 0.0, "boolean": False}[tag]
        raw = series.array.to_numpy(dtype=_TAGS[tag][1], na_value=fill).tolist()
    else:
        raw = list(series)
    assert missing is not None
    return [None if m else v for v, m in zip(raw, missing, strict=True)]


def decode_column(cells: list[Any], tag: str, where: str) -> Any:
    """Python cells -> a column of the tagged dtype, checking every cell."""
    if tag not in _TAGS:
        raise PayloadError(f"{where}: unknown dtype {tag!r} (known: {', '.join(_TAGS)})")
    _, kind, nullable = _TAGS[tag]
    for i, cell in enumerate(cells):
        if cell is None and nullable:
            continue
        out_of_range = isinstance(cell, int) and not INT64_MIN <= cell <= INT64_MAX
        if type(cell) is not kind or out_of_range:
            raise PayloadError(f"{where}, row {i}: {cell!r} is not a valid {tag} value")
    missing = np.array([c is None for c in cells], dtype=bool)
    if tag in ("int64", "float64", "bool"):
        return np.array(cells, dtype=tag)
    if tag == "Int64":
        return pd.arrays.IntegerArray(np.array([c or 0 for c in cells], dtype=np.int64), missing)
    if tag == "Float64":
        data = np.array([0.0 if c is None else c for c in cells], dtype=np.float64)
        return pd.arrays.FloatingArray(data, missing)
    if tag == "boolean":
        return pd.arrays.BooleanArray(np.array([bool(c) for c in cells], dtype=bool), missing)
    if tag.startswith("string["):
        return pd.array(cells, dtype=pd.StringDtype(tag[7:-1]))
    if tag.startswith("datetime64["):
        ints = np.array([_NAT if c is None else c for c in cells], dtype=np.int64)
        return ints.view(tag)
    out = np.empty(len(cells), dtype=object)
    out[:] = cells
    return out


def json_cell(value: Any) -> Any:
    """A cell as JSON: non-finite floats as tokens (NaN keeps its bits), dates as ISO text."""
    if isinstance(value, float) and not math.isfinite(value):
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        bits = struct.unpack("<Q", struct.pack("<d", value))[0]
        return "NaN" if bits == _CANONICAL_NAN else f"NaN:{bits:016x}"
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def from_json_cell(value: Any, kind: type, nullable: bool, where: str) -> Any:
    """A JSON cell back as a Python value of type ``kind`` (``None`` if nullable)."""
    if value is None and nullable:
        return None
    if kind is float and isinstance(value, str):
        return _float_token(value, where)
    if kind is dt.date and isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise PayloadError(f"{where}: {value!r} is not an ISO date") from None
    if type(value) is not kind:
        raise PayloadError(f"{where}: {value!r} is not a {kind.__name__}")
    return value


def _float_token(token: str, where: str) -> float:
    fixed = {"Infinity": math.inf, "-Infinity": -math.inf}
    if token in fixed:
        return fixed[token]
    bits = _CANONICAL_NAN if token == "NaN" else None
    if token.startswith("NaN:") and len(token) == 20:
        try:
            bits = int(token[4:], 16)
        except ValueError:
            bits = None
    value = struct.unpack("<d", struct.pack("<Q", bits))[0] if bits is not None else 0.0
    if bits is None or not math.isnan(value):
        raise PayloadError(f"{where}: {token!r} is not a float (or NaN/Infinity token)")
    return float(value)


def json_table(doc: object, where: str) -> pd.DataFrame:
    """A table from its JSON form (``rows`` and tagged ``columns``)."""
    rows = get_field(doc, "rows", int, where)
    assert isinstance(doc, dict)
    if set(doc) != {"rows", "columns"} or rows < 0:
        raise PayloadError(f"{where}: fields must be exactly 'rows' (>= 0) and 'columns'")
    data: dict[str, Any] = {}
    for i, col in enumerate(get_field(doc, "columns", list, where)):
        at = f"{where}, column {i}"
        name = get_field(col, "name", str, at)
        at = f"{where}, column {name!r}"
        tag = get_field(col, "dtype", str, at)
        cells = get_field(col, "data", list, at)
        if set(col) != {"name", "dtype", "data"} or name in data or len(cells) != rows:
            raise PayloadError(f"{at}: needs unique name, dtype and {rows} data cells")
        if tag not in _TAGS:
            raise PayloadError(f"{at}: unknown dtype {tag!r} (known: {', '.join(_TAGS)})")
        kind, nullable = _TAGS[tag][1], _TAGS[tag][2]
        data[name] = decode_column([from_json_cell(c, kind, nullable, at) for c in cells], tag, at)
    return pd.DataFrame(data, index=pd.RangeIndex(rows))


# ---------------------------------------------------------------------- Arrow


def ipc_bytes(table: pa.Table) -> bytes:
    """An Arrow table as one IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def read_ipc(data: bytes, where: str) -> pa.Table:
    """An IPC stream back as an Arrow table."""
    try:
        return pa.ipc.open_stream(data).read_all()
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        raise PayloadError(f"{where}: not a readable Arrow IPC stream ({exc})") from None


def table_ipc(df: pd.DataFrame) -> bytes:
    """A DataFrame as an IPC stream whose fields carry the dtype tags."""
    fields, arrays = [], []
    for col in df.columns:
        tag = dtype_tag(df[col], col)
        cells = encode_cells(df[col], tag)
        arrays.append(pa.array(cells, type=_TAGS[tag][0], from_pandas=False))
        fields.append(pa.field(col, _TAGS[tag][0], metadata={"dtype": tag}))
    schema = pa.schema(fields, metadata={"rows": str(len(df))})
    return ipc_bytes(pa.Table.from_arrays(arrays, schema=schema))


def arrow_table(table: pa.Table, where: str) -> pd.DataFrame:
    """A DataFrame from :func:`table_ipc` output."""
    meta = table.schema.metadata or {}
    try:
        rows = int(meta[b"rows"])
    except (KeyError, ValueError):
        raise PayloadError(f"{where}: schema metadata lacks its row count") from None
    data: dict[str, Any] = {}
    for fld, chunked in zip(table.schema, table.columns, strict=True):
        at = f"{where}, column {fld.name!r}"
        tag = (fld.metadata or {}).get(b"dtype", b"").decode()
        if tag not in _TAGS or fld.type != _TAGS[tag][0] or fld.name in data:
            raise PayloadError(f"{at}: Arrow type {fld.type} does not match dtype tag {tag!r}")
        arr = chunked.combine_chunks()
        if tag.startswith("datetime64["):
            arr = arr.cast(pa.int64())
        cells = arr.to_pylist()
        if len(cells) != rows:
            raise PayloadError(f"{at}: {len(cells)} cells, the table declares {rows} rows")
        data[fld.name] = decode_column(cells, tag, at)
    return pd.DataFrame(data, index=pd.RangeIndex(rows))


def values_ipc(values: Mapping[str, Scalar]) -> bytes:
    """Named scalars as a one-row IPC stream, one typed column per value."""
    arrays = [pa.array([v], type=_VALUE_ARROW.get(type(v), pa.null())) for v in values.values()]
    return ipc_bytes(pa.Table.from_arrays(arrays, names=list(values)))


def arrow_values(table: pa.Table, where: str) -> dict[str, Scalar]:
    """Named scalars from :func:`values_ipc` output."""
    if table.num_columns and table.num_rows != 1:
        raise PayloadError(f"{where}: the values table must have exactly one row")
    known = {pa.null(): type(None), **{t: k for k, t in _VALUE_ARROW.items()}}
    out: dict[str, Scalar] = {}
    for fld, col in zip(table.schema, table.columns, strict=True):
        value: Scalar = col.to_pylist()[0]
        if type(value) is not known.get(fld.type) or fld.name in out:
            raise PayloadError(f"{where}, value {fld.name!r}: unsupported or missing ({fld.type})")
        out[fld.name] = value
    return out
