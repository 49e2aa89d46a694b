"""Event tables a site may release: times binned per policy, small cells merged away.

Two policy rules shape a released event table (the sufficient statistics of Kaplan-Meier and
the log-rank test), and both apply identically in federated and pooled mode:

**Binning** (``km_time_bin_days = b``): every duration is rounded *up* to the end of its bin,
``ceil(t / b) * b``; with ``b = 1`` integer day counts are unchanged and fractional days move
to the next whole day.

**Small cells** (``k``: the policy's ``km_min_events_per_bin``, by default its
``min_cell_count``; ``DisclosurePolicy.km_min_count`` gives it): no released ``n_events`` or
``n_censored`` may lie in ``(0, k)``. Within each cell of the ``by`` columns, time rows are
merged into runs of consecutive times, going forward in time: a run closes as soon as its
summed events and its summed censorings are each ``0`` or ``>= k``, and it is released at the
*last* time of the run (events and censorings only ever move later, as binning moves them). A
remainder at the end that does not qualify is merged into the runs before it until it does.
Every released count is then 0 or at least ``k``, so neither the counts nor differences of the
derived numbers at risk reveal a small cell, and no complementary suppression is needed. A
``by`` cell whose totals cannot qualify (fewer than ``k`` events, or fewer than ``k``
censorings, in the whole cell) is not released at all and is named in the payload. With
weights the runs are formed from the unweighted counts and the weighted sums are released per
run.
"""

from __future__ import annotations

from collections.abc import Sequence

import ibis.expr.types as ir
import numpy as np
import pandas as pd

from clinnova_explore.analysis.payload import Payload
from clinnova_explore.analysis.survival.counts import SurvivalInputError, event_table

__all__ = ["bin_durations", "binned_event_table", "combine_released", "merge_runs"]

COUNTS = ["n_events", "n_censored"]


def bin_durations(
    data: pd.DataFrame | ir.Table, duration: str, bin_days: int
) -> pd.DataFrame | ir.Table:
    """``data`` with ``duration`` rounded up to the end of its ``bin_days`` bin.

    Examples
    --------
    >>> bin_durations(pd.DataFrame({"t": [0, 1, 7, 7.5, 8]}), "t", 7)["t"].tolist()
    [0.0, 7.0, 7.0, 14.0, 14.0]
    """
    if duration not in data.columns:
        raise SurvivalInputError(
            f"duration column {duration!r} not found; available columns: {list(data.columns)}"
        )
    if isinstance(data, ir.Table):
        col = data[duration]
        if not col.type().is_numeric() or col.type().is_boolean():
            raise SurvivalInputError(f"duration column {duration!r} must be numeric")
        binned = ((col.cast("float64") / bin_days).ceil() * bin_days).cast("float64")
        return data.mutate(**{duration: binned})
    s = data[duration]
    if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        raise SurvivalInputError(f"duration column {duration!r} must be numeric")
    out = data.copy()
    out[duration] = np.ceil(s.astype("float64") / bin_days) * bin_days
    return out


def merge_runs(events: np.ndarray, censored: np.ndarray, k: int) -> np.ndarray | None:
    """Run number of each (time-sorted) row of one cell, or None if the cell cannot qualify.

    Examples
    --------
    >>> merge_runs(np.array([1, 2, 0, 5]), np.array([0, 0, 3, 0]), 3).tolist()
    [0, 0, 1, 2]
    """

    def ok(x: float) -> bool:
        return x == 0 or x >= k

    run = np.zeros(len(events), dtype=np.int64)
    closed: list[tuple[int, float, float]] = []  # (first row, events, censored)
    start, e_sum, c_sum = 0, 0.0, 0.0
    for i in range(len(events)):
        e_sum += float(events[i])
        c_sum += float(censored[i])
        if ok(e_sum) and ok(c_sum):
            closed.append((start, e_sum, c_sum))
            start, e_sum, c_sum = i + 1, 0.0, 0.0
    if start < len(events):  # a remainder: merge backwards until it qualifies
        while closed and not (ok(e_sum) and ok(c_sum)):
            first, e, c = closed.pop()
            start, e_sum, c_sum = first, e_sum + e, c_sum + c
        if not (ok(e_sum) and ok(c_sum)):
            return None
        closed.append((start, e_sum, c_sum))
    for number, (first, _, _) in enumerate(closed):
        run[first:] = number
    return run


def binned_event_table(
    data: pd.DataFrame | ir.Table,
    *,
    duration: str,
    event: str,
    by: Sequence[str] = (),
    weights: str | None = None,
    bin_days: int = 1,
    min_cell_count: int = 1,
) -> tuple[pd.DataFrame, int, list[str]]:
    """The event table a site releases under its policy (see the module docstring).

    Parameters
    ----------
    data
        The site's rows.
    duration, event, by, weights
        Column names (``by``: one table per cell of these columns).
    bin_days
        The policy's ``km_time_bin_days``.
    min_cell_count
        The smallest non-zero event or censoring count released: pass the policy's
        ``km_min_count`` (``km_min_events_per_bin``, else ``min_cell_count``).

    Returns
    -------
    tuple
        ``(table, merged, dropped)``: the table (``*by, time, n_events, n_censored``), the
        number of time rows merged into later ones, and labels of ``by`` cells not released.
    """
    keys = tuple(by)
    binned = bin_durations(data, duration, bin_days)
    counts = event_table(binned, duration, event, by=keys)
    released = counts if weights is None else event_table(binned, duration, event, keys, weights)
    if weights is not None and len(released) != len(counts):
        raise SurvivalInputError("weighted and unweighted event tables differ in their rows")
    cells = (
        [np.arange(len(counts))]
        if not keys
        else [np.asarray(ix) for ix in counts.groupby(list(keys), sort=False).indices.values()]
    )
    parts, merged, dropped = [], 0, []
    for ix in cells:
        ix = ix[np.argsort(counts["time"].to_numpy()[ix], kind="stable")]
        runs = merge_runs(
            counts["n_events"].to_numpy()[ix], counts["n_censored"].to_numpy()[ix], min_cell_count
        )
        if runs is None:
            label = ", ".join(f"{c}={counts[c].iloc[ix[0]]}" for c in keys) or "all"
            dropped.append(label)
            continue
        rows = released.iloc[ix].reset_index(drop=True)
        last = np.r_[runs[1:] != runs[:-1], True]
        sums = rows[COUNTS].groupby(runs, sort=True).sum().reset_index(drop=True)
        out = rows.loc[last, [*keys, "time"]].reset_index(drop=True)
        out[COUNTS] = sums[COUNTS]
        merged += len(rows) - len(out)
        parts.append(out)
    if parts:
        table = pd.concat(parts, ignore_index=True)
    else:
        table = released.iloc[:0][[*keys, "time", *COUNTS]].reset_index(drop=True)
    return table, merged, dropped


def combine_released(payloads: Sequence[Payload], by: Sequence[str]) -> pd.DataFrame:
    """Add released event tables and recompute the numbers at risk.

    Returns
    -------
    pandas.DataFrame
        ``*by, time, n_at_risk, n_events, n_censored`` sorted by ``(by, time)``, like
        :func:`~clinnova_explore.analysis.survival.counts.event_table` on the pooled rows.
    """
    keys = list(by)
    parts = [p.tables["events"] for p in payloads if p.refused is None]
    if not parts:
        raise ValueError("no site released an event table (every site refused)")
    stacked = pd.concat(parts, ignore_index=True)
    summed = stacked.groupby([*keys, "time"], sort=True, dropna=False)[COUNTS].sum().reset_index()
    total = summed["n_events"] + summed["n_censored"]
    if keys:
        rev = total[::-1].groupby([summed[c][::-1] for c in keys], sort=False).cumsum()
        summed["n_at_risk"] = rev[::-1]
    else:
        summed["n_at_risk"] = total[::-1].cumsum()[::-1]
    return summed[[*keys, "time", "n_at_risk", *COUNTS]]
