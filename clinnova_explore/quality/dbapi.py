"""Run one SQL string through a backend's DB-API cursor (``con.raw_sql``)."""

from __future__ import annotations

from typing import Any

import ibis

__all__ = ["run_sql"]


def run_sql(con: ibis.BaseBackend, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Execute a query through the backend's DB-API cursor.

    Works on every DB-API backend ibis wraps (DuckDB, PostgreSQL, ...); the cursor is closed
    afterwards, except DuckDB's, which is the connection itself.

    Parameters
    ----------
    con
        The ibis backend.
    sql
        One query, compiled by ibis for this backend.

    Returns
    -------
    tuple of (list of str, list of tuple)
        The column names and all rows.
    """
    cur = con.raw_sql(sql)
    try:
        names = [d[0] for d in cur.description]
        return names, list(cur.fetchall())
    finally:
        if cur is not getattr(con, "con", None):
            cur.close()
