"""Kaplan-Meier estimator with Greenwood variance, pointwise CIs, medians and risk tables.

Everything is computed from an event table (:func:`~.counts.event_table`), so the rows never
leave the database and a federated fit is :func:`kaplan_meier_from_event_table` applied to the
sum of the sites' event tables.

Confidence intervals (``conf_type``), with ``g(t) = sum d / (n (n - d))`` (Greenwood) and
``z`` the normal quantile:

``"log"``
    ``S * exp(+-z sqrt(g))`` capped at 1: R ``survfit``'s default (``conf.type = "log"``).
``"log-log"``
    ``S ** exp(+-z sqrt(g) / log S)``: the "exponential Greenwood" interval; this is what
    lifelines' ``KaplanMeierFitter`` reports (its only choice) and R's ``conf.type = "log-log"``.
``"plain"``
    ``S +- z * std_err`` clipped to ``[0, 1]``.

Before the first event the bounds are 1. Where ``S`` reaches 0 the Greenwood sum is infinite:
``std_err`` is NaN and both bounds are 0 (lifelines reports 1 there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import ibis.expr.types as ir
import numpy as np
import pandas as pd

from clinnova_explore.analysis.result import Provenance
from clinnova_explore.analysis.survival.counts import event_table

ConfType = Literal["log", "log-log", "plain"]
CONF_TYPES: tuple[str, ...] = ("log", "log-log", "plain")
ALL = "all"


def _bounds(
    s: np.ndarray, g: np.ndarray, z: float, conf_type: str
) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.sqrt(g)
        if conf_type == "log":
            lower, upper = s * np.exp(-z * root), np.minimum(s * np.exp(z * root), 1.0)
        elif conf_type == "log-log":
            v = np.log(s)
            lower = np.exp(-np.exp(np.log(-v) - z * root / v))
            upper = np.exp(-np.exp(np.log(-v) + z * root / v))
        else:
            se = s * root
            lower, upper = np.clip(s - z * se, 0.0, 1.0), np.clip(s + z * se, 0.0, 1.0)
    start = s >= 1.0
    dead = s <= 0.0
    lower = np.where(start, 1.0, np.where(dead, 0.0, lower))
    upper = np.where(start, 1.0, np.where(dead, 0.0, upper))
    return lower, upper


def kaplan_meier_from_event_table(
    table: pd.DataFrame,
    *,
    group: str | None = None,
    conf_type: ConfType = "log",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Kaplan-Meier curves from an event table (pure function, no data access).

    Parameters
    ----------
    table
        Event table with columns ``[group], time, n_at_risk, n_events, n_censored``, sorted by
        ``(group, time)`` as :func:`~.counts.event_table` returns it.
    group
        Grouping column of ``table``, or None for one curve labelled ``"all"``.
    conf_type
        ``"log"``, ``"log-log"`` (equals lifelines) or ``"plain"``; see the module docstring.
    alpha
        1 - confidence level of the pointwise bands.

    Returns
    -------
    pandas.DataFrame
        Columns ``group, time, n_at_risk, n_events, n_censored, survival, std_err, lower,
        upper``; ``std_err`` is Greenwood's standard error of the survival itself.
    """
    if conf_type not in CONF_TYPES:
        raise ValueError(f"conf_type must be one of {CONF_TYPES}, got {conf_type!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    # the standard library's quantile (Wichura's AS241, ~1e-16) spares a scipy import
    z = NormalDist().inv_cdf(1 - alpha / 2)
    out = table.copy()
    if group is None:
        out.insert(0, "group", ALL)
    elif group != "group":
        out = out.rename(columns={group: "group"})
    n = out["n_at_risk"].to_numpy(dtype="float64")
    d = out["n_events"].to_numpy(dtype="float64")
    keys = out["group"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.log1p(-d / n)
        gterm = np.where(d > 0, d / (n * (n - d)), 0.0)
    # cumulative sums within group: the table is sorted by group, so cumsum minus group offset
    cells = pd.Series(keys).ne(pd.Series(keys).shift()).cumsum().to_numpy()
    log_s = pd.Series(step).groupby(cells).cumsum().to_numpy()
    g = pd.Series(gterm).groupby(cells).cumsum().to_numpy()
    s = np.exp(log_s)
    s = np.where(np.isneginf(log_s), 0.0, s)
    with np.errstate(invalid="ignore"):
        se = np.where(s > 0, s * np.sqrt(g), np.nan)
    lower, upper = _bounds(s, g, z, conf_type)
    out["survival"], out["std_err"], out["lower"], out["upper"] = s, se, lower, upper
    cols = ["group", "time", "n_at_risk", "n_events", "n_censored", "survival", "std_err"]
    return out[[*cols, "lower", "upper"]].reset_index(drop=True)


def _first_at_or_below(times: np.ndarray, curve: np.ndarray, q: float) -> float:
    hit = np.flatnonzero(curve <= q)
    return float(times[hit[0]]) if hit.size else float("inf")


@dataclass(frozen=True)
class KaplanMeierResult:
    """Kaplan-Meier curves per group.

    Attributes
    ----------
    summary
        One row per group and time with something observed: ``group, time, n_at_risk,
        n_events, n_censored, survival, std_err, lower, upper``.
    conf_type, alpha
        How the pointwise bands were computed.
    group
        Name of the grouping column (None for a single curve labelled ``"all"``).
    weights
        Name of the case-weight column, if the curves are weighted.
    provenance
        How the result was made (set by federated and pooled runs).
    """

    summary: pd.DataFrame
    conf_type: str
    alpha: float
    group: str | None = None
    weights: str | None = None
    provenance: Provenance | None = None

    def plot(self, **kw: Any) -> Any:
        """Curves with bands and a number-at-risk table (``viz.survival_plots.km_plot``)."""
        from clinnova_explore.viz.survival_plots import km_plot

        return km_plot(self, **kw)

    @property
    def groups(self) -> list[object]:
        """Group labels in the order of :attr:`summary`."""
        return list(pd.unique(self.summary["group"]))

    @property
    def median(self) -> pd.DataFrame:
        """Median survival per group with a CI from the pointwise bands.

        The median is the first time where survival is ``<= 0.5`` (``inf`` if never), and the
        CI is where the lower and upper bands first reach 0.5, as lifelines'
        ``median_survival_times(kmf.confidence_interval_)``.
        """
        rows = []
        for key, part in self.summary.groupby("group", sort=False, dropna=False):
            t = part["time"].to_numpy()
            rows.append(
                {
                    "group": key,
                    "median": _first_at_or_below(t, part["survival"].to_numpy(), 0.5),
                    "lower": _first_at_or_below(t, part["lower"].to_numpy(), 0.5),
                    "upper": _first_at_or_below(t, part["upper"].to_numpy(), 0.5),
                }
            )
        return pd.DataFrame(rows).set_index("group")

    def at(self, times: Sequence[float] | np.ndarray) -> pd.DataFrame:
        """Survival, standard error and bands at given times (right-continuous step function).

        Parameters
        ----------
        times
            Times at which to read the curves; before the first time survival is 1.

        Returns
        -------
        pandas.DataFrame
            Columns ``group, time, survival, std_err, lower, upper``.
        """
        grid = np.asarray(times, dtype="float64")
        parts = []
        for key, part in self.summary.groupby("group", sort=False, dropna=False):
            idx = np.searchsorted(part["time"].to_numpy(), grid, side="right") - 1
            frame = pd.DataFrame({"group": key, "time": grid})
            for col, start in (("survival", 1.0), ("std_err", 0.0), ("lower", 1.0), ("upper", 1.0)):
                vals = part[col].to_numpy()
                frame[col] = np.where(idx >= 0, vals[np.maximum(idx, 0)], start)
            parts.append(frame)
        return pd.concat(parts, ignore_index=True)

    def risk_table(self, times: Sequence[float] | np.ndarray) -> pd.DataFrame:
        """Numbers at risk and cumulative events/censorings at given times.

        Parameters
        ----------
        times
            Times for the table (e.g. the ticks under a KM plot).

        Returns
        -------
        pandas.DataFrame
            Columns ``group, time, n_at_risk`` (duration ``>= time``), ``n_events`` and
            ``n_censored`` (cumulative, up to and including ``time``).
        """
        grid = np.asarray(times, dtype="float64")
        parts = []
        for key, part in self.summary.groupby("group", sort=False, dropna=False):
            t = part["time"].to_numpy()
            total = (part["n_events"] + part["n_censored"]).to_numpy()
            after = np.concatenate([total[::-1].cumsum()[::-1], [0]])
            ev = np.concatenate([[0], part["n_events"].to_numpy().cumsum()])
            ce = np.concatenate([[0], part["n_censored"].to_numpy().cumsum()])
            left = np.searchsorted(t, grid, side="left")
            right = np.searchsorted(t, grid, side="right")
            parts.append(
                pd.DataFrame(
                    {
                        "group": key,
                        "time": grid,
                        "n_at_risk": after[left],
                        "n_events": ev[right],
                        "n_censored": ce[right],
                    }
                )
            )
        return pd.concat(parts, ignore_index=True)

    def _repr_html_(self) -> str:
        level = f"{100 * (1 - self.alpha):g}%"
        head = f"<h4>Kaplan-Meier ({level} CI, {self.conf_type})</h4>"
        return head + self.median.to_html() + self.summary.head(20).to_html(index=False)


def kaplan_meier(
    data: pd.DataFrame | ir.Table,
    *,
    duration: str,
    event: str,
    group: str | None = None,
    conf_type: ConfType = "log",
    alpha: float = 0.05,
    weights: str | None = None,
) -> KaplanMeierResult:
    """Kaplan-Meier survival curves, counted in the database for ibis tables.

    Parameters
    ----------
    data
        A pandas DataFrame or ibis table with one row per subject.
    duration, event
        Follow-up time column and event indicator column (1 = event, 0 = censored).
    group
        Optional column to estimate one curve per value.
    conf_type
        ``"log"`` (R's default), ``"log-log"`` (lifelines' bands) or ``"plain"``.
    alpha
        1 - confidence level.
    weights
        Optional column of positive case weights (e.g. inverse probability weights): events
        and numbers at risk become weighted sums, as lifelines'
        ``KaplanMeierFitter.fit(weights=...)``. Greenwood's formula is applied to the weighted
        counts; the bands are then approximate (no account of the weights' variability).

    Returns
    -------
    KaplanMeierResult

    Examples
    --------
    >>> df = pd.DataFrame({"t": [1, 2, 2, 3], "e": [1, 0, 1, 1]})
    >>> kaplan_meier(df, duration="t", event="e").summary[["time", "survival"]]
       time  survival
    0   1.0      0.75
    1   2.0      0.50
    2   3.0      0.00
    """
    table = event_table(
        data, duration, event, by=() if group is None else (group,), weights=weights
    )
    summary = kaplan_meier_from_event_table(table, group=group, conf_type=conf_type, alpha=alpha)
    return KaplanMeierResult(
        summary=summary, conf_type=conf_type, alpha=alpha, group=group, weights=weights
    )
