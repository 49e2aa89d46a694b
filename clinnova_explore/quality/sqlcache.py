"""Compile each check query once per backend dialect and table layout, run it everywhere.

Building and compiling ibis expressions costs more than running them on a DuckDB file of a
few hundred thousand rows, and every site of a federation runs the same checks on tables of
the same layout. The SQL text of a query therefore depends only on the backend, the checks,
the schemas of the tables they read and the reference dates; :class:`SqlCache` keys the
compiled SQL on exactly that and runs it through the backend's DB-API cursor
(``con.raw_sql``), so the second site skips compilation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import ibis.expr.types as ir

from clinnova_explore.quality.check import CheckContext
from clinnova_explore.quality.dbapi import run_sql

__all__ = ["SqlCache", "fetch"]


def _fingerprint(ctx: CheckContext, tables: Iterable[str]) -> tuple[Hashable, ...]:
    schemas = tuple((name, ctx.table(name).schema()) for name in sorted(set(tables)))
    return (ctx.con.name, ctx.today, ctx.data_cut, schemas)


class SqlCache:
    """A bounded map from (query key, table layout) to compiled SQL.

    Parameters
    ----------
    maxsize
        Number of compiled queries kept (least recently used dropped first).
    """

    def __init__(self, maxsize: int = 1024) -> None:
        self.maxsize = maxsize
        self._sql: OrderedDict[Hashable, str] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def sql(
        self, ctx: CheckContext, key: Hashable, tables: Iterable[str], build: Callable[[], ir.Table]
    ) -> str:
        """The SQL of ``build()`` on this site, compiled only when not seen before.

        Parameters
        ----------
        ctx, key, tables, build
            As for :func:`fetch`.

        Returns
        -------
        str
            SQL in the dialect of the context's backend.
        """
        full = (key, _fingerprint(ctx, tables))
        with self._lock:
            sql = self._sql.get(full)
            if sql is not None:
                self.hits += 1
                self._sql.move_to_end(full)
                return sql
        sql = str(ctx.con.compile(build()))
        with self._lock:
            self.misses += 1
            self._sql[full] = sql
            if len(self._sql) > self.maxsize:
                self._sql.popitem(last=False)
        return sql

    def clear(self) -> None:
        """Forget every compiled query."""
        with self._lock:
            self._sql.clear()


_CACHE = SqlCache()


def fetch(
    ctx: CheckContext, key: Hashable, tables: Iterable[str], build: Callable[[], ir.Table]
) -> list[dict[str, Any]]:
    """Run the query ``build()`` at the context's site; rows as dicts.

    Parameters
    ----------
    ctx
        The site's check context.
    key
        Hashable identity of the query (the checks it counts and what it returns).
    tables
        Tables the query reads (their schemas are part of the cache key).
    build
        Builds the ibis expression; called only when the SQL is not cached.

    Returns
    -------
    list of dict
        One dict per result row, keyed by column name.
    """
    sql = _CACHE.sql(ctx, key, tables, build)
    names, rows = run_sql(ctx.con, sql)
    return [dict(zip(names, row, strict=True)) for row in rows]
