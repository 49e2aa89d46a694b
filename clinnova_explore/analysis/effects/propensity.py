"""Propensity scores: the probability of treatment given baseline covariates (logistic model).

:func:`propensity` fits ``P(treatment = 1 | x) = expit(b0 + x b)`` by maximum likelihood
(statsmodels ``Logit``, Newton-Raphson to a tight tolerance) on one table. A federation fits the
same model by federated Newton rounds instead (see
:mod:`clinnova_explore.analysis.effects.federated`); :func:`linear_predictor` turns either fit's
coefficients back into scores, row by row, wherever the data are.
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clinnova_explore.analysis.wald import wald_table

__all__ = [
    "PropensityModel",
    "check_treatment",
    "linear_predictor",
    "logit",
    "propensity",
    "strata_indicators",
]

INTERCEPT = "intercept"


def logit(p: np.ndarray | pd.Series) -> np.ndarray:
    """``log(p / (1 - p))`` as a float array.

    Examples
    --------
    >>> float(logit(np.array([0.5]))[0])
    0.0
    """
    q = np.asarray(p, dtype=np.float64)
    return np.log(q) - np.log1p(-q)


def check_treatment(data: pd.DataFrame, treatment: str, *, both: bool = True) -> np.ndarray:
    """The treatment column as a 0/1 float array, with a clear error when it is not one.

    With ``both=False`` a column holding only one of the two values (or none) is accepted
    (e.g. one site's rows of a federation).

    Raises
    ------
    KeyError
        When the column is missing.
    ValueError
        When it holds anything but 0/1 (or booleans), or only one of the two values.
    """
    if treatment not in data.columns:
        raise KeyError(
            f"treatment column {treatment!r} not in data; available: {list(data.columns)}"
        )
    t = data[treatment]
    if t.isna().any() or not t.isin([0, 1, True, False]).all():
        raise ValueError(
            f"treatment column {treatment!r} must hold only 0/1 (1 = treated/target arm, "
            "0 = comparator); recode it first"
        )
    values = t.to_numpy().astype(np.float64)
    if both and (len(values) == 0 or values.min() == values.max()):
        raise ValueError(
            f"treatment column {treatment!r} does not hold both 0 and 1: both arms are needed "
            "to compare treatments"
        )
    return values


def strata_indicators(data: pd.DataFrame, column: str, levels: Sequence[str]) -> pd.DataFrame:
    """0/1 columns ``"<column>[<level>]"`` for every level but the first (the reference).

    Used to put site (or any stratum) into the propensity model as fixed effects. ``levels``
    are given explicitly so every site builds the same columns, even for levels it lacks.
    """
    values = data[column].astype(str)
    return pd.DataFrame(
        {f"{column}[{lv}]": (values == str(lv)).astype(np.float64) for lv in list(levels)[1:]},
        index=data.index,
    )


def linear_predictor(data: pd.DataFrame, coef: Mapping[str, float]) -> np.ndarray:
    """``intercept + sum(coef * column)`` for every row, from named coefficients.

    Parameters
    ----------
    data
        Rows with one numeric column per non-intercept coefficient name.
    coef
        ``{name: value}`` including ``"intercept"``.
    """
    eta = np.full(len(data), float(coef.get(INTERCEPT, 0.0)))
    for name, value in coef.items():
        if name == INTERCEPT:
            continue
        if name not in data.columns:
            raise KeyError(
                f"propensity covariate {name!r} is not a column of the data; available: "
                f"{list(data.columns)}"
            )
        eta = eta + float(value) * data[name].to_numpy(np.float64)
    return eta


@dataclass(frozen=True)
class PropensityModel:
    """A fitted propensity model.

    Parameters
    ----------
    scores
        ``P(treatment = 1 | covariates)`` per row, aligned to the data's index (``None`` for a
        federated fit: the scores stay at the sites).
    summary
        Indexed by term (``"intercept"`` first): ``coef``, ``se``, ``or``, ``or_lower``,
        ``or_upper``, ``z``, ``p``.
    treatment
        Treatment column.
    covariates
        Model covariates (after adding strata indicators, if any).
    n
        Rows used.
    """

    scores: pd.Series | None
    summary: pd.DataFrame
    treatment: str
    covariates: tuple[str, ...]
    n: int

    @property
    def coef(self) -> pd.Series:
        """Coefficients by term, intercept included."""
        return self.summary["coef"]

    def _repr_html_(self) -> str:
        table = self.summary.to_html(float_format=lambda v: f"{v:.4g}")
        return table + f"<p>Propensity model for {html.escape(self.treatment)}: n={self.n}</p>"


def _numeric(data: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in covariates if c not in data.columns]
    if missing:
        raise KeyError(f"covariate(s) {missing} not in data; available: {list(data.columns)}")
    out = {}
    for col in covariates:
        s = data[col]
        if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
            raise ValueError(
                f"propensity covariate {col!r} is not numeric ({s.dtype}); encode it as 0/1 "
                "indicator columns first (e.g. 'female' instead of 'sex')"
            )
        if s.isna().any():
            raise ValueError(
                f"propensity covariate {col!r} has {int(s.isna().sum())} missing values; drop "
                "or impute them first"
            )
        out[col] = s.astype(np.float64)
    return pd.DataFrame(out, index=data.index)


def propensity(
    data: pd.DataFrame,
    *,
    treatment: str,
    covariates: Sequence[str],
    tol: float = 1e-12,
    max_iter: int = 100,
) -> PropensityModel:
    """Fit a logistic propensity model of ``treatment`` on ``covariates``.

    Parameters
    ----------
    data
        One row per person.
    treatment
        0/1 column (1 = target arm).
    covariates
        Numeric baseline covariates (an intercept is added).
    tol
        Newton-Raphson convergence tolerance (statsmodels ``Logit``).
    max_iter
        Maximum Newton iterations.

    Returns
    -------
    PropensityModel
        Scores aligned to ``data.index`` and the coefficient table.

    Examples
    --------
    >>> df = pd.DataFrame({"t": [0, 0, 1, 1, 0, 1], "x": [0.1, 0.5, 0.9, 0.3, 0.7, 1.2]})
    >>> model = propensity(df, treatment="t", covariates=["x"])
    >>> model.scores.round(3).tolist()
    [0.157, 0.41, 0.722, 0.264, 0.573, 0.875]
    """
    import statsmodels.api as sm

    y = check_treatment(data, treatment)
    x = _numeric(data, covariates)
    design = np.column_stack([np.ones(len(x)), x.to_numpy()])
    model = sm.Logit(y, design)
    try:
        with warnings.catch_warnings():  # non-convergence is reported below, in our words
            warnings.simplefilter("ignore")
            fit = model.fit(method="newton", tol=tol, maxiter=max_iter, disp=False)
    except (np.linalg.LinAlgError, ValueError) as err:
        raise ValueError(
            f"the propensity model of {treatment!r} could not be fitted ({err}); check for "
            "collinear or constant covariates, or a covariate that predicts treatment perfectly"
        ) from err
    params = np.asarray(fit.params, dtype=np.float64)
    if not fit.mle_retvals.get("converged", True) or not np.isfinite(params).all():
        raise ValueError(
            f"the propensity model of {treatment!r} did not converge in {max_iter} Newton "
            "iterations; if a covariate predicts treatment (almost) perfectly the arms cannot "
            "be compared, otherwise raise max_iter"
        )
    se = np.sqrt(np.diag(np.asarray(fit.cov_params(), dtype=np.float64)))
    names = [INTERCEPT, *covariates]
    scores = pd.Series(fit.predict(design), index=data.index, name="propensity")
    return PropensityModel(
        scores,
        wald_table(names, params, se, ratio="or", index_name="term"),
        treatment,
        tuple(covariates),
        len(data),
    )
