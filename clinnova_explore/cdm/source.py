"""Any OMOP CDM database as a cohort input: a catalog site or a DuckDB file given by path.

:func:`open_cdm` accepts a :class:`~clinnova_explore.catalog.Site`, a site id of a catalog, or
the path of a DuckDB file holding an OMOP CDM 5.3 or 5.4 (for example OHDSI's Eunomia). Every
source answers the :class:`CdmSource` protocol: ``table(name)`` is a lazy ibis table with
lower-case column names, so the cohort compiler never cares where the data came from.

A :class:`DuckDBFileCdm` opens its file read-only and finds the CDM tables whatever the case of
their names and in whichever schema they live. ``table(name)`` renames and casts lazily (a
projection, no copy) so that each table looks like the project's CDM 5.4 subset
(:data:`clinnova_explore.cdm.schema.SCHEMAS`):

- column names are lower-cased;
- CDM 5.3 names are mapped to their 5.4 names (``admitting_source_concept_id`` becomes
  ``admitted_from_concept_id``, ``discharge_to_*`` becomes ``discharged_to_*``);
- columns stored with another type (``value_as_number`` as text, ``ancestor_concept_id`` as a
  double) are cast to the CDM type (text that is no number becomes NULL), and 5.4 columns the
  file lacks are typed NULLs; the CDM columns come first, in CDM order, then any others;
- a table exported from an empty CSV with its header taken as data (columns ``column0``,
  ``column1``, ... holding the header names, as in some Eunomia builds) is read as empty.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol, runtime_checkable

import duckdb
import ibis
import ibis.expr.datatypes as dt

from clinnova_explore.catalog import Catalog, CatalogError, DisclosurePolicy, Site
from clinnova_explore.cdm.schema import SCHEMAS

__all__ = ["REQUIRED_TABLES", "CdmSource", "CdmSourceError", "DuckDBFileCdm", "open_cdm"]

REQUIRED_TABLES = ("person", "observation_period")
"""Tables without which a database is not an OMOP CDM."""

# CDM 5.3 column name -> CDM 5.4 name, per table
_RENAMED_IN_54: dict[str, dict[str, str]] = {
    "visit_occurrence": {
        "admitting_source_concept_id": "admitted_from_concept_id",
        "admitting_source_value": "admitted_from_source_value",
        "discharge_to_concept_id": "discharged_to_concept_id",
        "discharge_to_source_value": "discharged_to_source_value",
    },
    "visit_detail": {
        "admitting_source_concept_id": "admitted_from_concept_id",
        "admitting_source_value": "admitted_from_source_value",
        "discharge_to_concept_id": "discharged_to_concept_id",
        "discharge_to_source_value": "discharged_to_source_value",
        "visit_detail_parent_id": "parent_visit_detail_id",
    },
}

# a column only a 5.4 (resp. 5.3) CDM has, used when cdm_source does not say
_ONLY_54 = (
    ("visit_occurrence", "admitted_from_concept_id"),
    ("procedure_occurrence", "procedure_end_date"),
)
_ONLY_53 = (("visit_occurrence", "admitting_source_concept_id"),)

_HEADER_ONLY = re.compile(r"column\d+")


class CdmSourceError(ValueError):
    """A CDM source cannot be opened or lacks what was asked; the message says what to do."""


@runtime_checkable
class CdmSource(Protocol):
    """Where cohorts and analyses read an OMOP CDM from (a catalog ``Site`` satisfies it)."""

    @property
    def id(self) -> str:
        """Short name of the source, used in results and messages."""
        ...

    @property
    def policy(self) -> DisclosurePolicy:
        """What the source lets leave it."""
        ...

    def table(self, name: str) -> ibis.Table:
        """A lazy ibis table of the CDM with lower-case column names."""
        ...

    def connect(self) -> ibis.BaseBackend:
        """The ibis backend the tables live on."""
        ...


class DuckDBFileCdm:
    """An OMOP CDM 5.3/5.4 held in a DuckDB file, opened read-only.

    Parameters
    ----------
    path
        The DuckDB file.
    schema
        Schema holding the CDM tables; by default the one holding ``person`` (tables missing
        there, such as a vocabulary kept in its own schema, are looked up in the others).
    policy
        The disclosure policy analyses apply to this source (default :class:`DisclosurePolicy`).
    id
        Name of the source (default: the file name without suffix).

    Raises
    ------
    CdmSourceError
        If the file does not exist, is not a DuckDB database, or lacks the tables every CDM has
        (``person``, ``observation_period``).

    Examples
    --------
    >>> cdm = DuckDBFileCdm("eunomia.duckdb")  # doctest: +SKIP
    >>> cdm.cdm_version, cdm.table("person").count().execute()  # doctest: +SKIP
    ('5.3', 2694)
    """

    backend = "duckdb"

    def __init__(
        self,
        path: str | Path,
        *,
        schema: str | None = None,
        policy: DisclosurePolicy | None = None,
        id: str | None = None,
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_file():
            what = "is not a file" if self.path.exists() else "does not exist"
            raise CdmSourceError(
                f"CDM file {self.path} {what}; give the path of a DuckDB file holding an OMOP "
                "CDM, or a site id from the data catalog"
            )
        self._id = id or self.path.stem
        self._policy = policy or DisclosurePolicy()
        self._open: ibis.BaseBackend | None = None
        try:
            self._tables = self._locate_tables(schema)
        except CdmSourceError:
            self.close()
            raise
        missing = [t for t in REQUIRED_TABLES if t not in self._tables]
        if missing:
            found = ", ".join(sorted(self._tables)) or "no tables"
            where = f"schema {schema!r}" if schema else "any schema"
            self.close()
            raise CdmSourceError(
                f"{self.path} is not an OMOP CDM: table(s) {', '.join(missing)} not found in "
                f"{where} (found: {found})"
            )
        self.cdm_version = self._detect_version()

    # ------------------------------------------------------------------ protocol

    @property
    def id(self) -> str:
        """The source name (default: the file stem)."""
        return self._id

    @property
    def policy(self) -> DisclosurePolicy:
        """The disclosure policy applied to this source."""
        return self._policy

    def connect(self) -> ibis.BaseBackend:
        """The read-only ibis DuckDB backend of the file."""
        return self._con

    def resolved_location(self) -> str:
        """The absolute path of the DuckDB file (as :meth:`Site.resolved_location`)."""
        return str(self.path)

    @property
    def _con(self) -> ibis.BaseBackend:
        if self._open is None:
            try:
                self._open = ibis.duckdb.connect(str(self.path), read_only=True)
            except duckdb.Error as exc:
                raise CdmSourceError(
                    f"cannot open {self.path} as a DuckDB database ({type(exc).__name__}: {exc})"
                ) from None
        return self._open

    def close(self) -> None:
        """Close the connection to the file (it reopens on next use)."""
        if self._open is not None:
            self._open.disconnect()
            self._open = None

    def has_table(self, name: str) -> bool:
        """Whether the CDM holds a table of that name (any case)."""
        return name.lower() in self._tables

    def table(self, name: str) -> ibis.Table:
        """A lazy ibis table of the CDM, normalised to the CDM 5.4 names and types.

        Raises
        ------
        CdmSourceError
            If the CDM has no such table.
        """
        key = name.lower()
        if key not in self._tables:
            raise CdmSourceError(
                f"{self.id}: table {name!r} not found in {self.path} "
                f"(found: {', '.join(sorted(self._tables))})"
            )
        schema, actual = self._tables[key]
        raw = self._con.table(actual, database=schema)
        if all(_HEADER_ONLY.fullmatch(c) for c in raw.columns):
            return self._header_only(key, raw)
        renames = _RENAMED_IN_54.get(key, {})
        # DuckDB column names are unique regardless of case, so lower-casing cannot collide
        lowered = {renames.get(col.lower(), col.lower()): col for col in raw.columns}
        renamed = raw.rename({new: old for new, old in lowered.items() if new != old})
        return _conform(renamed, SCHEMAS.get(key))

    # ------------------------------------------------------------------ internals

    def _locate_tables(self, schema: str | None) -> dict[str, tuple[str, str]]:
        rows = self._con.raw_sql(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database()"
        ).fetchall()
        by_schema: dict[str, dict[str, str]] = {}
        for sch, tab in rows:
            by_schema.setdefault(sch, {})[tab.lower()] = tab
        if schema is not None:
            match = {s for s in by_schema if s.lower() == schema.lower()}
            if not match:
                raise CdmSourceError(
                    f"{self.path}: schema {schema!r} not found "
                    f"(schemas with tables: {', '.join(sorted(by_schema)) or 'none'})"
                )
            first = match.pop()
        else:
            holding = sorted(s for s, tabs in by_schema.items() if "person" in tabs)
            first = holding[0] if holding else "main"
        tables = {low: (first, tab) for low, tab in by_schema.get(first, {}).items()}
        if schema is None:
            for sch in sorted(by_schema):
                for low, tab in by_schema[sch].items():
                    tables.setdefault(low, (sch, tab))
        return tables

    def _detect_version(self) -> str:
        if "cdm_source" in self._tables:
            tab = self.table("cdm_source")
            if "cdm_version" in tab.columns:
                values = tab.select("cdm_version").limit(5).to_pyarrow().column(0).to_pylist()
                for value in values:
                    found = re.search(r"(\d+)\.(\d+)", str(value or ""))
                    if found and found.group(1) == "5" and found.group(2) in ("3", "4"):
                        return f"5.{found.group(2)}"
        if any(self._raw_has(t, c) for t, c in _ONLY_54):
            return "5.4"
        if any(self._raw_has(t, c) for t, c in _ONLY_53):
            return "5.3"
        return "5.4"

    def _raw_has(self, table: str, column: str) -> bool:
        if table not in self._tables:
            return False
        schema, actual = self._tables[table]
        cols = self._con.table(actual, database=schema).columns
        return column in {c.lower() for c in cols}

    def _header_only(self, key: str, raw: ibis.Table) -> ibis.Table:
        rows = raw.limit(2).to_pyarrow().to_pylist()
        renames = _RENAMED_IN_54.get(key, {})
        names = [str(v).strip().lower() for v in rows[0].values()] if len(rows) == 1 else []
        names = [renames.get(n, n) for n in names]
        if not names or not all(re.fullmatch(r"[a-z_][a-z0-9_]*", n) for n in names):
            raise CdmSourceError(
                f"{self.id}: table {key!r} has only generic columns ({', '.join(raw.columns)}) "
                "and no header row of column names; re-import it with its header"
            )
        target = SCHEMAS.get(key)
        types = {n: (target[n] if target is not None and n in target else dt.string) for n in names}
        empty = raw.filter(ibis.literal(False)).select(
            **{n: ibis.null().cast(t) for n, t in types.items()}
        )
        return _conform(empty, target)

    def __repr__(self) -> str:
        return f"DuckDBFileCdm({str(self.path)!r}, cdm_version={self.cdm_version!r})"


def _same_type(have: dt.DataType, want: dt.DataType) -> bool:
    """Equal types, ignoring nullability and the precision of timestamps (no cast needed)."""
    if have.is_timestamp() and want.is_timestamp():
        return have.timezone == want.timezone
    return have.copy(nullable=True) == want.copy(nullable=True)


def _conform(table: ibis.Table, target: ibis.Schema | None) -> ibis.Table:
    """Cast columns to the CDM types and add missing CDM columns as typed NULLs (lazily)."""
    if target is None:
        return table
    have = table.schema()
    if all(n in have and _same_type(have[n], t) for n, t in target.items()):
        return table
    cols: dict[str, ibis.Value] = {}
    for n, t in target.items():
        if n not in have:
            cols[n] = ibis.null().cast(t)
        elif _same_type(have[n], t):
            cols[n] = table[n]
        elif have[n].is_string():
            cols[n] = table[n].try_cast(t)
        else:
            cols[n] = table[n].cast(t)
    extra = {n: table[n] for n in table.columns if n not in target}
    return table.select(**cols, **extra)


def open_cdm(target: str | Path | Site | CdmSource, *, catalog: Catalog | None = None) -> CdmSource:
    """Open an OMOP CDM: a catalog site, a site id, or the path of a DuckDB file.

    Parameters
    ----------
    target
        A :class:`Site` (or any :class:`CdmSource`, returned as is), the id of a site in
        ``catalog``, or the path of a DuckDB file holding a CDM 5.3/5.4.
    catalog
        The catalog site ids are looked up in (default: :meth:`Catalog.load`'s default file).

    Returns
    -------
    CdmSource

    Raises
    ------
    CdmSourceError
        If the target is neither an existing DuckDB file nor a known site id, or the file is
        not a CDM.

    Examples
    --------
    >>> cdm = open_cdm("tests/eunomia.duckdb")  # doctest: +SKIP
    >>> site = open_cdm("basel", catalog=Catalog.load("demo/data_catalog.yaml"))  # doctest: +SKIP
    """
    if isinstance(target, Site | DuckDBFileCdm):
        return target
    if isinstance(target, Path):
        return DuckDBFileCdm(target)
    if not isinstance(target, str):
        if isinstance(target, CdmSource):
            return target
        raise CdmSourceError(
            f"cannot open a CDM from a {type(target).__name__}; give a Site, a site id or a path"
        )
    if catalog is not None and target in catalog.site_ids:
        return catalog.site(target)
    if _looks_like_path(target):
        return DuckDBFileCdm(target)
    if catalog is None:
        try:
            catalog = Catalog.load()
        except CatalogError as exc:
            raise CdmSourceError(
                f"{target!r} is neither an existing DuckDB file nor a site id (no catalog to "
                f"look it up in: {exc})"
            ) from None
    if target in catalog.site_ids:
        return catalog.site(target)
    raise CdmSourceError(
        f"{target!r} is neither an existing DuckDB file nor a site of catalog "
        f"{catalog.path or catalog.name} (sites: {', '.join(catalog.site_ids)})"
    )


def _looks_like_path(text: str) -> bool:
    p = Path(text).expanduser()
    return p.exists() or p.suffix.lower() in {".duckdb", ".db", ".ddb"} or "/" in text
