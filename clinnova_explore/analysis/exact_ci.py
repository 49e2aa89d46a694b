"""Exact confidence limits for counts and proportions (Garwood Poisson, Clopper-Pearson)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["exact_poisson_ci", "exact_proportion_ci"]


def exact_poisson_ci(events: Any, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Garwood) confidence limits for a Poisson count; NaN where the count is missing.

    Examples
    --------
    >>> lo, hi = exact_poisson_ci([0, 10])
    >>> lo.round(3).tolist(), hi.round(3).tolist()
    ([0.0, 4.795], [3.689, 18.39])
    """
    k = pd.to_numeric(pd.Series(events, dtype="Float64"), errors="coerce").to_numpy(
        dtype=float, na_value=np.nan
    )
    lower = np.where(k > 0, stats.chi2.ppf(alpha / 2, 2 * np.maximum(k, 1)) / 2, 0.0)
    upper = stats.chi2.ppf(1 - alpha / 2, 2 * k + 2) / 2
    return np.where(np.isnan(k), np.nan, lower), upper


def exact_proportion_ci(
    successes: Any, trials: Any, alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson limits of a binomial proportion (0..1); NaN where missing or n = 0."""
    x = pd.Series(successes, dtype="Float64").to_numpy(dtype=float, na_value=np.nan)
    n = pd.Series(trials, dtype="Float64").to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = np.where(x > 0, stats.beta.ppf(alpha / 2, np.maximum(x, 1), n - x + 1), 0.0)
        upper = np.where(x < n, stats.beta.ppf(1 - alpha / 2, x + 1, np.maximum(n - x, 1)), 1.0)
    bad = np.isnan(x) | np.isnan(n) | (n <= 0)
    return np.where(bad, np.nan, lower), np.where(bad, np.nan, upper)
