"""Compiled cohort SQL, kept and reused: compile once per definition and source shape.

Turning a cohort's ibis expression into SQL costs far more than running that SQL on the demo
data (about a tenth of a second against a few milliseconds), and the SQL depends on nothing but
the definition, the backend's SQL dialect and the tables the compiler reads. This module keeps
the SQL text in a small least-recently-used cache under a key made of:

- the definition hash and what is counted (``"summary"``, ``"count"``, ``"attrition"``);
- a **source signature**: the CDM source's type, the backend (class and name, which selects the
  compiler and the dialect) and, for every table the compilation read, its name, its SQL on
  its own (``SELECT * FROM "person"``, or the renaming projection of a CDM file read through
  :class:`~clinnova_explore.cdm.source.DuckDBFileCdm`) and its schema (column names and types,
  nullability included).

Two sources with equal signatures compile a definition to the same SQL text, so sites with the
same layout (all sites of a federation built by this project) share one compilation; each runs
the text on its own connection. A source that differs in anything the SQL could depend on gets
its own entry. Which tables a definition reads is remembered per definition and backend (a
"plan"), so that a later call can compute the signature, and find the SQL, without building the
ibis expression at all.

Only DuckDB and PostgreSQL run cached SQL text (:func:`fetch_rows`); other backends go through
ibis as before.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir

from clinnova_explore.cdm.source import CdmSource

__all__ = [
    "PLANS",
    "RAW_SQL_BACKENDS",
    "SQL",
    "LruCache",
    "backend_key",
    "clear",
    "fetch_rows",
    "source_signature",
    "uses_memory_tables",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

RAW_SQL_BACKENDS = frozenset({"duckdb", "postgres"})
"""Backends whose connection runs cached SQL text directly."""


class LruCache(Generic[K, V]):
    """A thread-safe mapping that forgets its least recently used entries beyond ``maxsize``.

    Parameters
    ----------
    maxsize
        Entries kept (at least 1).
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"an LRU cache needs room for at least one entry, not {maxsize}")
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value under ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            self.misses += 1
            return None

    def put(self, key: K, value: V) -> None:
        """Store ``value`` under ``key``, dropping the oldest entry when full."""
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry and reset the hit and miss counters."""
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0

    def values(self) -> list[V]:
        """The stored values, least recently used first."""
        with self._lock:
            return list(self._data.values())

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


SQL: LruCache[Hashable, str] = LruCache(256)
"""(definition hash, what, source signature) -> compiled SQL text."""

PLANS: LruCache[Hashable, tuple[str, ...]] = LruCache(256)
"""(definition hash, what, backend key) -> names of the CDM tables the compilation read."""

_TABLES: LruCache[ops.Node, tuple[str, tuple[tuple[str, str], ...]]] = LruCache(1024)
"""ibis table node -> (its SQL, its schema); nodes are immutable, so entries never go stale."""


def clear() -> None:
    """Forget every cached SQL text, plan and table signature (e.g. between tests)."""
    for cache in (SQL, PLANS, _TABLES):
        cache.clear()


def backend_key(con: ibis.BaseBackend) -> tuple[str, str]:
    """What selects the SQL compiler: the backend class and the backend name."""
    cls = type(con)
    return (f"{cls.__module__}.{cls.__qualname__}", str(getattr(con, "name", "")))


def _table_signature(
    con: ibis.BaseBackend, table: ir.Table
) -> tuple[str, tuple[tuple[str, str], ...]]:
    node = table.op()
    known = _TABLES.get(node)
    if known is None:
        schema = tuple((name, str(dtype)) for name, dtype in table.schema().items())
        compile_sql = getattr(con, "compile", None)
        text = str(compile_sql(table)) if compile_sql is not None else repr(node)
        known = (text, schema)
        _TABLES.put(node, known)
    return known


def source_signature(
    cdm: CdmSource, tables: Iterable[str], given: Mapping[str, ir.Table] | None = None
) -> Hashable:
    """What a cohort's SQL on ``cdm`` depends on, besides the definition.

    Parameters
    ----------
    cdm
        The CDM source.
    tables
        Names of the CDM tables the compiled query reads.
    given
        Tables already looked up (by name), so that they are not asked for again.

    Returns
    -------
    Hashable
        Equal for two sources only if the SQL compiled on them is the same text: the source
        type, the backend, and each table's name, SQL and schema.
    """
    con = cdm.connect()
    cls = type(cdm)
    parts: list[Hashable] = [f"{cls.__module__}.{cls.__qualname__}", backend_key(con)]
    for name in sorted(set(tables)):
        table = given[name] if given is not None and name in given else cdm.table(name)
        parts.append((name, _table_signature(con, table)))
    return tuple(parts)


def uses_memory_tables(expr: ir.Expr) -> bool:
    """Whether ``expr`` reads in-memory tables, which exist only on the connection it was
    built with (its SQL text must not be run elsewhere)."""
    return bool(expr.op().find(ops.InMemoryTable))


def fetch_rows(con: ibis.BaseBackend, sql: str) -> list[tuple[Any, ...]]:
    """Run SQL text on a DuckDB or PostgreSQL ibis backend and return every row.

    Raises
    ------
    ValueError
        If the backend is not one of :data:`RAW_SQL_BACKENDS`.
    """
    name = getattr(con, "name", "")
    if name not in RAW_SQL_BACKENDS:
        raise ValueError(f"cannot run SQL text on a {name!r} backend; execute the expression")
    result = con.raw_sql(sql)
    if name == "duckdb":  # the connection itself: nothing to close
        return list(result.fetchall())
    try:  # a PostgreSQL cursor
        return list(result.fetchall())
    finally:
        result.close()
