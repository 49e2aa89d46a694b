"""Connect a site to its ibis backend: a thin adapter, nothing else.

The catalog says *where* a site's data live; this module turns that into a live ibis
connection. DuckDB (one file per site) is the default; PostgreSQL sites read their
connection string from an environment variable so that no secret sits in the catalog.
"""

from __future__ import annotations

import os
from pathlib import Path

import ibis

__all__ = ["SUPPORTED_BACKENDS", "BackendError", "connect"]

SUPPORTED_BACKENDS = ("duckdb", "postgres")


class BackendError(RuntimeError):
    """A site's backend cannot be reached or is misconfigured."""


def connect(
    backend: str,
    location: str | Path,
    *,
    read_only: bool = False,
    schema: str | None = None,
    site_id: str = "?",
) -> ibis.BaseBackend:
    """Open an ibis connection for one site.

    Parameters
    ----------
    backend
        ``"duckdb"`` or ``"postgres"``.
    location
        For DuckDB, the path of the database file. For PostgreSQL, a connection URL
        (``postgresql://user@host:port/db``); the catalog resolves it from an environment
        variable before calling this.
    read_only
        Open DuckDB files read-only (several processes may then read one file).
    schema
        PostgreSQL schema holding the CDM tables (default: the server's search path).
    site_id
        Used in error messages only.

    Returns
    -------
    ibis.BaseBackend
        A live connection; tables are lazy ibis expressions.

    Raises
    ------
    BackendError
        If the backend is unknown, the DuckDB file is missing, or the server refuses.
    """
    if backend == "duckdb":
        path = Path(location)
        if str(location) != ":memory:" and not path.exists():
            raise BackendError(
                f"site {site_id!r}: DuckDB file {path} does not exist; "
                "build it with `clinnova-explore build` or fix `location` in the catalog"
            )
        return ibis.duckdb.connect(str(path), read_only=read_only)
    if backend == "postgres":
        try:
            con = ibis.connect(str(location))
        except Exception as exc:  # driver errors vary; name the site, hide the secret
            raise BackendError(
                f"site {site_id!r}: cannot connect to PostgreSQL ({type(exc).__name__}: "
                f"{_redact(str(exc), str(location))})"
            ) from None
        if schema:
            con.raw_sql(f'SET search_path TO "{schema}"')
        return con
    raise BackendError(
        f"site {site_id!r}: unknown backend {backend!r}; use one of {', '.join(SUPPORTED_BACKENDS)}"
    )


def resolve_env(name: str, *, site_id: str) -> str:
    """Read a connection string from an environment variable, or explain what is missing."""
    value = os.environ.get(name)
    if not value:
        raise BackendError(
            f"site {site_id!r}: environment variable {name} is not set; it must hold the "
            "connection URL (secrets never go in the catalog file)"
        )
    return value


def _redact(message: str, url: str) -> str:
    if "@" in url and "://" in url:
        creds = url.split("://", 1)[1].split("@", 1)[0]
        if ":" in creds:
            message = message.replace(creds.split(":", 1)[1], "***")
    return message
