"""The data catalog: the only place that knows where each site's data live.

``data_catalog.yaml`` lists the sites of a federation with their backend, location, country,
CDM version and disclosure policy. :meth:`Catalog.load` reads it;
``catalog.site("basel").table("person")`` is a lazy ibis table on that site's backend.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Literal

import ibis
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from clinnova_explore.backends import connect, resolve_env

__all__ = ["Catalog", "CatalogError", "DisclosurePolicy", "Site", "default_catalog_path"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class CatalogError(ValueError):
    """The catalog file is missing or invalid; the message names the file and field."""


def default_catalog_path() -> Path:
    """Where :meth:`Catalog.load` looks when no path is given.

    ``$CLINNOVA_CATALOG`` when set, else the project's ``data_catalog.yaml``.
    """
    env = os.environ.get("CLINNOVA_CATALOG")
    return Path(env) if env else PROJECT_ROOT / "data_catalog.yaml"


class DisclosurePolicy(BaseModel):
    """What a site lets leave it. Enforced at the site before any payload is released.

    Each rule has a DataSHIELD counterpart (the ``nfilter.*`` settings of an Opal server) where
    one exists; the defaults are at least as strict as DataSHIELD's.

    Attributes
    ----------
    min_cell_count
        Released counts in ``(0, min_cell_count)`` are suppressed (DataSHIELD ``nfilter.tab``,
        default 3; 5 here, the most common threshold of statistical offices).
    min_cohort_size
        A site refuses to analyse fewer persons (DataSHIELD ``nfilter.subset``, default 3).
    km_time_bin_days
        Kaplan-Meier and log-rank event times are rounded up to the end of bins of this many
        days (no DataSHIELD counterpart; dsSurvival adds noise to plotted curves instead).
    km_min_events_per_bin
        Event-table times are merged until each released event and censoring count is 0 or at
        least this (``None``: ``min_cell_count``; it can only be raised above it). DataSHIELD
        applies ``nfilter.tab`` to such tables.
    max_params_per_obs
        Largest ratio of model coefficients to persons (DataSHIELD ``nfilter.glm``, default
        0.33; 0.1 here, a tenth of a coefficient per person).
    allow_quantiles
        Medians and quartiles may leave the site (DataSHIELD's ``ds.quantileMean`` releases
        them unconditionally).
    allowed_analyses
        The analyses this site runs (DataSHIELD: the methods of the server's profile).
    differencing_guard
        Refuse a request whose cohort differs from one already released by 1 to
        ``min_cell_count - 1`` persons (DataSHIELD checks only each subset's own size,
        ``nfilter.subset``; this closes the subtraction attack between two queries).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_cell_count: int = Field(5, ge=1, description="Counts below this are suppressed.")
    min_cohort_size: int = Field(10, ge=1, description="Smallest cohort a site analyses.")
    km_time_bin_days: int = Field(
        1, ge=1, description="Kaplan-Meier event times are binned to this many days."
    )
    km_min_events_per_bin: int | None = Field(
        None,
        ge=1,
        description="Each released Kaplan-Meier event/censoring count is 0 or at least this "
        "(None: min_cell_count).",
    )
    max_params_per_obs: float = Field(
        0.1, gt=0, description="Largest ratio of model parameters to persons."
    )
    allow_quantiles: bool = Field(True, description="Medians/IQRs may leave the site.")
    allowed_analyses: tuple[str, ...] = Field(
        (
            "cohort",
            "characterize",
            "incidence",
            "survival",
            "cox",
            "logistic",
            "pathways",
            "quality",
        ),
        description="Analyses this site runs.",
    )
    differencing_guard: bool = Field(
        True,
        description="Refuse cohorts that differ from a released one by fewer persons than "
        "min_cell_count.",
    )
    analysis_tables: tuple[str, ...] = Field(
        (),
        description="Tables of the site's database a requester may name as an analysis table "
        "(e.g. a prepared `tte`); the CDM itself is reached only through the analyses.",
    )

    @model_validator(mode="after")
    def _km_bin_at_least_cell(self) -> DisclosurePolicy:
        k = self.km_min_events_per_bin
        if k is not None and k < self.min_cell_count:
            raise ValueError(
                f"km_min_events_per_bin ({k}) is below min_cell_count ({self.min_cell_count}); "
                "every released count already obeys min_cell_count: raise it or leave it unset"
            )
        return self

    @property
    def km_min_count(self) -> int:
        """The smallest non-zero event or censoring count a released event table may hold."""
        return self.km_min_events_per_bin or self.min_cell_count


class Site(BaseModel):
    """One hospital's data source in the federation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    country: str
    region: str = ""
    backend: Literal["duckdb", "postgres"] = "duckdb"
    location: str | None = Field(
        None, description="DuckDB path, relative to the catalog file or absolute."
    )
    location_env: str | None = Field(
        None, description="Environment variable holding a PostgreSQL connection URL."
    )
    schema_: str | None = Field(None, alias="schema")
    cdm_version: str = "5.4"
    policy: DisclosurePolicy = DisclosurePolicy()
    audit: str | None = Field(
        None,
        description="The site's audit log, relative to the catalog file or absolute "
        "(default: audit/<site id>.jsonl beside the catalog).",
    )
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("cdm_version")
    @classmethod
    def _known_version(cls, v: str) -> str:
        if v not in {"5.3", "5.4"}:
            raise ValueError(f"cdm_version {v!r} is not supported (5.3 or 5.4)")
        return v

    @model_validator(mode="after")
    def _no_secrets_in_catalog(self) -> Site:
        if self.backend == "postgres" and self.location_env is None:
            raise ValueError(
                "a postgres site needs `location_env` (the environment variable holding its "
                "connection URL); connection strings do not belong in the catalog"
            )
        return self

    def resolved_location(self) -> str:
        """The concrete DuckDB path or PostgreSQL URL of this site."""
        if self.location_env:
            return resolve_env(self.location_env, site_id=self.id)
        if self.location is None:
            raise CatalogError(f"site {self.id!r}: neither `location` nor `location_env` is set")
        path = Path(self.location)
        return str(path if path.is_absolute() else (self.base_dir / path).resolve())

    def audit_path(self) -> Path:
        """Where this site's audit log lives (absolute).

        ``audit`` when set (relative to the catalog file, or absolute), else
        ``<catalog dir>/audit/<site id>.jsonl``.

        Examples
        --------
        >>> Site(id="basel", name="Basel", country="CH", base_dir=Path("/data")).audit_path()
        PosixPath('/data/audit/basel.jsonl')
        """
        path = Path(self.audit) if self.audit else Path("audit") / f"{self.id}.jsonl"
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @cached_property
    def _con(self) -> ibis.BaseBackend:
        return connect(
            self.backend,
            self.resolved_location(),
            read_only=self.backend == "duckdb",
            schema=self.schema_,
            site_id=self.id,
        )

    def connect(self) -> ibis.BaseBackend:
        """The site's ibis backend (opened once, then reused)."""
        return self._con

    @cached_property
    def _table_cache(self) -> dict[str, ibis.Table]:
        return {}

    def close(self) -> None:
        """Close the site's connection if one is open (it reopens on next use)."""
        self.__dict__.pop("_table_cache", None)
        con = self.__dict__.pop("_con", None)
        if con is not None:
            con.disconnect()

    def table(self, name: str) -> ibis.Table:
        """A lazy ibis table of this site's CDM, e.g. ``site.table("person")``.

        Tables found once are remembered until :meth:`close` (listing a database's tables costs
        a round trip per call).
        """
        key = name.lower()
        cached = self._table_cache.get(key)
        if cached is not None:
            return cached
        con = self.connect()
        if key not in con.list_tables():
            raise CatalogError(
                f"site {self.id!r}: table {name!r} not found in {self.backend} database; "
                "is this an OMOP CDM built by `clinnova-explore build`?"
            )
        table = self._table_cache[key] = con.table(key)
        return table


class Catalog(BaseModel):
    """A federation: a named, ordered set of sites."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "clinnova"
    sites: tuple[Site, ...]
    path: Path | None = Field(default=None, exclude=True)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Catalog:
        """Read a catalog file.

        Parameters
        ----------
        path
            The YAML file; default :func:`default_catalog_path`.

        Returns
        -------
        Catalog

        Raises
        ------
        CatalogError
            If the file is missing or a field is invalid (the message names both).

        Examples
        --------
        >>> cat = Catalog.load("demo/data_catalog.yaml")  # doctest: +SKIP
        >>> cat.site("basel").table("person").count().execute()  # doctest: +SKIP
        1000
        """
        p = Path(path) if path is not None else default_catalog_path()
        if not p.exists():
            raise CatalogError(
                f"catalog file {p} not found; run `make demo` or "
                "`clinnova-explore build --out DIR` to create one"
            )
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise CatalogError(f"{p}: not valid YAML: {exc}") from None
        base = p.resolve().parent
        sites = raw.get("sites")
        if not isinstance(sites, list) or not sites:
            raise CatalogError(f"{p}: `sites` must be a non-empty list")
        for s in sites:
            if isinstance(s, dict):
                s["base_dir"] = base
        try:
            cat = cls.model_validate({**raw, "path": p.resolve()})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise CatalogError(f"{p}: field `{where}`: {first['msg']}") from None
        ids = [s.id for s in cat.sites]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise CatalogError(f"{p}: duplicate site ids {dupes}")
        return cat

    @property
    def site_ids(self) -> list[str]:
        """Site ids in catalog order."""
        return [s.id for s in self.sites]

    def site(self, site_id: str) -> Site:
        """Return one site by id.

        Raises
        ------
        KeyError
            With the list of known ids.
        """
        for s in self.sites:
            if s.id == site_id:
                return s
        raise KeyError(f"no site {site_id!r} in catalog; known: {', '.join(self.site_ids)}")

    def close(self) -> None:
        """Close every open site connection."""
        for s in self.sites:
            s.close()

    def __iter__(self) -> Iterator[Site]:  # type: ignore[override]
        return iter(self.sites)

    def __len__(self) -> int:
        return len(self.sites)

    def to_yaml(self) -> str:
        """Serialize to catalog YAML (paths as given, secrets never included)."""
        data = {
            "name": self.name,
            "sites": [
                s.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"base_dir"})
                for s in self.sites
            ],
        }
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
