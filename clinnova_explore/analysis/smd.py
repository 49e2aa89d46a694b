"""Standardized mean differences (Austin 2009) between two cohorts.

For a proportion, ``d = (p1 - p2) / sqrt((p1 (1 - p1) + p2 (1 - p2)) / 2)``; for a continuous
variable, ``d = (m1 - m2) / sqrt((s1^2 + s2^2) / 2)``, target minus comparator. Reference:
Austin PC (2009), "Balance diagnostics for comparing the distribution of baseline covariates
between treatment groups in propensity-score matched samples", Statistics in Medicine 28:
3083-3107. A difference of zero is 0 even when both groups have no variance; a non-zero
difference over zero variance (e.g. 0 % against 100 %) is infinite. Missing inputs (suppressed
cells) give NaN.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["smd_binary", "smd_continuous"]

ArrayLike = npt.ArrayLike


def _ratio(diff: np.ndarray, pooled_variance: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = diff / np.sqrt(pooled_variance)
        zero_var = pooled_variance == 0
        out = np.where(zero_var & (diff == 0), 0.0, out)
        out = np.where(zero_var & (diff != 0), np.copysign(np.inf, diff), out)
    return np.where(np.isnan(diff) | np.isnan(pooled_variance), np.nan, out)


def smd_binary(p1: ArrayLike, p2: ArrayLike) -> np.ndarray:
    """Standardized difference of proportions ``p1 - p2`` (values in ``[0, 1]``).

    Examples
    --------
    >>> float(smd_binary(0.5, 0.3).round(4))
    0.417
    """
    a = np.asarray(p1, dtype=float)
    b = np.asarray(p2, dtype=float)
    return _ratio(a - b, (a * (1 - a) + b * (1 - b)) / 2)


def smd_continuous(m1: ArrayLike, s1: ArrayLike, m2: ArrayLike, s2: ArrayLike) -> np.ndarray:
    """Standardized difference of means ``m1 - m2`` with standard deviations ``s1``, ``s2``.

    Examples
    --------
    >>> float(smd_continuous(52.0, 10.0, 48.0, 12.0).round(4))
    0.3621
    """
    a, sa = np.asarray(m1, dtype=float), np.asarray(s1, dtype=float)
    b, sb = np.asarray(m2, dtype=float), np.asarray(s2, dtype=float)
    return _ratio(a - b, (sa**2 + sb**2) / 2)
