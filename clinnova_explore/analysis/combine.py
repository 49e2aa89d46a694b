"""Helpers for combine steps: merge the sites' payloads without undoing their suppression.

:func:`combine_counts` sums count tables across sites, and a cell with any suppressed or missing
part stays missing (never a lower bound); :class:`Moments` and :func:`combine_moments` merge
means and variances exactly from per-site count, mean and sum of squared deviations.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from clinnova_explore.analysis.payload import Payload

__all__ = ["Moments", "answered", "combine_counts", "combine_moments"]


def answered(payloads: Iterable[Payload]) -> list[Payload]:
    """The payloads that were not refused."""
    return [p for p in payloads if p.refused is None]


def _sum_dtype(column: pd.Series) -> str:
    return "Float64" if pd.api.types.is_float_dtype(column.dtype) else "Int64"


def combine_counts(
    tables: Sequence[pd.DataFrame], keys: Sequence[str], counts: Sequence[str]
) -> pd.DataFrame:
    """Sum count tables across sites per key; a cell with any suppressed part is ``<NA>``.

    Parameters
    ----------
    tables
        One table per site with ``keys``, ``counts`` and optionally a ``suppressed`` flag.
    keys
        Columns identifying a cell (may be empty: one overall row).
    counts
        Columns to sum: integer columns (counts) or float columns (e.g. sums of values;
        NaN counts as missing).

    Returns
    -------
    pandas.DataFrame
        ``keys``, ``counts`` (nullable ``Int64``, or ``Float64`` for float columns; ``<NA>``
        where any site's part was missing or suppressed, never a lower bound) and
        ``suppressed`` (any part flagged or missing), in order of first appearance.

    Examples
    --------
    >>> a = pd.DataFrame({"k": ["x", "y"], "n": pd.array([10, None], dtype="Int64")})
    >>> b = pd.DataFrame({"k": ["y", "x"], "n": pd.array([7, 5], dtype="Int64")})
    >>> combine_counts([a, b], ["k"], ["n"])
       k     n  suppressed
    0  x    15       False
    1  y  <NA>        True
    """
    keys, counts = list(keys), list(counts)
    parts = []
    dtypes = {col: "Int64" for col in counts}
    for df in tables:
        part = df[keys + counts].copy()
        for col in counts:
            if _sum_dtype(part[col]) == "Float64":
                dtypes[col] = "Float64"
        flagged = df["suppressed"].fillna(True) if "suppressed" in df else False
        part["_flag"] = part[counts].isna().any(axis=1) | flagged
        parts.append(part)
    if not parts:
        empty = pd.DataFrame({k: pd.Series(dtype=object) for k in keys})
        for col in counts:
            empty[col] = pd.Series(dtype="Int64")
        return empty.assign(suppressed=pd.Series(dtype=bool))
    data = pd.concat([p.astype(dtypes) for p in parts], ignore_index=True)
    by = [data[k] for k in keys] or [pd.Series(0, index=data.index)]
    grouped = data.groupby(by, sort=False, dropna=False)
    missing = data[counts].isna().groupby(by, sort=False, dropna=False).any()
    out = grouped[counts].sum().astype(dtypes).mask(missing)
    out["suppressed"] = grouped["_flag"].any().astype(bool)
    return out.reset_index(drop=not keys)


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations (M2) of one group of values.

    Sites send either ``(n, sum, sum of squares)`` (:meth:`from_sums`) or ``(n, mean, M2)``
    (e.g. from SQL ``avg`` and ``var_samp * (n - 1)``, which avoids the cancellation of
    ``sumsq - sum**2 / n``); :func:`combine_moments` merges groups with Chan et al.'s
    parallel formula, which is exact in exact arithmetic and stable in floating point.

    Examples
    --------
    >>> both = combine_moments([Moments.from_values([1.0, 2.0]), Moments.from_values([4.0])])
    >>> both.n, both.mean, round(both.sd, 12)
    (3, 2.3333333333333335, 1.527525231652)
    """

    n: int
    mean: float
    m2: float

    @classmethod
    def from_sums(cls, n: int, total: float, total_sq: float) -> Moments:
        """From a count, a sum and a sum of squares."""
        if n == 0:
            return cls(0, float("nan"), 0.0)
        mean = total / n
        return cls(int(n), mean, max(float(total_sq) - float(total) * mean, 0.0))

    @classmethod
    def from_values(cls, values: Iterable[float]) -> Moments:
        """From raw values (two-pass); what a pooled computation would use."""
        x = pd.Series(list(values), dtype="float64").to_numpy()
        if len(x) == 0:
            return cls(0, float("nan"), 0.0)
        mean = float(x.mean())
        return cls(len(x), mean, float(((x - mean) ** 2).sum()))

    @property
    def variance(self) -> float:
        """Sample variance (``ddof=1``); NaN below two values."""
        return self.m2 / (self.n - 1) if self.n > 1 else float("nan")

    @property
    def sd(self) -> float:
        """Sample standard deviation (``ddof=1``); NaN below two values."""
        return float(self.variance**0.5)


def combine_moments(parts: Iterable[Moments]) -> Moments:
    """Merge groups' :class:`Moments` exactly (Chan, Golub & LeVeque 1979 pairwise update)."""
    n, mean, m2 = 0, float("nan"), 0.0
    for part in parts:
        if part.n == 0:
            continue
        if n == 0:
            n, mean, m2 = part.n, part.mean, part.m2
            continue
        total = n + part.n
        delta = part.mean - mean
        mean = mean + delta * part.n / total
        m2 = m2 + part.m2 + delta * delta * n * part.n / total
        n = total
    return Moments(n, mean, m2)
