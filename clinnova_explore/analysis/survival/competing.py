"""Aalen-Johansen cumulative incidence for competing risks, from per-time counts by cause.

With ``n_j`` at risk just before ``t_j``, ``d_j`` events of any cause and ``d_kj`` events of
the cause of interest ``k`` at ``t_j``, the cumulative incidence function is

``F_k(t) = sum_{t_j <= t} S(t_j-) * d_kj / n_j``, where ``S`` is the all-cause Kaplan-Meier
curve. Tied times are handled exactly (no jittering, unlike lifelines).

The counts per ``(group, time)`` are aggregated in the database for ibis tables (one
``GROUP BY``) and with ``groupby`` for pandas DataFrames; only per-time counts are used.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from clinnova_explore.analysis.survival.counts import SurvivalInputError, check_columns

ALL = "all"


def _check(
    duration: str, event: str, n_null_dur: int, n_null_ev: int, min_dur: object, n_bad: int
) -> None:
    if n_null_dur or n_null_ev:
        raise SurvivalInputError(
            f"columns {duration!r}/{event!r} have missing values; drop or impute them first"
        )
    if min_dur is not None and not pd.isna(min_dur) and float(min_dur) < 0:  # type: ignore[arg-type]
        raise SurvivalInputError(f"duration column {duration!r} has negative values")
    if n_bad:
        raise SurvivalInputError(
            f"event column {event!r} has {n_bad} value(s) that are not integer codes >= 0 "
            "(0 = censored, 1..k = cause)"
        )


def _counts_pandas(
    df: pd.DataFrame, duration: str, event: str, k: int, by: list[str]
) -> pd.DataFrame:
    check_columns(df.columns, [*by, duration, event])
    if not pd.api.types.is_numeric_dtype(df[duration]) or pd.api.types.is_bool_dtype(df[duration]):
        raise SurvivalInputError(f"duration column {duration!r} must be numeric")
    ev = df[event]
    num = pd.to_numeric(ev, errors="coerce")
    bad = int((ev.notna() & (num.isna() | (num < 0) | (num != np.floor(num)))).sum())
    _check(
        duration,
        event,
        int(df[duration].isna().sum()),
        int(ev.isna().sum()),
        df[duration].min() if len(df) else None,
        bad,
    )
    work = pd.DataFrame({c: df[c] for c in by})
    work["time"] = df[duration].astype("float64")
    work["n_total"] = 1
    work["n_events"] = (num > 0).astype("int64")
    work["n_cause"] = (num == k).astype("int64")
    cols = ["n_total", "n_events", "n_cause"]
    return work.groupby([*by, "time"], dropna=False, observed=True)[cols].sum().reset_index()


def _counts_ibis(t: ir.Table, duration: str, event: str, k: int, by: list[str]) -> pd.DataFrame:
    check_columns(t.columns, [*by, duration, event])
    if not t[duration].type().is_numeric() or t[duration].type().is_boolean():
        raise SurvivalInputError(f"duration column {duration!r} must be numeric")
    ev = t[event].cast("float64")
    row = (
        t.aggregate(
            n_null_dur=t[duration].isnull().sum(),
            n_null_ev=t[event].isnull().sum(),
            min_dur=t[duration].min(),
            n_bad=(ev.notnull() & ((ev < 0) | (ev != ev.floor()))).sum(),
        )
        .to_pandas()
        .iloc[0]
    )
    _check(
        duration,
        event,
        int(row["n_null_dur"] or 0),
        int(row["n_null_ev"] or 0),
        row["min_dur"],
        int(row["n_bad"] or 0),
    )
    agg = (
        t.mutate(
            time=t[duration].cast("float64"),
            _any=(ev > 0).cast("int64"),
            _k=(ev == float(k)).cast("int64"),
        )
        .group_by([*by, "time"])
        .aggregate(
            n_total=ibis._.count(), n_events=ibis._["_any"].sum(), n_cause=ibis._["_k"].sum()
        )
        .to_pandas()
    )
    for c in ("n_total", "n_events", "n_cause"):
        agg[c] = agg[c].astype("int64")
    return agg


def aalen_johansen_from_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """Cumulative incidence from per-time counts of one or more groups (pure function).

    Parameters
    ----------
    counts
        Columns ``group, time, n_total, n_events, n_cause`` (one row per group and time).

    Returns
    -------
    pandas.DataFrame
        Columns ``group, time, n_at_risk, n_events, n_cause, n_censored, survival,
        cumulative_incidence``, sorted by group (first appearance) and time; ``survival`` is
        the all-cause Kaplan-Meier curve.
    """
    parts = []
    for key, part in counts.groupby("group", sort=False, dropna=False):
        p = part.sort_values("time", kind="mergesort").reset_index(drop=True)
        total = p["n_total"].to_numpy(dtype="float64")
        n = total[::-1].cumsum()[::-1]
        d = p["n_events"].to_numpy(dtype="float64")
        dk = p["n_cause"].to_numpy(dtype="float64")
        s = np.cumprod(1.0 - d / n)
        s_before = np.concatenate([[1.0], s[:-1]])
        cif = np.cumsum(s_before * dk / n)
        parts.append(
            pd.DataFrame(
                {
                    "group": key,
                    "time": p["time"].to_numpy(dtype="float64"),
                    "n_at_risk": n.astype("int64"),
                    "n_events": d.astype("int64"),
                    "n_cause": dk.astype("int64"),
                    "n_censored": (total - d).astype("int64"),
                    "survival": s,
                    "cumulative_incidence": cif,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


@dataclass(frozen=True)
class AalenJohansenResult:
    """Aalen-Johansen cumulative incidence of one cause per group.

    Attributes
    ----------
    summary
        One row per group and observed time: ``group, time, n_at_risk, n_events`` (any
        cause), ``n_cause`` (cause of interest), ``n_censored``, ``survival`` (all-cause
        Kaplan-Meier) and ``cumulative_incidence``.
    event_of_interest
        The cause code whose incidence is estimated.
    group
        Grouping column (None for one curve labelled ``"all"``).
    """

    summary: pd.DataFrame
    event_of_interest: int
    group: str | None = None

    def at(self, times: list[float] | np.ndarray) -> pd.DataFrame:
        """Cumulative incidence at given times (right-continuous; 0 before the first time).

        Parameters
        ----------
        times
            Times at which to read the curves.

        Returns
        -------
        pandas.DataFrame
            Columns ``group, time, cumulative_incidence``.
        """
        grid = np.asarray(times, dtype="float64")
        out = []
        for key, part in self.summary.groupby("group", sort=False, dropna=False):
            idx = np.searchsorted(part["time"].to_numpy(), grid, side="right") - 1
            vals = part["cumulative_incidence"].to_numpy()
            ci = np.where(idx >= 0, vals[np.maximum(idx, 0)], 0.0)
            out.append(pd.DataFrame({"group": key, "time": grid, "cumulative_incidence": ci}))
        return pd.concat(out, ignore_index=True)


def aalen_johansen(
    data: pd.DataFrame | ir.Table,
    *,
    duration: str,
    event: str,
    event_of_interest: int,
    group: str | None = None,
) -> AalenJohansenResult:
    """Aalen-Johansen cumulative incidence of ``event_of_interest`` with competing causes.

    Parameters
    ----------
    data
        A pandas DataFrame or ibis table with one row per subject.
    duration
        Follow-up time column (numeric, ``>= 0``).
    event
        Integer cause code: 0 = censored, 1..k = cause of the event.
    event_of_interest
        Cause code (``>= 1``) whose cumulative incidence is estimated.
    group
        Optional grouping column.

    Returns
    -------
    AalenJohansenResult

    Raises
    ------
    SurvivalInputError
        On a missing column, missing values, negative durations or non-integer codes.
    ValueError
        If ``event_of_interest`` is not a positive integer.

    Examples
    --------
    >>> df = pd.DataFrame({"t": [1, 2, 2, 3], "e": [1, 2, 1, 0]})
    >>> aalen_johansen(df, duration="t", event="e", event_of_interest=1).summary[
    ...     ["time", "cumulative_incidence"]
    ... ]
       time  cumulative_incidence
    0   1.0                  0.25
    1   2.0                  0.50
    2   3.0                  0.50
    """
    if isinstance(event_of_interest, bool) or int(event_of_interest) != event_of_interest:
        raise ValueError(f"event_of_interest must be an integer, got {event_of_interest!r}")
    k = int(event_of_interest)
    if k < 1:
        raise ValueError(f"event_of_interest must be >= 1 (0 means censored), got {k}")
    by = [] if group is None else [group]
    if isinstance(data, pd.DataFrame):
        counts = _counts_pandas(data, duration, event, k, by)
    elif isinstance(data, ir.Table):
        counts = _counts_ibis(data, duration, event, k, by)
    else:
        raise TypeError(f"expected a pandas DataFrame or an ibis table, got {type(data).__name__}")
    if group is None:
        counts.insert(0, "group", ALL)
    elif group != "group":
        counts = counts.rename(columns={group: "group"})
    if group is not None:
        counts = counts.sort_values("group", kind="mergesort")
    summary = aalen_johansen_from_counts(counts)
    return AalenJohansenResult(summary=summary, event_of_interest=k, group=group)
