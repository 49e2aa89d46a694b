"""The coefficient table of a regression model: estimates, standard errors, ratios with Wald
confidence limits, z and two-sided p (shared by Cox, logistic and propensity models)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["wald_table"]


def wald_table(
    names: Sequence[str],
    coef: np.ndarray,
    se: np.ndarray,
    *,
    ratio: str,
    alpha: float = 0.05,
    index_name: str = "covariate",
) -> pd.DataFrame:
    """``coef, se, <ratio>, <ratio>_lower, <ratio>_upper, z, p`` indexed by ``names``.

    ``ratio`` names the exponentiated coefficient (``"hr"`` for a hazard ratio, ``"or"`` for an
    odds ratio); its limits are ``exp(coef ± z_{1-alpha/2} se)``.

    Examples
    --------
    >>> wald_table(["x"], np.array([0.0]), np.array([1.0]), ratio="or").round(3).values.tolist()
    [[0.0, 1.0, 1.0, 0.141, 7.099, 0.0, 1.0]]
    """
    zq = stats.norm.ppf(1 - alpha / 2)
    z = coef / se
    return pd.DataFrame(
        {
            "coef": coef,
            "se": se,
            ratio: np.exp(coef),
            f"{ratio}_lower": np.exp(coef - zq * se),
            f"{ratio}_upper": np.exp(coef + zq * se),
            "z": z,
            "p": 2 * stats.norm.sf(np.abs(z)),
        },
        index=pd.Index(list(names), name=index_name),
    )
