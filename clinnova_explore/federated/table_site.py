"""A site that holds one analysis table (one row per subject) and a disclosure policy.

A :class:`TableSite` is what the federated analyses in :mod:`clinnova_explore.federated` run
against: the site's own rows (a pandas DataFrame, or a lazy ibis table that stays in the site's
database), its :class:`~clinnova_explore.catalog.DisclosurePolicy`, and any site-local
derivations (:meth:`TableSite.with_transform`). It satisfies the
:class:`~clinnova_explore.cdm.source.CdmSource` protocol as far as the analysis contract needs
(``id``, ``policy``; ``table("data")`` and ``connect()`` give the rows), so the contract's
``release``/``collect`` run its local steps unchanged. Only local steps touch the rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import ibis
import ibis.expr.types as ir
import pandas as pd

from clinnova_explore.catalog import DisclosurePolicy
from clinnova_explore.federated.protocol import TableRecipe

if TYPE_CHECKING:
    from clinnova_explore.analysis.payload import Payload
    from clinnova_explore.analysis.result import Provenance

__all__ = ["DATA_TABLE", "SITE_COLUMN", "SiteAnalysis", "TableSite", "Transform", "fetch"]

DATA_TABLE = "data"
SITE_COLUMN = "site"
_SHARED = (
    "parent",
    "relation",
    "frame",
    "recipe",
)  # cache entries that do not depend on the policy
Transform = Callable[[pd.DataFrame], pd.DataFrame]


def fetch(table: ir.Table) -> pd.DataFrame:
    """The rows of a lazy table, in an order that does not depend on the engine.

    SQL promises no row order, and sums over rows (Cox, logistic, moments) round differently
    in another order; sorting by every column in pandas (not in SQL, where PostgreSQL orders
    text by its collation and DuckDB by bytes) makes DuckDB and PostgreSQL sites give
    bit-identical results. Equal rows are interchangeable.
    """
    df = table.to_pandas()
    if len(df) < 2 or len(df.columns) == 0:
        return df
    try:
        return df.sort_values(
            list(df.columns), kind="mergesort", na_position="last", ignore_index=True
        )
    except TypeError:  # unorderable mixed objects: keep the engine's order
        return df


@dataclass(frozen=True, eq=False)
class TableSite:
    """One site's analysis table.

    Parameters
    ----------
    id
        Site id (used in payloads, provenance and messages).
    policy
        What the site lets leave it.
    data
        One row per subject: a pandas DataFrame or a lazy ibis table. It has a ``site``
        column (:meth:`Federation.from_tables` adds one holding ``id`` when missing).
        ``None`` when the rows stay at a remote site (then ``recipe`` says how the site
        builds them).
    transforms
        ``(label, function)`` pairs applied in order to the rows (as a DataFrame) at the site.
    recipe
        How the site builds these rows from its own CDM (sent with every request; the
        site adds ``transforms``).
    origin
        The CDM source the rows come from (a catalog site: its audit log records the
        requests), if any.
    """

    id: str
    policy: DisclosurePolicy
    data: pd.DataFrame | ir.Table | None
    transforms: tuple[tuple[str, Transform], ...] = ()
    recipe: TableRecipe | None = None
    origin: Any = field(default=None, repr=False)
    _cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("a site id must be a non-empty string")
        if self.data is None and self.recipe is None:
            raise TypeError(f"site {self.id!r}: give its rows (data) or a recipe to build them")
        if self.data is not None and not isinstance(self.data, pd.DataFrame | ir.Table):
            raise TypeError(
                f"site {self.id!r}: data must be a pandas DataFrame or an ibis table, "
                f"not {type(self.data).__name__}"
            )

    @property
    def remote(self) -> bool:
        """True when the rows stay at the site (``data`` is None; only ``recipe`` is here)."""
        return self.data is None

    def _rows(self) -> pd.DataFrame | ir.Table:
        if self.data is None:
            raise TypeError(
                f"site {self.id!r}: its rows stay at the site (a remote runner builds them "
                "there from the recipe); run analyses through the federation instead"
            )
        return self.data

    def request_recipe(self) -> TableRecipe | None:
        """The recipe sent to the site: ``recipe`` with this site's transforms."""
        if self.recipe is None:
            return None
        made = self._cache.get("recipe")
        if made is None:
            made = self._cache["recipe"] = dataclasses.replace(
                self.recipe, transforms=self.transforms
            )
        return made

    @property
    def columns(self) -> list[str]:
        """Column names of the rows (after the transforms)."""
        if self.transforms:
            return list(self.frame().columns)
        return list(self._rows().columns)

    def with_transform(self, fn: Transform, label: str) -> TableSite:
        """A copy of this site with one more site-local derivation.

        The copy starts from this site's rows (computed once, then shared).
        """
        site = TableSite(
            self.id,
            self.policy,
            self.data,
            (*self.transforms, (label, fn)),
            self.recipe,
            self.origin,
        )
        site._cache["parent"] = self
        return site

    def with_policy(self, policy: DisclosurePolicy) -> TableSite:
        """The same rows and derivations under another policy (sharing computed rows)."""
        site = TableSite(self.id, policy, self.data, self.transforms, self.recipe, self.origin)
        site._cache.update({k: v for k, v in self._cache.items() if k in _SHARED})
        return site

    def _base(self) -> pd.DataFrame | ir.Table:
        """The rows before any transform; a lazy table is computed once at the site.

        It goes into a temporary table of the site's own database (``ibis.Table.cache``),
        so later rounds do not recompute an expensive query.
        """
        if "parent" in self._cache:
            return self._cache["parent"]._base()
        data = self._rows()
        if isinstance(data, ir.Table):
            return self.cached("relation", data.cache)
        return data

    def relation(self) -> pd.DataFrame | ir.Table:
        """The rows for a local step: the (cached) lazy table when there is nothing to derive."""
        return self.frame() if self.transforms else self._base()

    def _derived(self) -> pd.DataFrame:
        parent = self._cache.get("parent")
        if parent is not None:
            df, todo = parent.frame(), self.transforms[len(parent.transforms) :]
        else:
            base = self._base()
            df = fetch(base) if isinstance(base, ir.Table) else base.copy()
            todo = self.transforms
        for label, fn in todo:
            out = fn(df)
            if not isinstance(out, pd.DataFrame):
                raise TypeError(
                    f"site {self.id!r}: transform {label!r} returned "
                    f"{type(out).__name__}, not a DataFrame"
                )
            df = out
        return df

    def frame(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The rows as a DataFrame (fetched at the site), transforms applied.

        Parameters
        ----------
        columns
            Only these columns (selected in the database when the data are lazy).
        """
        data = self.cached("frame", self._derived) if self.transforms else self._base()
        if columns is not None:
            missing = [c for c in columns if c not in data.columns]
            if missing:
                raise KeyError(
                    f"site {self.id!r}: column(s) {missing} not in the data; "
                    f"available: {list(data.columns)}"
                )
            data = data[list(columns)]
        return fetch(data) if isinstance(data, ir.Table) else data.copy()

    def n_rows(self) -> int:
        """Number of rows (counted in the database for lazy data)."""
        data = self.relation()
        if isinstance(data, ir.Table):
            return int(data.count().to_pyarrow().as_py())
        return len(data)

    # CdmSource protocol: what the analysis contract and runners may call

    def table(self, name: str) -> ir.Table:
        """The rows as an ibis table (``name`` must be ``"data"``)."""
        if name != DATA_TABLE:
            raise KeyError(f"site {self.id!r} holds one table, {DATA_TABLE!r}, not {name!r}")
        data = self.relation()
        return data if isinstance(data, ir.Table) else ibis.memtable(data)

    def connect(self) -> ibis.BaseBackend:
        """The backend of lazy data (pandas data live in this process: an error)."""
        data = self.relation()
        if isinstance(data, ir.Table):
            return data.get_backend()
        raise TypeError(f"site {self.id!r} holds a pandas DataFrame, not a database table")

    def release(self) -> None:
        """Drop what this site computed and kept (its temporary table and cached rows).

        Call it (through :meth:`Federation.close`) before closing the site's database
        connection; the site stays usable and recomputes on the next request.
        """
        cached = self._cache.pop("relation", None)
        if isinstance(cached, ir.Table) and hasattr(cached, "release"):
            # the connection may already be closed, which drops the table anyway
            with contextlib.suppress(Exception):
                cached.release()
        for key in [k for k in self._cache if k != "parent"]:
            del self._cache[key]

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        """A value computed once per site and key (e.g. a prepared Cox block across rounds)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


SpecT = TypeVar("SpecT", contravariant=True)


class SiteAnalysis(Protocol[SpecT]):
    """An analysis whose local step runs on a :class:`TableSite` (the contract's shape)."""

    @property
    def name(self) -> str:
        """The analysis name sites allow or refuse (``policy.allowed_analyses``)."""
        ...

    def local(self, site: TableSite, spec: SpecT) -> Payload:
        """Aggregate at one site, apply its policy, return a payload."""
        ...

    def combine(self, payloads: Sequence[Payload], spec: SpecT, provenance: Provenance) -> Any:
        """Combine decoded payloads."""
        ...


# ---------------------------------------------------------------------- building sites


def recipe_rows(source: Any, recipe: TableRecipe) -> ir.Table:
    """The rows ``recipe`` names, as a lazy table of ``source``'s own database.

    ``"time_to_event"``: :func:`~clinnova_explore.analysis.survival.tte.time_to_event` of the
    recipe's spec; ``"table"``: the named table. A ``site`` column holding the source's id is
    added when the rows have none. The recipe's transforms are not applied here (a
    :class:`TableSite` applies them).
    """
    site_id = str(source.id)
    data: ir.Table
    if recipe.kind == "time_to_event":
        from clinnova_explore.analysis.survival.tte import time_to_event

        data = time_to_event(source, recipe.spec)
    elif recipe.kind == "table":
        if not isinstance(recipe.spec, str):
            raise TypeError(
                f"site {site_id!r}: a 'table' recipe names a table (str), "
                f"not {type(recipe.spec).__name__}"
            )
        data = source.connect().table(recipe.spec)
    else:
        raise ValueError(
            f"site {site_id!r}: unknown recipe kind {recipe.kind!r} "
            "(use 'time_to_event' or 'table')"
        )
    if SITE_COLUMN not in data.columns:
        data = data.mutate(**{SITE_COLUMN: ibis.literal(site_id)})
    return data


def recipe_sites(sources: Iterable[Any], recipe: TableRecipe, *, remote: bool) -> list[TableSite]:
    """One :class:`TableSite` per catalog site for ``recipe``: with its lazy rows in process,
    or holding no rows at all when a remote runner's sites build them (``remote``)."""
    return [
        TableSite(
            s.id, s.policy, None if remote else recipe_rows(s, recipe), recipe=recipe, origin=s
        )
        for s in sources
    ]


def sites_from_tables(
    tables: Mapping[str, pd.DataFrame | ir.Table],
    policy: DisclosurePolicy | Mapping[str, DisclosurePolicy] | None,
) -> list[TableSite]:
    """One :class:`TableSite` per ``{site id: rows}`` (a ``site`` column added if missing).

    Raises
    ------
    ValueError
        ``policy`` is a mapping without an entry for some site.
    """
    sites = []
    for site_id, data in tables.items():
        if isinstance(policy, Mapping):
            if site_id not in policy:
                raise ValueError(
                    f"no policy for site {site_id!r}; policies given for {sorted(policy)}"
                )
            site_policy = policy[site_id]
        else:
            site_policy = policy if policy is not None else DisclosurePolicy()
        if SITE_COLUMN not in data.columns:
            if isinstance(data, ir.Table):
                data = data.mutate(**{SITE_COLUMN: ibis.literal(site_id)})
            else:
                data = data.assign(**{SITE_COLUMN: site_id})
        sites.append(TableSite(site_id, site_policy, data))
    return sites
