"""1:1 greedy nearest-neighbour propensity-score matching without replacement, with a caliper.

Treated persons are taken in order of decreasing propensity score (the hardest to match first,
as MatchIt's default ``m.order = "largest"``); each takes the available comparator person whose
logit propensity score is closest, if it lies within the caliper (Austin 2011 recommends 0.2
standard deviations of the logit score). Ties are broken deterministically: treated persons with
equal scores and comparator persons at equal distance are taken in the order of ``order_by``
(then row position), so the result does not depend on the order the rows arrive in.

The nearest available comparator is found by binary search over the sorted scores and two
"next alive" pointer arrays with path compression, so matching n persons costs about
``O(n log n)``, not the ``O(n^2)`` of comparing all pairs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from clinnova_explore.analysis.effects.propensity import check_treatment, logit

__all__ = ["PAIR_ID", "caliper_width", "greedy_pairs", "match"]

PAIR_ID = "pair_id"


def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = int(parent[root])
    while parent[i] != root:
        parent[i], i = root, int(parent[i])
    return root


def greedy_pairs(
    lp_treated: npt.ArrayLike,
    lp_control: npt.ArrayLike,
    *,
    width: float,
    key_treated: npt.ArrayLike | None = None,
    key_control: npt.ArrayLike | None = None,
) -> list[tuple[int, int]]:
    """Greedy nearest-neighbour pairs on a 1-d score.

    Parameters
    ----------
    lp_treated, lp_control
        Scores (e.g. logit propensity) of the treated and comparator persons.
    width
        Largest allowed distance (``inf`` for no caliper).
    key_treated, key_control
        Tie-breaking ranks (default: position); smaller goes first.

    Returns
    -------
    list of (int, int)
        ``(treated position, comparator position)`` in the order the pairs were made.

    Examples
    --------
    >>> greedy_pairs([0.0, 1.0], [0.9, 0.2, 5.0], width=0.5)
    [(1, 0), (0, 1)]
    """
    vt = np.asarray(lp_treated, dtype=np.float64)
    vc = np.asarray(lp_control, dtype=np.float64)
    kt = np.arange(len(vt)) if key_treated is None else np.asarray(key_treated)
    kc = np.arange(len(vc)) if key_control is None else np.asarray(key_control)
    order_c = np.lexsort((kc, vc))
    vals, keys = vc[order_c], kc[order_c]
    n = len(vals)
    # right[i]: first alive index >= i (n: none); left[i + 1]: last alive index <= i (0: none)
    right = np.arange(n + 1)
    left = np.arange(n + 1)
    pairs: list[tuple[int, int]] = []
    for i in np.lexsort((kt, -vt)):
        v = vt[i]
        pos = int(np.searchsorted(vals, v, side="left"))
        r = _find(right, pos)
        lo = _find(left, pos) - 1  # alive index <= pos - 1, or -1
        d_r = vals[r] - v if r < n else np.inf
        best, dist = r, d_r
        if lo >= 0:
            start = int(np.searchsorted(vals, vals[lo], side="left"))
            lo = _find(right, start)  # the alive one of that value with the smallest key
            d_l = v - vals[lo]
            if d_l < d_r or (d_l == d_r and keys[lo] < keys[r]):
                best, dist = lo, d_l
        if best >= n or not dist <= width:
            continue
        pairs.append((int(i), int(order_c[best])))
        right[best] = best + 1
        left[best + 1] = best
    return pairs


def caliper_width(lp: npt.ArrayLike, caliper: float | None) -> float:
    """``caliper`` standard deviations (``ddof=1``) of ``lp``; ``inf`` without a caliper."""
    if caliper is None:
        return float("inf")
    if caliper <= 0:
        raise ValueError(f"caliper must be positive (in SDs of the logit score), got {caliper}")
    x = np.asarray(lp, dtype=np.float64)
    return caliper * float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def _ranks(data: pd.DataFrame, order_by: str | None) -> np.ndarray:
    pos = np.arange(len(data))
    if order_by is None:
        return pos
    if order_by not in data.columns:
        raise KeyError(f"order_by column {order_by!r} not in data; available: {list(data.columns)}")
    rank = np.empty(len(data), dtype=np.int64)
    rank[np.lexsort((pos, data[order_by].to_numpy()))] = pos
    return rank


def match(
    data: pd.DataFrame,
    *,
    ps: str | npt.ArrayLike,
    treatment: str,
    caliper: float | None = 0.2,
    within: str | None = None,
    order_by: str | None = None,
) -> pd.DataFrame:
    """Match treated to comparator persons 1:1 on the logit propensity score.

    Parameters
    ----------
    data
        One row per person.
    ps
        Column of propensity scores, or the scores themselves (aligned to ``data``).
    treatment
        0/1 column (1 = treated/target arm).
    caliper
        Largest allowed distance in standard deviations of the logit score (``ddof=1``,
        computed over the rows matched together, i.e. within each ``within`` group);
        ``None`` for no caliper.
    within
        Optional column (e.g. ``"site"``): match only within each of its values.
    order_by
        Optional column breaking ties (e.g. ``"person_id"``); default row position.

    Returns
    -------
    pandas.DataFrame
        The matched rows of ``data`` (index kept), each pair's treated row first, with a
        ``pair_id`` column: ``0, 1, ...`` in matching order, or ``"<group>:<k>"`` with
        ``within``.

    Examples
    --------
    >>> df = pd.DataFrame({"t": [1, 0, 1, 0, 0], "ps": [0.5, 0.45, 0.8, 0.2, 0.78]})
    >>> match(df, ps="ps", treatment="t", caliper=None)
       t    ps  pair_id
    2  1  0.80        0
    4  0  0.78        0
    0  1  0.50        1
    1  0  0.45        1
    """
    t = check_treatment(data, treatment, both=False)
    scores = data[ps] if isinstance(ps, str) else pd.Series(np.asarray(ps), index=data.index)
    if len(scores) != len(data):
        raise ValueError(f"got {len(scores)} propensity scores for {len(data)} rows")
    p = scores.to_numpy(np.float64)
    if not ((p > 0) & (p < 1)).all():
        raise ValueError("propensity scores must lie strictly between 0 and 1 to be matched")
    lp = logit(p)
    rank = _ranks(data, order_by)
    if within is None:
        groups: list[tuple[object, np.ndarray]] = [(None, np.arange(len(data)))]
    else:
        if within not in data.columns:
            raise KeyError(f"within column {within!r} not in data; available: {list(data.columns)}")
        codes, levels = pd.factorize(data[within], sort=True)
        groups = [(lv, np.flatnonzero(codes == k)) for k, lv in enumerate(levels)]
    rows: list[int] = []
    ids: list[object] = []
    for level, idx in groups:
        treated, control = idx[t[idx] == 1.0], idx[t[idx] == 0.0]
        width = caliper_width(lp[idx], caliper)
        pairs = greedy_pairs(
            lp[treated],
            lp[control],
            width=width,
            key_treated=rank[treated],
            key_control=rank[control],
        )
        for k, (a, b) in enumerate(pairs):
            rows += [int(treated[a]), int(control[b])]
            label: object = k if level is None else f"{level}:{k}"
            ids += [label, label]
    out = data.iloc[rows].copy()
    out[PAIR_ID] = pd.Series(ids, index=out.index, dtype=np.int64 if within is None else object)
    return out
