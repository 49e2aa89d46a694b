"""Per-time event tables: the sufficient statistics of Kaplan-Meier and the log-rank test.

An *event table* has one row per ``(by..., time)`` at which something happened, with the number
of events (``n_events``), of censored observations (``n_censored``) and the number still at
risk just before ``time`` (``n_at_risk``, everyone whose duration is ``>= time`` in the same
``by`` cell). On an ibis table the counts are aggregated in the database (one ``GROUP BY``) and
only the per-time counts come back; on a pandas DataFrame they come from ``groupby``. Event
tables from several sites add up row by row (:func:`combine_event_tables`), so every estimator
built on them runs federated and gives the pooled answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

COUNT_COLUMNS = ("n_events", "n_censored")


class SurvivalInputError(ValueError):
    """Raised when a duration/event table cannot be analysed (missing column, bad values)."""


def _as_tuple(by: str | Sequence[str] | None) -> tuple[str, ...]:
    if by is None:
        return ()
    if isinstance(by, str):
        return (by,)
    return tuple(by)


def check_columns(columns: Iterable[str], needed: Sequence[str]) -> None:
    """Raise :class:`SurvivalInputError` naming the ``needed`` columns missing from ``columns``."""
    present = set(columns)
    missing = [c for c in needed if c not in present]
    if missing:
        raise SurvivalInputError(
            f"column(s) {missing} not found in the data; available columns: {sorted(present)}"
        )


def _check_values(
    *,
    duration: str,
    event: str,
    n_null_duration: int,
    n_null_event: int,
    min_duration: Any,
    n_bad_event: int,
) -> None:
    if n_null_duration:
        raise SurvivalInputError(
            f"duration column {duration!r} has {n_null_duration} missing value(s); "
            "drop or impute them first"
        )
    if n_null_event:
        raise SurvivalInputError(
            f"event column {event!r} has {n_null_event} missing value(s); drop or impute them first"
        )
    if min_duration is not None and not pd.isna(min_duration) and min_duration < 0:
        raise SurvivalInputError(
            f"duration column {duration!r} has negative values (minimum {min_duration}); "
            "durations must be >= 0"
        )
    if n_bad_event:
        raise SurvivalInputError(
            f"event column {event!r} has {n_bad_event} value(s) other than 0/1 (or False/True); "
            "code events as 1 and censoring as 0"
        )


def _check_weights(weights: str, n_null: int, n_bad: int) -> None:
    if n_null:
        raise SurvivalInputError(
            f"weights column {weights!r} has {n_null} missing value(s); drop or impute them first"
        )
    if n_bad:
        raise SurvivalInputError(
            f"weights column {weights!r} has {n_bad} value(s) that are not finite and > 0; "
            "case weights must be positive"
        )


def _from_pandas(
    df: pd.DataFrame, duration: str, event: str, by: tuple[str, ...], weights: str | None
) -> pd.DataFrame:
    check_columns(df.columns, [*by, duration, event, *([weights] if weights else [])])
    if not pd.api.types.is_numeric_dtype(df[duration]) or pd.api.types.is_bool_dtype(df[duration]):
        raise SurvivalInputError(f"duration column {duration!r} must be numeric")
    ev = df[event]
    n_bad = int((ev.notna() & ~ev.isin([0, 1])).sum())
    _check_values(
        duration=duration,
        event=event,
        n_null_duration=int(df[duration].isna().sum()),
        n_null_event=int(ev.isna().sum()),
        min_duration=df[duration].min() if len(df) else None,
        n_bad_event=n_bad,
    )
    work = pd.DataFrame({c: df[c] for c in by})
    work["time"] = df[duration].astype("float64")
    work["n_events"] = ev.astype("int64")
    work["n_censored"] = 1 - work["n_events"]
    if weights is not None:
        if not pd.api.types.is_numeric_dtype(df[weights]) or pd.api.types.is_bool_dtype(
            df[weights]
        ):
            raise SurvivalInputError(f"weights column {weights!r} must be numeric")
        w = df[weights].astype("float64")
        _check_weights(weights, int(w.isna().sum()), int((w.notna() & ~(w > 0)).sum()))
        _check_weights(weights, 0, int((~np.isfinite(w.to_numpy())).sum()))
        work["n_events"] = work["n_events"] * w
        work["n_censored"] = work["n_censored"] * w
    keys = [*by, "time"]
    return work.groupby(keys, sort=False, dropna=False, observed=True)[list(COUNT_COLUMNS)].sum()


def _from_ibis(
    t: ir.Table, duration: str, event: str, by: tuple[str, ...], weights: str | None
) -> pd.DataFrame:
    check_columns(t.columns, [*by, duration, event, *([weights] if weights else [])])
    if weights is not None and (
        not t[weights].type().is_numeric() or t[weights].type().is_boolean()
    ):
        raise SurvivalInputError(f"weights column {weights!r} must be numeric")
    if not t[duration].type().is_numeric() or t[duration].type().is_boolean():
        raise SurvivalInputError(f"duration column {duration!r} must be numeric")
    ev = t[event].cast("int64") if t[event].type().is_boolean() else t[event]
    metrics = {
        "n_null_duration": t[duration].isnull().sum(),
        "n_null_event": ev.isnull().sum(),
        "min_duration": t[duration].min(),
        "n_bad_event": (ev.notnull() & ~ev.isin([0, 1])).sum(),
    }
    if weights is not None:
        wf = t[weights].cast("float64")
        metrics["n_null_weight"] = wf.isnull().sum()
        metrics["n_bad_weight"] = (wf.notnull() & (~(wf > 0) | wf.isinf())).sum()
    checks = t.aggregate(**metrics).to_pandas()
    row = checks.iloc[0]
    _check_values(
        duration=duration,
        event=event,
        n_null_duration=int(row["n_null_duration"] or 0),
        n_null_event=int(row["n_null_event"] or 0),
        min_duration=row["min_duration"],
        n_bad_event=int(row["n_bad_event"] or 0),
    )
    if weights is not None:
        _check_weights(weights, int(row["n_null_weight"] or 0), int(row["n_bad_weight"] or 0))
        w = t[weights].cast("float64")
        evf = ev.cast("float64")
        weighted = (
            t.mutate(time=t[duration].cast("float64"), _ev=evf * w, _ce=(1.0 - evf) * w)
            .group_by([*by, "time"])
            .aggregate(n_events=ibis._["_ev"].sum(), n_censored=ibis._["_ce"].sum())
            .to_pandas()
        )
        return weighted.set_index([*by, "time"])[list(COUNT_COLUMNS)].astype("float64")
    evi = ev.cast("int64")
    agg = (
        t.mutate(time=t[duration].cast("float64"), _ev=evi)
        .group_by([*by, "time"])
        .aggregate(n_events=ibis._["_ev"].sum(), n_all=ibis._.count())
        .to_pandas()
    )
    agg["n_events"] = agg["n_events"].astype("int64")
    agg["n_censored"] = agg["n_all"].astype("int64") - agg["n_events"]
    return agg.set_index([*by, "time"])[list(COUNT_COLUMNS)]


def _finish(counts: pd.DataFrame, by: tuple[str, ...]) -> pd.DataFrame:
    """Sort by ``(by..., time)`` and add ``n_at_risk`` (reverse cumulative count per cell)."""
    out = counts.reset_index().sort_values([*by, "time"], kind="mergesort").reset_index(drop=True)
    weighted = any(pd.api.types.is_float_dtype(out[c]) for c in COUNT_COLUMNS)
    dtype = "float64" if weighted else "int64"
    out["n_events"] = out["n_events"].astype(dtype)
    out["n_censored"] = out["n_censored"].astype(dtype)
    total = out["n_events"] + out["n_censored"]
    if by:
        rev = total[::-1].groupby([out[c][::-1] for c in by], sort=False, dropna=False).cumsum()
        out["n_at_risk"] = rev[::-1].astype(dtype)
    else:
        out["n_at_risk"] = total[::-1].cumsum()[::-1].astype(dtype)
    return out[[*by, "time", "n_at_risk", "n_events", "n_censored"]]


def event_table(
    data: pd.DataFrame | ir.Table,
    duration: str,
    event: str,
    by: str | Sequence[str] | None = (),
    weights: str | None = None,
) -> pd.DataFrame:
    """Count events and censorings per ``(by..., time)``, aggregated where the data live.

    Parameters
    ----------
    data
        A pandas DataFrame or an ibis table with one row per subject.
    duration
        Column with the follow-up time (numeric, ``>= 0``).
    event
        Column with ``1``/``True`` for an event and ``0``/``False`` for censoring.
    by
        Column(s) to count separately (e.g. treatment group, stratum, site).
    weights
        Optional column of positive case weights (e.g. inverse probability weights): the
        counts become weighted sums (float columns with the same names), summed in the
        database for an ibis table.

    Returns
    -------
    pandas.DataFrame
        Columns ``*by, time, n_at_risk, n_events, n_censored``, sorted by ``(by..., time)``;
        ``n_at_risk`` counts subjects in the same ``by`` cell with duration ``>= time``
        (integers, or weighted float sums with ``weights``).

    Raises
    ------
    SurvivalInputError
        On a missing column, missing values, negative durations, events other than 0/1 or
        weights that are not positive.

    Examples
    --------
    >>> df = pd.DataFrame({"t": [1, 2, 2, 3], "e": [1, 0, 1, 1]})
    >>> event_table(df, "t", "e")
       time  n_at_risk  n_events  n_censored
    0   1.0          4         1           0
    1   2.0          3         1           1
    2   3.0          1         1           0
    """
    keys = _as_tuple(by)
    if isinstance(data, pd.DataFrame):
        counts = _from_pandas(data, duration, event, keys, weights)
    elif isinstance(data, ir.Table):
        counts = _from_ibis(data, duration, event, keys, weights)
    else:
        raise TypeError(f"expected a pandas DataFrame or an ibis table, got {type(data).__name__}")
    return _finish(counts, keys)


def combine_event_tables(
    tables: Iterable[pd.DataFrame], by: str | Sequence[str] | None = ()
) -> pd.DataFrame:
    """Add event tables (e.g. one per site) into the event table of the pooled data.

    Parameters
    ----------
    tables
        Event tables from :func:`event_table` with the same ``by`` columns.
    by
        The ``by`` columns the tables were counted by.

    Returns
    -------
    pandas.DataFrame
        The event table of the union of the underlying data (``n_at_risk`` recomputed).
    """
    keys = _as_tuple(by)
    parts = [t[[*keys, "time", *COUNT_COLUMNS]] for t in tables]
    if not parts:
        raise ValueError("no event tables to combine")
    stacked = pd.concat(parts, ignore_index=True)
    summed = stacked.groupby([*keys, "time"], sort=False, dropna=False)[list(COUNT_COLUMNS)].sum()
    return _finish(summed, keys)


def at_risk_on_grid(table: pd.DataFrame, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Events and numbers at risk of one cell's event table on a (sorted) grid of times.

    Parameters
    ----------
    table
        Event table rows of one cell (columns ``time``, ``n_events``, ``n_censored``).
    times
        Sorted times, containing every ``time`` of ``table``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(n_events, n_at_risk)`` at each of ``times``.
    """
    pos = np.searchsorted(times, table["time"].to_numpy())
    d = np.zeros(len(times))
    total = np.zeros(len(times))
    np.add.at(d, pos, table["n_events"].to_numpy(dtype="float64"))
    np.add.at(total, pos, (table["n_events"] + table["n_censored"]).to_numpy(dtype="float64"))
    return d, total[::-1].cumsum()[::-1]
