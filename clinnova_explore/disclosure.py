"""Small-cell suppression: counts below a site's minimum never leave it as numbers.

Primary suppression blanks every count in ``(0, min_cell_count)``. Because released tables often
come with their totals (persons per site beside persons per disease at that site), hidden cells
in a group could be recovered as *total minus visible cells*: one hidden cell exactly, and
several hidden cells too when their sum is small (two hidden cells summing to 2 are both 1,
since zeros are shown). Secondary (complementary) suppression closes that gap: in any group
whose hidden cells are a single cell, sum to less than ``min_cell_count``, or are all ones, the
smallest other non-zero cell is hidden too, so what a difference reveals is a sum of at least
two hidden cells, at least ``min_cell_count`` in total, that does not pin any of them down.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["suppress_counts"]


def suppress_counts(
    df: pd.DataFrame,
    columns: Sequence[str],
    min_cell_count: int,
    *,
    group_by: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Blank small counts and, per group, one complementary cell; flag the rows touched.

    Zero is not disclosive and is kept. Count columns come back as nullable integers
    (``<NA>`` where suppressed) and a boolean ``suppressed`` column marks touched rows.

    Parameters
    ----------
    df
        Aggregated counts (one row per cell).
    columns
        Count columns to check.
    min_cell_count
        The site's policy minimum (counts ``1 .. min_cell_count - 1`` are suppressed).
    group_by
        Columns whose groups partition a released total (e.g. ``["site"]`` for the bins of
        one site's histogram). Within each group and count column, if exactly one cell was
        suppressed, or the suppressed cells sum to less than ``min_cell_count`` or are all
        ones, the smallest other non-zero cell is suppressed as well. ``None`` treats the
        whole frame as one group; an empty list disables secondary suppression.

    Returns
    -------
    pandas.DataFrame
        A copy with small (and complementary) cells blanked.

    Examples
    --------
    >>> suppress_counts(pd.DataFrame({"n": [0, 3, 12, 40]}), ["n"], 5)
          n  suppressed
    0     0       False
    1  <NA>        True
    2  <NA>        True
    3    40       False
    """
    out = df.copy().reset_index(drop=True)
    flag = np.zeros(len(out), dtype=bool)
    groups: list[np.ndarray]
    if group_by is None:
        groups = [np.arange(len(out))]
    elif len(group_by) == 0:
        groups = []
    else:
        groups = [np.asarray(ix) for ix in out.groupby(list(group_by), sort=False).indices.values()]
    for col in columns:
        values = out[col].astype("Int64")
        small = ((values > 0) & (values < min_cell_count)).fillna(False).to_numpy(dtype=bool)
        hide = small.copy()
        for ix in groups:
            hidden = [int(values[i]) for i in ix if small[i]]
            if not hidden or not _recoverable(hidden, min_cell_count):
                continue
            candidates = [i for i in ix if not hide[i] and pd.notna(values[i]) and values[i] > 0]
            if candidates:  # a visible non-zero cell is at least min_cell_count: one is enough
                hide[min(candidates, key=lambda i: (values[i], i))] = True
        flag |= hide
        out[col] = values.mask(hide)
    previous = out["suppressed"].to_numpy(dtype=bool) if "suppressed" in out else False
    out["suppressed"] = previous | flag
    return out


def _recoverable(hidden: Sequence[int], min_cell_count: int) -> bool:
    """Whether hidden non-zero cells could be told from their group total minus visible cells.

    One cell is its difference; several cells summing to less than ``min_cell_count`` are a
    small cell together; cells that are all ones are pinned down by their count.
    """
    total = sum(hidden)
    return len(hidden) == 1 or total < min_cell_count or total == len(hidden)
