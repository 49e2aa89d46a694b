"""Small-cell suppression: counts below a site's minimum never leave it as numbers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["suppress_counts"]


def suppress_counts(
    df: pd.DataFrame, columns: Sequence[str], min_cell_count: int
) -> pd.DataFrame:
    """Blank counts in ``(0, min_cell_count)`` and flag the rows that were touched.

    Zero is not disclosive and is kept. The returned frame has the count columns as floats
    (NaN where suppressed) and a boolean ``suppressed`` column.

    Parameters
    ----------
    df
        Aggregated counts (one row per cell).
    columns
        Count columns to check.
    min_cell_count
        The site's policy minimum (counts ``1 .. min_cell_count - 1`` are suppressed).

    Returns
    -------
    pandas.DataFrame
        A copy with small cells blanked.

    Examples
    --------
    >>> suppress_counts(pd.DataFrame({"n": [0, 3, 12]}), ["n"], 5)
          n  suppressed
    0     0       False
    1  <NA>        True
    2    12       False
    """
    out = df.copy()
    flag = np.zeros(len(out), dtype=bool)
    for col in columns:
        values = out[col].astype("Int64")
        small = ((values > 0) & (values < min_cell_count)).fillna(False)
        flag |= small.to_numpy(dtype=bool)
        out[col] = values.mask(small)
    out["suppressed"] = out.get("suppressed", False) | flag
    return out
