"""Restricted mean survival time (RMST) per group and its difference between groups.

The RMST up to ``tau`` is the area under the Kaplan-Meier curve on ``[0, tau]``. Its variance
is the Greenwood-type (delta-method) variance that R's ``survRM2::rmst2`` reports:

``var = sum_{t_j <= tau} A_j ** 2 * d_j / (n_j (n_j - d_j))``, with ``A_j`` the area under the
curve from ``t_j`` to ``tau``; terms with ``n_j == d_j`` contribute 0 (as in survRM2).

The curves come from :func:`~.km.kaplan_meier`, i.e. from per-time counts aggregated where the
data live (one ``GROUP BY`` for ibis tables). Differences between groups use independent
samples: ``se = sqrt(se_a ** 2 + se_b ** 2)`` with a normal CI and two-sided p-value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ibis.expr.types as ir
import numpy as np
import pandas as pd
from scipy.stats import norm

from clinnova_explore.analysis.survival.km import kaplan_meier


def _rmst_one(
    time: np.ndarray, survival: np.ndarray, n: np.ndarray, d: np.ndarray, tau: float
) -> tuple[float, float]:
    """RMST and its Greenwood-type variance for one sorted Kaplan-Meier curve."""
    keep = time <= tau
    t, s, n, d = time[keep], survival[keep], n[keep], d[keep]
    ev = d > 0
    t, s, n, d = t[ev], s[ev], n[ev], d[ev]
    # step function: value 1 on [0, t_1), s_j on [t_j, t_{j+1}), last step up to tau
    knots = np.concatenate([[0.0], t, [tau]])
    values = np.concatenate([[1.0], s])
    widths = np.diff(knots)
    pieces = values * widths
    rmst = float(pieces.sum())
    # A_j = area from t_j to tau = sum of pieces after index j (pieces[j+1:])
    tail = pieces[::-1].cumsum()[::-1]
    areas = tail[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(n - d > 0, d / (n * (n - d)), 0.0)
    var = float(np.sum(areas**2 * w))
    return rmst, var


@dataclass(frozen=True)
class RMSTResult:
    """Restricted mean survival time per group.

    Attributes
    ----------
    summary
        Indexed by group: ``rmst``, ``variance``, ``se``, ``lower``, ``upper`` (normal CI).
    tau
        Restriction time.
    alpha
        1 - confidence level.
    group
        Grouping column (None for one group labelled ``"all"``).
    """

    summary: pd.DataFrame
    tau: float
    alpha: float
    group: str | None = None

    def difference(self, a: object, b: object) -> pd.Series:
        """RMST of group ``a`` minus that of group ``b``.

        Parameters
        ----------
        a, b
            Group labels (as in the index of :attr:`summary`).

        Returns
        -------
        pandas.Series
            ``difference``, ``se``, ``lower``, ``upper``, ``z`` and two-sided ``p``.

        Raises
        ------
        KeyError
            If a label is not a group of the result.
        """
        for label in (a, b):
            if label not in self.summary.index:
                raise KeyError(f"group {label!r} not in {list(self.summary.index)}")
        ra, rb = self.summary.loc[a], self.summary.loc[b]
        diff = float(ra["rmst"] - rb["rmst"])
        se = math.sqrt(float(ra["variance"] + rb["variance"]))
        z = float(norm.ppf(1 - self.alpha / 2))
        stat = diff / se if se > 0 else float("nan")
        p = float(2 * norm.sf(abs(stat))) if se > 0 else float("nan")
        return pd.Series(
            {
                "difference": diff,
                "se": se,
                "lower": diff - z * se,
                "upper": diff + z * se,
                "z": stat,
                "p": p,
            },
            name=f"{a} - {b}",
        )


def rmst(
    data: pd.DataFrame | ir.Table,
    *,
    duration: str,
    event: str,
    tau: float,
    group: str | None = None,
    alpha: float = 0.05,
) -> RMSTResult:
    """Restricted mean survival time up to ``tau`` per group, with survRM2's variance.

    Parameters
    ----------
    data
        A pandas DataFrame or ibis table with one row per subject.
    duration, event
        Follow-up time column and event indicator column (1 = event, 0 = censored).
    tau
        Restriction time (> 0).
    group
        Optional grouping column.
    alpha
        1 - confidence level of the CIs.

    Returns
    -------
    RMSTResult

    Raises
    ------
    ValueError
        If ``tau`` is not positive and finite or ``alpha`` is not in (0, 1).

    Examples
    --------
    >>> df = pd.DataFrame({"t": [1, 2, 2, 3], "e": [1, 0, 1, 1]})
    >>> float(rmst(df, duration="t", event="e", tau=2.5).summary.loc["all", "rmst"])
    2.0
    """
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be positive and finite, got {tau!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    km = kaplan_meier(data, duration=duration, event=event, group=group, alpha=alpha)
    z = float(norm.ppf(1 - alpha / 2))
    rows = []
    for key, part in km.summary.groupby("group", sort=False, dropna=False):
        value, var = _rmst_one(
            part["time"].to_numpy(dtype="float64"),
            part["survival"].to_numpy(dtype="float64"),
            part["n_at_risk"].to_numpy(dtype="float64"),
            part["n_events"].to_numpy(dtype="float64"),
            float(tau),
        )
        se = math.sqrt(var)
        rows.append(
            {
                "group": key,
                "rmst": value,
                "variance": var,
                "se": se,
                "lower": value - z * se,
                "upper": value + z * se,
            }
        )
    summary = pd.DataFrame(rows).set_index("group")
    return RMSTResult(summary=summary, tau=float(tau), alpha=alpha, group=group)
