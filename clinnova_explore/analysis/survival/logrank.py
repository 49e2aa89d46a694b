"""Log-rank test for k groups, optionally stratified, from per-time event tables.

For each stratum and each distinct time ``t`` with ``n`` at risk and ``d`` events in all
groups, group ``j`` contributes observed ``d_j`` and expected ``n_j d / n``; the
variance-covariance of the ``O - E`` vector is
``sum d (n - d) / (n - 1) * n_j / n * (delta_jk - n_k / n)``. Stratified tests add ``O - E``
and ``V`` over strata. The statistic is the quadratic form of ``O - E`` with the inverse of
``V`` after dropping one group (which one does not matter), chi-square with ``k - 1`` df.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis.expr.types as ir
import numpy as np
import pandas as pd
from scipy.stats import chi2

from clinnova_explore.analysis.result import Provenance
from clinnova_explore.analysis.survival.counts import (
    SurvivalInputError,
    at_risk_on_grid,
    event_table,
)


@dataclass(frozen=True)
class LogrankResult:
    """Result of a (stratified) log-rank test.

    Attributes
    ----------
    statistic
        Chi-square statistic.
    df
        Degrees of freedom (number of groups - 1).
    p_value
        Upper tail probability of ``statistic`` under chi-square(``df``).
    summary
        Per group: ``observed``, ``expected`` and ``observed_minus_expected`` events.
    covariance
        Variance-covariance matrix of ``O - E`` (groups x groups).
    provenance
        How the result was made (set by federated and pooled runs).
    """

    statistic: float
    df: int
    p_value: float
    summary: pd.DataFrame
    covariance: pd.DataFrame
    provenance: Provenance | None = None

    def _repr_html_(self) -> str:
        head = (
            f"<h4>Log-rank test</h4><p>chi-square = {self.statistic:.4g} on {self.df} df, "
            f"p = {self.p_value:.4g}</p>"
        )
        return head + self.summary.to_html()


def _stratum_terms(
    table: pd.DataFrame, group: str, groups: list[object]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    times = np.unique(table["time"].to_numpy())
    k = len(groups)
    d = np.zeros((k, len(times)))
    n = np.zeros((k, len(times)))
    for j, key in enumerate(groups):
        part = table[table[group] == key]
        if len(part):
            d[j], n[j] = at_risk_on_grid(part, times)
    d_all, n_all = d.sum(axis=0), n.sum(axis=0)
    observed = d.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(n_all > 0, n / n_all, 0.0)
        w = np.where(n_all > 1, d_all * (n_all - d_all) / (n_all - 1), 0.0)
    expected = (frac * d_all).sum(axis=1)
    cov = np.einsum("t,jt,jk->jk", w, frac, np.eye(k)) - np.einsum("t,jt,kt->jk", w, frac, frac)
    return observed, expected, cov


def logrank_from_event_table(
    table: pd.DataFrame, *, group: str, strata: str | None = None
) -> LogrankResult:
    """Log-rank test from an event table counted by ``(strata, group)`` (pure function).

    Parameters
    ----------
    table
        Event table with columns ``[strata], group, time, n_events, n_censored``.
    group
        Column with the groups compared.
    strata
        Optional stratum column; the test adds ``O - E`` and ``V`` over strata.

    Returns
    -------
    LogrankResult
    """
    if table[group].isna().any():
        raise SurvivalInputError(
            f"group column {group!r} has missing values; drop them or give them a label"
        )
    if strata is not None and table[strata].isna().any():
        raise SurvivalInputError(
            f"strata column {strata!r} has missing values; drop them or give them a label"
        )
    groups = sorted(pd.unique(table[group]).tolist())
    if len(groups) < 2:
        raise ValueError(f"the log-rank test needs at least 2 groups in {group!r}, got {groups}")
    k = len(groups)
    observed, expected, cov = np.zeros(k), np.zeros(k), np.zeros((k, k))
    parts = [table] if strata is None else [p for _, p in table.groupby(strata, sort=True)]
    for part in parts:
        o, e, v = _stratum_terms(part, group, groups)
        observed, expected, cov = observed + o, expected + e, cov + v
    diff = observed - expected
    try:
        stat = float(diff[1:] @ np.linalg.solve(cov[1:, 1:], diff[1:]))
    except np.linalg.LinAlgError:
        raise ValueError(
            f"the log-rank variance matrix is singular: some group of {group!r} has nobody at "
            "risk at any event time (within every stratum); drop or merge such groups"
        ) from None
    summary = pd.DataFrame(
        {"observed": observed, "expected": expected, "observed_minus_expected": diff},
        index=pd.Index(groups, name=group),
    )
    return LogrankResult(
        statistic=stat,
        df=k - 1,
        p_value=float(chi2.sf(stat, k - 1)),
        summary=summary,
        covariance=pd.DataFrame(cov, index=summary.index, columns=summary.index),
    )


def logrank(
    data: pd.DataFrame | ir.Table,
    *,
    duration: str,
    event: str,
    group: str,
    strata: str | None = None,
) -> LogrankResult:
    """Log-rank test comparing survival between groups, optionally stratified.

    Parameters
    ----------
    data
        A pandas DataFrame or ibis table with one row per subject.
    duration, event
        Follow-up time column and event indicator column (1 = event, 0 = censored).
    group
        Column with the groups compared (2 or more).
    strata
        Optional column; the test compares groups within strata and adds up.

    Returns
    -------
    LogrankResult
        ``statistic``, ``df``, ``p_value`` and a per-group ``summary``.
    """
    by = (group,) if strata is None else (strata, group)
    table = event_table(data, duration, event, by=by)
    return logrank_from_event_table(table, group=group, strata=strata)
