"""Pooled mode: every site's CDM as one virtual site, for checking federated results.

:func:`pooled_site` opens an in-memory DuckDB database, attaches each site's DuckDB file
read-only and defines one view per CDM table that unions the sites' rows. Identifiers collide
across sites (each site numbers its persons from 1), so every id column (``person_id``,
``visit_occurrence_id``, each table's own key, ``subject_id``, ``provider_id``, ...; never a
``*_concept_id``) becomes ``id * n_sites + site_index``. One formula for every column keeps
every reference consistent and keeps the order of ids within a site. Vocabulary tables come
from the first site that has them; the policy is the strictest of the sites' policies.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir

from clinnova_explore.catalog import DisclosurePolicy
from clinnova_explore.cdm.schema import SCHEMAS

if TYPE_CHECKING:
    from clinnova_explore.catalog import Catalog
    from clinnova_explore.cdm.source import CdmSource

__all__ = ["POOLED_ID", "PooledCdm", "PooledModeError", "pooled_site", "site_label", "strictest"]

POOLED_ID = "pooled"
VOCABULARY = ("concept", "concept_ancestor", "concept_relationship")
_SQL_TYPES = {
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "string": "VARCHAR",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


class PooledModeError(ValueError):
    """Pooled mode cannot be built for these sites (the message says which and why)."""


def is_id_column(column: str) -> bool:
    """True for identifier columns that pooling renumbers (not concept ids).

    Examples
    --------
    >>> [is_id_column(c) for c in ("person_id", "subject_id", "drug_concept_id", "quantity")]
    [True, True, False, False]
    """
    if column in ("subject_id",):
        return True
    return (
        column.endswith("_id")
        and not column.endswith("concept_id")
        and column not in ("cohort_definition_id",)
    )


def strictest(policies: Iterable[DisclosurePolicy]) -> DisclosurePolicy:
    """The policy that satisfies every given policy (max minimums, allowed by all)."""
    ps = list(policies)
    allowed = [a for a in ps[0].allowed_analyses if all(a in p.allowed_analyses for p in ps)]
    return DisclosurePolicy(
        min_cell_count=max(p.min_cell_count for p in ps),
        min_cohort_size=max(p.min_cohort_size for p in ps),
        km_time_bin_days=max(p.km_time_bin_days for p in ps),
        km_min_events_per_bin=max(p.km_min_count for p in ps),
        max_params_per_obs=min(p.max_params_per_obs for p in ps),
        allow_quantiles=all(p.allow_quantiles for p in ps),
        allowed_analyses=tuple(allowed),
        differencing_guard=any(p.differencing_guard for p in ps),
        analysis_tables=tuple(
            t for t in ps[0].analysis_tables if all(t in p.analysis_tables for p in ps)
        ),
    )


class PooledCdm:
    """A virtual CDM source over several DuckDB site files (see :func:`pooled_site`).

    Attributes
    ----------
    id
        ``"pooled"``.
    policy
        The strictest policy of the pooled sites.
    sites
        The pooled sites' ids; site ``i``'s ids are ``original * len(sites) + i``.
    """

    cdm_version = "5.4"

    def __init__(self, con: ibis.BaseBackend, sites: tuple[str, ...], policy: DisclosurePolicy):
        self.id = POOLED_ID
        self.policy = policy
        self.sites = sites
        self._con: ibis.BaseBackend | None = con

    def connect(self) -> ibis.BaseBackend:
        """The in-memory DuckDB backend holding the pooled views."""
        if self._con is None:
            raise PooledModeError("this pooled site was closed; call pooled_site(...) again")
        return self._con

    def table(self, name: str) -> ir.Table:
        """A pooled CDM table (lower-case name), e.g. ``pooled.table("person")``."""
        if name.lower() not in SCHEMAS:
            known = ", ".join(sorted(SCHEMAS))
            raise PooledModeError(f"pooled site: no CDM table {name!r} (known: {known})")
        return self.connect().table(name.lower())

    def site_of(self, ids: ir.IntegerValue) -> ir.StringValue:
        """The site id that a pooled identifier came from."""
        n = len(self.sites)
        return (ids % n).cases(*((i, s) for i, s in enumerate(self.sites)))

    def original_id(self, ids: ir.IntegerValue) -> ir.IntegerValue:
        """A pooled identifier's value at its own site."""
        return (ids - ids % len(self.sites)) // len(self.sites)

    def close(self) -> None:
        """Detach the site files and drop the in-memory database."""
        if self._con is not None:
            self._con.disconnect()
            self._con = None

    def __enter__(self) -> PooledCdm:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PooledCdm(sites={list(self.sites)})"


def site_label(cdm: CdmSource, ids: ir.IntegerValue) -> ir.StringValue:
    """The site of each identifier: per pooled id on a pooled site, else the source's id."""
    if isinstance(cdm, PooledCdm):
        return cdm.site_of(ids)
    return ibis.literal(cdm.id)


def _duckdb_file(site: Any) -> Path:
    backend = getattr(site, "backend", None)
    if backend == "duckdb" and hasattr(site, "resolved_location"):
        path = Path(site.resolved_location())
    elif backend is None and getattr(site, "path", None) is not None:
        path = Path(site.path)
    else:
        kind = f"backend {backend!r}" if backend else f"a {type(site).__name__}"
        raise PooledModeError(
            f"pooled mode needs DuckDB file sites, but site {site.id!r} uses {kind}; run "
            "this analysis with mode='federated', or copy that site into a DuckDB file"
        )
    if not path.exists():
        raise PooledModeError(f"site {site.id!r}: DuckDB file {path} does not exist")
    return path


def _site_tables(con: ibis.BaseBackend, alias: str, site: Any) -> dict[str, tuple[str, str, dict]]:
    """Lower-case table name -> (schema, actual table name, {lower column: actual column})."""
    rows = con.raw_sql(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        f"WHERE table_catalog = '{alias}' ORDER BY table_schema, table_name, ordinal_position"
    ).fetchall()
    found: dict[str, dict[str, tuple[str, dict[str, str]]]] = {}
    for schema, table, column in rows:
        entry = found.setdefault(table.lower(), {}).setdefault(schema, (table, {}))
        entry[1][column.lower()] = column
    named = [getattr(site, a, None) for a in ("schema_", "schema")]
    wanted = next((w for w in named if isinstance(w, str) and w), None)
    out = {}
    for name, by_schema in found.items():
        if name not in SCHEMAS:
            continue
        lower = {s.lower(): s for s in by_schema}
        pick = lower.get(wanted.lower()) if wanted else lower.get("main")
        if pick is None and len(by_schema) == 1 and not wanted:
            pick = next(iter(by_schema))
        if pick is None:
            raise PooledModeError(
                f"site {site.id!r}: table {name!r} is in schemas {sorted(by_schema)}; "
                "say which one holds the CDM (the source's `schema`)"
            )
        out[name] = (pick, *by_schema[pick])
    return out


def _sql_type(dtype: object) -> str:
    return _SQL_TYPES[str(dtype).lstrip("!")]


def _select(table: str, alias: str, found: tuple[str, str, dict], index: int, n: int) -> str:
    """One site's rows of a CDM table, columns in schema order, ids renumbered."""
    schema, actual, columns = found
    parts = []
    for col, dtype in SCHEMAS[table].items():
        source = columns.get(col)
        name = source.replace('"', '""') if source else None
        expr = (
            f'CAST("{name}" AS {_sql_type(dtype)})' if name else f"CAST(NULL AS {_sql_type(dtype)})"
        )
        if source and table not in VOCABULARY and is_id_column(col):
            expr = f"({expr} * {n} + {index})"
        parts.append(f'{expr} AS "{col}"')
    return f'SELECT {", ".join(parts)} FROM "{alias}"."{schema}"."{actual}"'


def _empty(table: str) -> str:
    cols = ", ".join(f'CAST(NULL AS {_sql_type(t)}) AS "{c}"' for c, t in SCHEMAS[table].items())
    return f"SELECT {cols} WHERE false"


def pooled_site(sites: Catalog | Iterable[CdmSource]) -> PooledCdm:
    """One virtual CDM source holding every site's rows, with globally unique ids.

    Parameters
    ----------
    sites
        A catalog or CDM sources backed by DuckDB files (catalog DuckDB sites, or
        ``DuckDBFileCdm`` sources).

    Returns
    -------
    PooledCdm
        Id ``"pooled"``, the strictest policy of the sites, ``table(name)`` for every CDM
        table. Use it as a context manager, or call ``close()``.

    Raises
    ------
    PooledModeError
        If a site is not a DuckDB file, no sites are given, or ids repeat.

    Examples
    --------
    >>> with pooled_site(catalog) as pooled:  # doctest: +SKIP
    ...     pooled.table("person").count().execute() == sum(
    ...         s.table("person").count().execute() for s in catalog)
    True
    """
    site_list = list(sites)
    if not site_list:
        raise PooledModeError("pooled mode needs at least one site")
    ids = tuple(s.id for s in site_list)
    if len(set(ids)) != len(ids):
        raise PooledModeError(f"pooled mode: duplicate site ids in {list(ids)}")
    paths = [_duckdb_file(s) for s in site_list]
    # a named in-memory database: each pooled site is a distinct backend (ibis compares
    # backends by connection parameters, and caches keyed by backend must not mix them up)
    con = ibis.duckdb.connect(f":memory:pooled_{uuid.uuid4().hex}")
    try:
        tables = []
        for i, (site, path) in enumerate(zip(site_list, paths, strict=True)):
            literal = str(path).replace("'", "''")
            con.raw_sql(f"ATTACH '{literal}' AS site{i} (READ_ONLY)")
            tables.append(_site_tables(con, f"site{i}", site))
        n = len(site_list)
        for table in SCHEMAS:
            holders = [i for i in range(n) if table in tables[i]]
            if table in VOCABULARY:
                holders = holders[:1]
            selects = [_select(table, f"site{i}", tables[i][table], i, n) for i in holders]
            body = " UNION ALL ".join(selects) if selects else _empty(table)
            con.raw_sql(f'CREATE VIEW "{table}" AS {body}')
    except Exception:
        con.disconnect()
        raise
    return PooledCdm(con, ids, strictest(s.policy for s in site_list))
