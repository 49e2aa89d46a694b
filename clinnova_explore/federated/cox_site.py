"""The site side of a federated stratified Cox model: one Newton round at a given ``beta``.

The site prepares its Cox block once (sorted by stratum and time, cached across rounds) and,
for each coefficient vector the coordinator sends, returns the log partial likelihood, score
and information of each of its strata, plus, when asked for robust variance, the summed outer
products of its subjects' (or clusters') score residuals. Clusters are taken within a site
(the site column joins the cluster key), so they never cross sites.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from clinnova_explore.analysis.logistic import INTERCEPT, check_weights, logistic_design
from clinnova_explore.analysis.payload import Payload
from clinnova_explore.analysis.survival import cox_stats
from clinnova_explore.federated.table_site import SITE_COLUMN, TableSite

__all__ = ["CoxRound", "cox_design", "cox_round_payload", "stratum_labels"]


@dataclass(frozen=True)
class CoxRound:
    """One Newton round of a Cox model at ``beta`` (see :class:`~.steps.CoxStep`)."""

    duration: str
    event: str
    covariates: tuple[str, ...]
    levels: tuple[tuple[str, tuple[str, ...]], ...]
    strata: tuple[str, ...]
    beta: tuple[float, ...]
    ties: Literal["efron", "breslow"] = "efron"
    weights: str | None = None
    cluster: str | None = None
    robust: bool = False

    def design_key(self) -> tuple[Any, ...]:
        """Everything but ``beta`` and ``robust`` (the site caches its block under this key)."""
        return (
            "cox",
            self.duration,
            self.event,
            self.covariates,
            self.levels,
            self.strata,
            self.weights,
            self.cluster,
        )


def stratum_labels(df: pd.DataFrame, strata: tuple[str, ...]) -> np.ndarray | None:
    """One readable label per row (``"site=a, sex=F"``), or None without strata."""
    if not strata:
        return None
    for col in strata:
        if df[col].isna().any():
            raise ValueError(f"strata column {col!r} has missing values")
    parts = [col + "=" + df[col].astype(str) for col in strata]
    label = parts[0]
    for part in parts[1:]:
        label = label + ", " + part
    return label.to_numpy(dtype=object)


def cox_design(df: pd.DataFrame, spec: CoxRound) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(time, event, x)`` of a site's rows, checked, with the coordinator's levels."""
    t = df[spec.duration]
    if not pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t) or t.isna().any():
        raise ValueError(
            f"duration column {spec.duration!r} must be numeric without missing values"
        )
    if (t < 0).any():
        raise ValueError(f"duration column {spec.duration!r} has negative values")
    e = df[spec.event]
    if e.isna().any() or not e.isin([0, 1, True, False]).all():
        raise ValueError(f"event column {spec.event!r} must hold only 0/1 (or booleans)")
    x = logistic_design(df, spec.covariates, dict(spec.levels)).drop(columns=INTERCEPT)
    return t.to_numpy(np.float64), e.to_numpy().astype(bool), x.to_numpy(np.float64)


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    return name in inspect.signature(fn).parameters


def _prepare(site: TableSite, spec: CoxRound) -> tuple[Any, int]:
    cols = [spec.duration, spec.event, *spec.covariates, *spec.strata]
    if spec.weights:
        cols.append(spec.weights)
    if spec.cluster:
        cols.append(spec.cluster)
        if SITE_COLUMN in site.columns:
            cols.append(SITE_COLUMN)
    df = site.frame(list(dict.fromkeys(cols)))
    time, event, x = cox_design(df, spec)
    kwargs: dict[str, Any] = {}
    if spec.weights is not None:
        if not _accepts(cox_stats.make_block, "weights"):
            raise NotImplementedError("weighted Cox needs make_block(..., weights=)")
        kwargs["weights"] = check_weights(df, spec.weights)
    if spec.cluster is not None:
        if not _accepts(cox_stats.make_block, "cluster"):
            raise NotImplementedError("clustered Cox needs make_block(..., cluster=)")
        if df[spec.cluster].isna().any():
            raise ValueError(f"cluster column {spec.cluster!r} has missing values")
        key = df[spec.cluster].astype(str)
        if SITE_COLUMN in df.columns:
            key = df[SITE_COLUMN].astype(str) + "|" + key
        kwargs["cluster"] = key.to_numpy(dtype=object)
    labels = stratum_labels(df, spec.strata)
    block = cox_stats.make_block(time, event, x, labels, **kwargs)
    return block, len(df)


def cox_round_payload(
    name: str,
    site: TableSite,
    spec: CoxRound,
    refusal: Callable[[TableSite, str, int, int | None], Payload | None],
) -> Payload:
    """The site's answer to one Cox round (a refusal when the policy says so)."""
    from clinnova_explore.federated.steps import stats_table

    block, n = site.cached(spec.design_key(), lambda: _prepare(site, spec))
    refused = refusal(site, name, n, len(spec.beta))
    if refused is not None:
        return refused
    beta = np.asarray(spec.beta, dtype=np.float64)
    stats = cox_stats.block_stats(beta, block, spec.ties)
    rows = [
        ("" if key is None else str(key), st.loglik, st.score, st.information)
        for key, st in stats.items()
    ]
    meat = None
    if spec.robust:
        block_meat = getattr(cox_stats, "block_meat", None)
        if block_meat is None:
            raise NotImplementedError("robust Cox needs cox_stats.block_meat")
        meat = np.asarray(block_meat(beta, block, spec.ties), dtype=np.float64)
    return Payload(analysis=name, site=site.id, tables={"stats": stats_table(rows, meat)})
