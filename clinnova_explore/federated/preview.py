"""What each site would release for an analysis, shown before anything is released.

A :class:`Preview` gathers the sites' :class:`~clinnova_explore.federated.protocol.SitePreview`
answers (table shapes and columns, names of scalar values, suppressed cells, refusals, encoded
size) and the status of every site asked. It holds no released numbers: a site answers a
preview without letting its aggregates leave, and logs the request as a ``preview`` entry.
Made by :func:`clinnova_explore.analysis.contract.preview` and :meth:`Federation.preview`.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pandas as pd

from clinnova_explore.analysis.contract import exchange_round
from clinnova_explore.federated.protocol import SitePreview, SiteStatus
from clinnova_explore.federated.steps import (
    CountSpec,
    CountStep,
    DesignSpec,
    DesignStep,
    EventTableSpec,
    EventTableStep,
)
from clinnova_explore.federated.table_site import SITE_COLUMN

if TYPE_CHECKING:
    from clinnova_explore.federated.federation import Federation

__all__ = ["Preview", "preview_federation"]

_COLUMNS = ["site", "status", "table", "rows", "columns", "suppressed", "refused", "bytes"]


@dataclass(frozen=True)
class Preview:
    """What each site would release for one analysis (round).

    Parameters
    ----------
    analysis
        The analysis name.
    sites
        One :class:`SitePreview` per site that answered, in site order.
    statuses
        ``{site: SiteStatus}`` for every site asked (down or failing sites included).
    notes
        Anything the coordinator adds (e.g. how many numbers each model round releases).
    """

    analysis: str
    sites: Sequence[SitePreview]
    statuses: Mapping[str, SiteStatus] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "sites", tuple(self.sites))
        object.__setattr__(self, "statuses", dict(self.statuses))
        object.__setattr__(self, "notes", tuple(self.notes))

    def __len__(self) -> int:
        return len(self.sites)

    def __iter__(self) -> Iterator[SitePreview]:
        return iter(self.sites)

    def site(self, site_id: str) -> SitePreview:
        """The preview of one site (``KeyError`` naming the sites that answered)."""
        for item in self.sites:
            if item.site == site_id:
                return item
        raise KeyError(f"no preview from site {site_id!r}; answered: {[p.site for p in self]}")

    @property
    def refusals(self) -> dict[str, str]:
        """``{site: rule}`` for every site whose policy would refuse."""
        return {p.site: p.refused for p in self.sites if p.refused is not None}

    @property
    def failed(self) -> dict[str, str]:
        """``{site: status}`` for every site that did not answer (down, timeout, error)."""
        return {k: str(v) for k, v in self.statuses.items() if v.failed}

    @property
    def suppressed(self) -> tuple[str, ...]:
        """Labels of every cell the sites would suppress."""
        return tuple(cell for p in self.sites for cell in p.suppressed)

    @property
    def summary(self) -> pd.DataFrame:
        """One row per site and payload table (one row for a site without tables).

        Columns: ``site, status, table, rows, columns, suppressed`` (cells suppressed at
        that site), ``refused`` (the rule, or empty), ``bytes`` (the encoded payload).
        """
        rows: list[dict[str, object]] = []
        answered = {p.site: p for p in self.sites}
        order = list(self.statuses) or list(answered)
        for site_id in order:
            status = self.statuses.get(site_id)
            item = answered.get(site_id)
            state = str(status) if status is not None else "ok"
            if item is None:
                rows.append(
                    {
                        "site": site_id,
                        "status": state,
                        "table": "",
                        "rows": 0,
                        "columns": 0,
                        "suppressed": 0,
                        "refused": "",
                        "bytes": 0,
                    }
                )
                continue
            base = {
                "site": site_id,
                "status": state,
                "suppressed": len(item.suppressed),
                "refused": item.refused or "",
                "bytes": item.nbytes,
            }
            if not item.shapes:
                rows.append({**base, "table": "", "rows": 0, "columns": 0})
            for name, (n_rows, n_cols) in item.shapes.items():
                rows.append({**base, "table": name, "rows": n_rows, "columns": n_cols})
        return pd.DataFrame(rows, columns=_COLUMNS).astype(
            {"rows": "int64", "columns": "int64", "suppressed": "int64", "bytes": "int64"}
        )

    def __str__(self) -> str:
        lines = [f"Preview of {self.analysis!r} (nothing released):"]
        statuses: dict[str, SiteStatus | None] = {p.site: None for p in self}
        statuses.update(self.statuses)
        for site_id, status in statuses.items():
            item = next((p for p in self.sites if p.site == site_id), None)
            if item is None:
                lines.append(f"  {site_id}: {status}")
            elif item.refused is not None:
                lines.append(f"  {site_id}: refused ({item.refused})")
            else:
                tables = ", ".join(f"{k} {r}x{c}" for k, (r, c) in item.shapes.items())
                values = f"; values {', '.join(item.values)}" if item.values else ""
                cells = f"; {len(item.suppressed)} suppressed cell(s)" if item.suppressed else ""
                lines.append(
                    f"  {site_id}: {tables or 'no tables'}{values}{cells} ({item.nbytes} bytes)"
                )
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        table = self.summary.to_html(index=False, border=0)
        extra = []
        if self.suppressed:
            cells = "".join(f"<li>{html.escape(c)}</li>" for c in self.suppressed)
            extra.append(f"<details><summary>Suppressed cells</summary><ul>{cells}</ul></details>")
        extra.extend(f"<p>{html.escape(note)}</p>" for note in self.notes)
        return (
            f"<div class='clinnova-preview'><strong>Preview of "
            f"{html.escape(self.analysis)}</strong> <em>(nothing released)</em>"
            f"{table}{''.join(extra)}</div>"
        )


# ---------------------------------------------------------------------- Federation.preview

_IGNORED = frozenset({"conf_type", "alpha", "ties", "robust", "tol", "max_iter"})
"""Arguments that change how the coordinator combines, not what a site releases."""


def _take(method: str, kwargs: dict[str, Any], required: tuple[str, ...], **optional: Any) -> Any:
    unknown = set(kwargs) - set(required) - set(optional) - _IGNORED
    if unknown:
        raise TypeError(f"preview({method!r}): unexpected argument(s) {sorted(unknown)}")
    missing = [k for k in required if k not in kwargs]
    if missing:
        raise TypeError(f"preview({method!r}): missing argument(s) {missing}")
    return SimpleNamespace(**{**optional, **kwargs})


def _plan(method: str, kwargs: dict[str, Any]) -> tuple[Any, Any, tuple[str, ...]]:
    """The first round of ``method``: (step, spec, notes)."""
    if method == "kaplan_meier":
        a = _take(method, kwargs, ("duration", "event"), group=None, weights=None)
        by: tuple[str, ...] = () if a.group is None else (a.group,)
        return EventTableStep(), EventTableSpec(a.duration, a.event, by, a.weights), ()
    if method == "logrank":
        a = _take(method, kwargs, ("duration", "event", "group"), strata=None)
        keys: tuple[str, ...] = (a.group,) if a.strata is None else (a.strata, a.group)
        return EventTableStep(), EventTableSpec(a.duration, a.event, keys), ()
    if method == "count":
        a = _take(method, kwargs, (), by=(), event=None)
        by = (a.by,) if isinstance(a.by, str) else tuple(a.by)
        return CountStep(), CountSpec(by, a.event), ()
    if method == "cox":
        a = _take(
            method,
            kwargs,
            ("duration", "event", "covariates"),
            strata=SITE_COLUMN,
            weights=None,
            cluster=None,
        )
        covs = tuple(a.covariates)
        keys = () if a.strata is None else (a.strata,) if isinstance(a.strata, str) else a.strata
        extra = tuple(c for c in (a.weights, a.cluster) if c is not None)
        spec = DesignSpec((a.duration, a.event, *covs, *keys, *extra), covs, a.event, a.weights)
        return DesignStep("cox"), spec, _newton_note("Cox", len(covs), "stratum")
    if method == "logistic":
        a = _take(method, kwargs, ("outcome", "covariates"), weights=None)
        covs = tuple(a.covariates)
        weights = (a.weights,) if a.weights else ()
        spec = DesignSpec((a.outcome, *covs, *weights), covs, a.outcome, a.weights)
        return DesignStep("logistic"), spec, _newton_note("logistic", 1 + len(covs), "site")
    raise ValueError(
        f"cannot preview {method!r}; use one of kaplan_meier, logrank, cox, logistic, count"
    )


def _newton_note(model: str, p: int, per: str) -> tuple[str, ...]:
    return (
        f"This preview is the model's first round (rows, events, categorical levels). Each "
        f"Newton round of the {model} model then releases, per {per}, 1 log-likelihood, p "
        f"scores and p x p information entries: 1 + p + p^2 numbers with p coefficients "
        f"(at least {p} here, {1 + p + p * p} numbers; one more per extra level of a "
        "categorical covariate), and no counts.",
    )


def preview_federation(fed: Federation, method: str, **kwargs: Any) -> Preview:
    """What each site of ``fed`` would release for ``fed.<method>(**kwargs)`` (first round)."""
    step, spec, notes = _plan(method, dict(kwargs))
    result = exchange_round(
        step,
        spec,
        fed.sites,
        runner=fed.runner,
        transport=fed.transport,
        kind="preview",
        on_failure="allow_partial",
    )
    return Preview(step.name, result.previews, result.statuses, notes)
