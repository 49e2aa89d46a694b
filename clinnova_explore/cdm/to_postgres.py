"""Load one site's OMOP CDM from its DuckDB file into a PostgreSQL database.

A hospital that runs PostgreSQL holds the same CDM as the DuckDB build: every table of the
file (CDM, vocabulary, and the site's quality and provenance tables) is recreated in the target
schema with the same column types (``BIGINT`` ids, ``DATE``, ``TIMESTAMP``, ``DOUBLE PRECISION``,
``NUMERIC(p, s)``, text) and filled with ``COPY ... FROM STDIN`` in CSV form. DuckDB writes the
CSV (shortest round-trip decimal for doubles, so every value arrives bit for bit; the sign of a
negative zero is the one thing CSV does not carry), PostgreSQL parses it; no row passes through
Python. The whole load is one transaction: a failure leaves the schema as it was, and loading
again replaces the tables (idempotent).

>>> postgres_type("BIGINT"), postgres_type("DECIMAL(12,3)"), postgres_type("VARCHAR")
('bigint', 'numeric(12,3)', 'text')
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import psycopg

if TYPE_CHECKING:
    from clinnova_explore.catalog import Site

__all__ = ["LoadError", "LoadResult", "load_site", "postgres_type"]

_TYPES = {
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "SMALLINT": "smallint",
    "TINYINT": "smallint",
    "UINTEGER": "bigint",
    "USMALLINT": "integer",
    "UTINYINT": "smallint",
    "DOUBLE": "double precision",
    "FLOAT": "real",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "TIME": "time",
    "INTERVAL": "interval",
    "VARCHAR": "text",
    "UUID": "uuid",
    "BLOB": "bytea",
}
_DECIMAL = re.compile(r"^DECIMAL\((\d+),\s*(\d+)\)$")
_STRINGS = {"VARCHAR", "UUID"}


class LoadError(RuntimeError):
    """A site's CDM could not be loaded into PostgreSQL (the message names site and table)."""


@dataclass(frozen=True)
class LoadResult:
    """What :func:`load_site` loaded.

    Attributes
    ----------
    site
        The site id.
    schema
        The PostgreSQL schema holding the tables.
    rows
        Rows loaded per table, in load order.
    seconds
        Wall time of the whole load.
    """

    site: str
    schema: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def postgres_type(duckdb_type: str) -> str:
    """The PostgreSQL column type holding exactly the values of a DuckDB column type.

    Parameters
    ----------
    duckdb_type
        A type as DuckDB's ``information_schema.columns.data_type`` spells it.

    Returns
    -------
    str
        The PostgreSQL type.

    Raises
    ------
    KeyError
        If the type has no exact PostgreSQL counterpart here (e.g. ``HUGEINT``, nested types).
    """
    name = duckdb_type.strip().upper()
    match = _DECIMAL.match(name)
    if match:
        return f"numeric({match.group(1)},{match.group(2)})"
    if name not in _TYPES:
        raise KeyError(duckdb_type)
    return _TYPES[name]


@dataclass(frozen=True)
class _Column:
    name: str
    duck: str
    pg: str
    not_null: bool


def _columns(con: duckdb.DuckDBPyConnection, table: str, site: str) -> list[_Column]:
    rows = con.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position",
        [table],
    ).fetchall()
    cols = []
    for name, dtype, nullable in rows:
        try:
            pg = postgres_type(dtype)
        except KeyError:
            raise LoadError(
                f"site {site!r}, table {table!r}: column {name!r} has DuckDB type {dtype}, "
                "which has no exact PostgreSQL type here; cast it in the CDM build first"
            ) from None
        cols.append(_Column(name, dtype.upper(), pg, nullable == "NO"))
    return cols


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _source(source: Site | str | Path, site_id: str | None) -> tuple[Path, str]:
    if isinstance(source, str | Path):
        path = Path(source)
        return path, site_id or path.stem
    if source.backend != "duckdb":
        raise LoadError(
            f"site {source.id!r}: its catalog backend is {source.backend!r}; "
            "the loader reads a site's DuckDB file"
        )
    return Path(source.resolved_location()), site_id or source.id


def load_site(
    source: Site | str | Path,
    url: str,
    *,
    schema: str = "public",
    tables: Sequence[str] | None = None,
    site_id: str | None = None,
) -> LoadResult:
    """Copy a site's CDM from its DuckDB file into a PostgreSQL schema, replacing it.

    Parameters
    ----------
    source
        A catalog :class:`~clinnova_explore.catalog.Site` on DuckDB, or the path of a DuckDB file.
    url
        PostgreSQL connection URL (``postgresql://user@host:port/db``).
    schema
        Target schema; created if missing. A catalog site reads it through its ``schema`` field.
    tables
        Tables to load; default every table of the DuckDB file.
    site_id
        Name used in messages (default the site id, or the file's stem).

    Returns
    -------
    LoadResult
        Rows loaded per table.

    Raises
    ------
    LoadError
        Naming the site and the table, when the file or a table cannot be read, a column type
        has no exact PostgreSQL counterpart, the server refuses, or the row counts differ.
        Nothing is changed in PostgreSQL then.

    Examples
    --------
    >>> load_site(catalog.site("homburg"), os.environ["HOMBURG_PG"])  # doctest: +SKIP
    LoadResult(site='homburg', schema='public', rows={'cdm_source': 1, ...}, seconds=0.9)
    """
    start = time.perf_counter()
    path, site = _source(source, site_id)
    if not path.exists():
        raise LoadError(f"site {site!r}: DuckDB file {path} does not exist")
    try:
        duck = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise LoadError(f"site {site!r}: cannot open {path}: {exc}") from None
    rows: dict[str, int] = {}
    table = "(connecting)"
    try:
        present = [r[0] for r in duck.execute("SHOW TABLES").fetchall()]
        names = list(tables) if tables is not None else sorted(present)
        missing = [t for t in names if t not in present]
        if missing:
            raise LoadError(f"site {site!r}, table {missing[0]!r}: not in {path}")
        with (
            tempfile.TemporaryDirectory(prefix="clx-load-") as tmp,
            psycopg.connect(url, autocommit=False) as pg,
        ):
            with pg.cursor() as cur:
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(schema)}")
                for table in names:
                    cols = _columns(duck, table, site)
                    rows[table] = _load_table(duck, cur, Path(tmp), schema, table, cols, site)
                for table in names:
                    cur.execute(f"ANALYZE {_quote(schema)}.{_quote(table)}")
            table = "(commit)"
            pg.commit()
    except LoadError:
        raise
    except (psycopg.Error, duckdb.Error, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise LoadError(
            f"site {site!r}, table {table!r}: loading into PostgreSQL failed "
            f"({type(exc).__name__}: {first}); nothing was changed"
        ) from None
    finally:
        duck.close()
    return LoadResult(site, schema, rows, time.perf_counter() - start)


def _load_table(
    duck: duckdb.DuckDBPyConnection,
    cur: psycopg.Cursor[Any],
    tmp: Path,
    schema: str,
    table: str,
    cols: list[_Column],
    site: str,
) -> int:
    """Recreate one table in PostgreSQL and COPY its rows; return the row count."""
    target = f"{_quote(schema)}.{_quote(table)}"
    ddl = ", ".join(f"{_quote(c.name)} {c.pg}{' NOT NULL' if c.not_null else ''}" for c in cols)
    cur.execute(f"DROP TABLE IF EXISTS {target}")
    cur.execute(f"CREATE TABLE {target} ({ddl})")
    csv = tmp / f"{table}.csv"
    strings = [_quote(c.name) for c in cols if c.duck in _STRINGS]
    # quoting every string makes "" an empty string and an unquoted empty field a NULL
    force = f", FORCE_QUOTE ({', '.join(strings)})" if strings else ""
    select = ", ".join(_quote(c.name) for c in cols)
    duck.execute(
        f"COPY (SELECT {select} FROM {_quote(table)}) TO '{csv}' "
        f"(FORMAT csv, HEADER false, NULLSTR ''{force})"
    )
    expected = duck.execute(f"SELECT count(*) FROM {_quote(table)}").fetchone()
    with cur.copy(f"COPY {target} ({select}) FROM STDIN (FORMAT csv)") as cp, csv.open("rb") as f:
        while chunk := f.read(1 << 20):
            cp.write(chunk)
    loaded = cur.rowcount
    csv.unlink()
    if expected is None or loaded != expected[0]:
        raise LoadError(
            f"site {site!r}, table {table!r}: {loaded} rows arrived in PostgreSQL, "
            f"{expected[0] if expected else '?'} in DuckDB; nothing was changed"
        )
    return int(loaded)
