"""Copy a site's CDM from one backend to another (e.g. a DuckDB build into PostgreSQL).

Used to stand up a PostgreSQL site from the demo build and by the cross-backend tests. Rows
move in Arrow batches; PostgreSQL targets are filled with ``COPY`` for speed.
"""

from __future__ import annotations

from collections.abc import Iterable

import ibis
import pyarrow as pa

from clinnova_explore.cdm.schema import SCHEMAS

__all__ = ["copy_cdm"]

_BATCH = 50_000


def copy_cdm(
    src: ibis.BaseBackend,
    dst: ibis.BaseBackend,
    tables: Iterable[str] | None = None,
) -> dict[str, int]:
    """Copy CDM tables (and any extra site tables present) from ``src`` to ``dst``.

    Parameters
    ----------
    src
        Source backend, e.g. a site's DuckDB connection.
    dst
        Target backend (DuckDB or PostgreSQL); existing tables of the same names are replaced.
    tables
        Table names; default: every table of the CDM subset present in ``src``.

    Returns
    -------
    dict
        Rows copied per table.
    """
    present = set(src.list_tables())
    names = list(tables) if tables is not None else [t for t in SCHEMAS if t in present]
    counts: dict[str, int] = {}
    for name in names:
        t = src.table(name)
        dst.create_table(name, schema=t.schema(), overwrite=True)
        reader = t.to_pyarrow_batches(chunk_size=_BATCH)
        if dst.name == "postgres":
            counts[name] = _copy_postgres(dst, name, reader)
        else:
            n = 0
            for batch in reader:
                dst.insert(name, pa.Table.from_batches([batch]))
                n += batch.num_rows
            counts[name] = n
    return counts


def _copy_postgres(dst: ibis.BaseBackend, name: str, reader: pa.RecordBatchReader) -> int:
    cols = ", ".join(f'"{c}"' for c in reader.schema.names)
    n = 0
    raw = dst.con  # the psycopg connection behind the ibis backend
    with raw.cursor() as cur, cur.copy(f'COPY "{name}" ({cols}) FROM STDIN') as cp:
        for batch in reader:
            for row in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                cp.write_row(row)
            n += batch.num_rows
    raw.commit()
    return n
