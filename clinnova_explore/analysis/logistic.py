"""Logistic regression by exact Newton-Raphson on summable sufficient statistics.

The log-likelihood, score and information of a logistic model are sums over rows, so they add
over sites: :func:`logistic_stats` is what a site computes for a given coefficient vector, and
:func:`newton_raphson` is the coordinator's loop over any such sum (the federated fit in
:mod:`clinnova_explore.federated` uses both). With weights ``w`` the model maximizes
``sum w_i [y_i eta_i - log(1 + exp(eta_i))]`` (frequency weights, as statsmodels ``GLM(...,
freq_weights=w)``); standard errors come from the inverse information.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.special import expit, log1p

from clinnova_explore.analysis.wald import wald_table

if TYPE_CHECKING:
    from clinnova_explore.analysis.result import Provenance

__all__ = [
    "INTERCEPT",
    "LogisticResult",
    "logistic",
    "logistic_design",
    "logistic_result",
    "logistic_stats",
    "newton_raphson",
]

INTERCEPT = "intercept"
FloatArray = npt.NDArray[np.float64]
Stats = tuple[float, FloatArray, FloatArray]


def logistic_stats(
    beta: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike, w: npt.ArrayLike | None = None
) -> Stats:
    """Log-likelihood, score and information of a logistic model at ``beta``.

    Parameters
    ----------
    beta
        Coefficients (length ``p``).
    x
        Design matrix (``n x p``, include an intercept column yourself).
    y
        Outcomes, 0 or 1.
    w
        Optional non-negative row weights (default 1).

    Returns
    -------
    tuple
        ``(loglik, score, information)``: a float, a length-``p`` vector and a ``p x p``
        matrix (negative Hessian), each a sum over rows.

    Examples
    --------
    >>> ll, score, info = logistic_stats([0.0], [[1.0], [1.0]], [1, 0])
    >>> round(ll, 6), score.tolist(), info.tolist()
    (-1.386294, [0.0], [[0.5]])
    """
    b = np.asarray(beta, dtype=np.float64)
    xm = np.asarray(x, dtype=np.float64).reshape(-1, len(b))
    yv = np.asarray(y, dtype=np.float64)
    wv = np.ones(len(yv)) if w is None else np.asarray(w, dtype=np.float64)
    eta = xm @ b
    mu = expit(eta)
    # log(1 + exp(eta)) without overflow
    softplus = np.where(eta > 0, eta + log1p(np.exp(-np.abs(eta))), log1p(np.exp(eta)))
    loglik = float(np.sum(wv * (yv * eta - softplus)))
    score = xm.T @ (wv * (yv - mu))
    information = (xm * (wv * mu * (1.0 - mu))[:, None]).T @ xm
    return loglik, np.asarray(score, dtype=np.float64), np.asarray(information, dtype=np.float64)


def newton_raphson(
    total: Callable[[FloatArray], Stats], p: int, *, tol: float = 1e-12, max_iter: int = 50
) -> tuple[FloatArray, FloatArray, float, int]:
    """Maximize a log-likelihood given as ``beta -> (loglik, score, information)``.

    Full Newton steps, halved while the log-likelihood decreases; stops when the largest
    step is below ``tol``.

    Parameters
    ----------
    total
        The (summed) statistics at a coefficient vector.
    p
        Number of coefficients (start at zero).
    tol
        Absolute tolerance on the largest Newton step.
    max_iter
        Maximum number of iterations.

    Returns
    -------
    tuple
        ``(beta, covariance, loglik, iterations)``; the covariance is the inverse information.

    Raises
    ------
    RuntimeError
        When the fit does not converge (separation, collinear covariates).
    """
    beta = np.zeros(p)
    ll, score, info = total(beta)
    step: FloatArray = np.zeros(p)
    for it in range(1, max_iter + 1):
        try:
            step = np.asarray(np.linalg.solve(info, score), dtype=np.float64)
        except np.linalg.LinAlgError:
            raise RuntimeError(
                "the information matrix is singular: a covariate is constant or collinear "
                "with others (check the covariates and categorical levels)"
            ) from None
        new = beta + step
        new_ll, new_score, new_info = total(new)
        halvings = 0
        while not new_ll >= ll - 1e-12 * abs(ll) and halvings < 30:
            step = step / 2.0
            new = beta + step
            new_ll, new_score, new_info = total(new)
            halvings += 1
        beta, ll, score, info = new, new_ll, new_score, new_info
        if np.max(np.abs(step), initial=0.0) < tol:
            return beta, np.linalg.inv(info).astype(np.float64), float(ll), it
    raise RuntimeError(
        f"the fit did not converge in {max_iter} iterations (last step "
        f"{np.max(np.abs(step), initial=0.0):.3g}); check for separation or collinear covariates"
    )


@dataclass(frozen=True)
class LogisticResult:
    """A fitted logistic regression.

    Attributes
    ----------
    summary
        Indexed by covariate (first ``"intercept"``): ``coef``, ``se``, ``or``, ``or_lower``,
        ``or_upper``, ``z``, ``p``.
    loglik
        Maximized log-likelihood.
    n
        Number of rows used.
    iterations
        Newton-Raphson iterations.
    covariance
        Covariance matrix of the coefficients (DataFrame, covariate x covariate).
    levels
        ``{covariate: levels}`` of categorical covariates (first level is the reference).
    provenance
        How a federated fit was made (None for a local fit).
    """

    summary: pd.DataFrame
    loglik: float
    n: int
    iterations: int
    covariance: pd.DataFrame
    levels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    provenance: Provenance | None = None

    @property
    def coef(self) -> pd.Series:
        """The coefficients, indexed by design column."""
        return self.summary["coef"]

    def predict(self, data: pd.DataFrame) -> pd.Series:
        """Predicted probabilities ``P(outcome = 1)`` for the rows of ``data``.

        Parameters
        ----------
        data
            Rows with the covariate columns used in the fit.

        Returns
        -------
        pandas.Series
            Probabilities, same index as ``data``.
        """
        covariates = _covariates_of(self.summary.index, self.levels)
        x = logistic_design(data, covariates, self.levels)
        missing = [c for c in self.summary.index if c not in x.columns]
        if missing:
            raise ValueError(f"cannot build design columns {missing} from the data")
        eta = x[list(self.summary.index)].to_numpy() @ self.coef.to_numpy()
        return pd.Series(expit(eta), index=data.index, name="probability")

    def _repr_html_(self) -> str:
        table = self.summary.to_html(float_format=lambda v: f"{v:.4g}")
        return (
            f"{table}<p>Logistic regression: n={self.n}, "
            f"log-likelihood={html.escape(f'{self.loglik:.4f}')}</p>"
        )


def _covariates_of(index: pd.Index, levels: dict[str, tuple[str, ...]]) -> list[str]:
    out: list[str] = []
    for name in index:
        if name == INTERCEPT:
            continue
        base = next((c for c in levels if str(name).startswith(f"{c}[")), str(name))
        if base not in out:
            out.append(base)
    return out


def logistic_design(
    data: pd.DataFrame, covariates: Sequence[str], levels: dict[str, tuple[str, ...]]
) -> pd.DataFrame:
    """Design matrix with an intercept; categorical covariates as dummies of given levels.

    Parameters
    ----------
    data
        Input rows.
    covariates
        Covariate columns.
    levels
        ``{column: levels}`` for categorical columns (compared as strings; the first level is
        the reference and gets no column, others are named ``"<column>[<level>]"``). Columns
        not in ``levels`` are used as numbers.

    Returns
    -------
    pandas.DataFrame
        Float columns ``intercept, ...``, same index as ``data``.
    """
    parts: dict[str, pd.Series] = {INTERCEPT: pd.Series(1.0, index=data.index)}
    for col in covariates:
        if col not in data.columns:
            raise KeyError(f"covariate {col!r} not in data; available: {list(data.columns)}")
        s = data[col]
        if s.isna().any():
            raise ValueError(f"covariate {col!r} has missing values; drop or impute them first")
        if col in levels:
            text = s.astype(str)
            for level in levels[col][1:]:
                parts[f"{col}[{level}]"] = (text == level).astype(np.float64)
            continue
        values = s.astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"covariate {col!r} has infinite values")
        parts[col] = values
    return pd.DataFrame(parts, index=data.index)


def categorical_levels(data: pd.DataFrame, covariates: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Sorted levels (as strings) of the non-numeric covariates of ``data``."""
    out: dict[str, tuple[str, ...]] = {}
    for col in covariates:
        if col not in data.columns:
            raise KeyError(f"covariate {col!r} not in data; available: {list(data.columns)}")
        s = data[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            continue
        out[col] = tuple(sorted(s.dropna().astype(str).unique().tolist()))
    return out


def logistic_result(
    beta: FloatArray,
    cov: FloatArray,
    names: Sequence[str],
    *,
    loglik: float,
    n: int,
    iterations: int,
    levels: dict[str, tuple[str, ...]] | None = None,
    alpha: float = 0.05,
    provenance: Provenance | None = None,
) -> LogisticResult:
    """Assemble a :class:`LogisticResult` from a fitted coefficient vector and covariance."""
    summary = wald_table(names, beta, np.sqrt(np.diag(cov)), ratio="or", alpha=alpha)
    return LogisticResult(
        summary=summary,
        loglik=loglik,
        n=n,
        iterations=iterations,
        covariance=pd.DataFrame(cov, index=summary.index, columns=summary.index),
        levels=dict(levels or {}),
        provenance=provenance,
    )


def check_outcome(data: pd.DataFrame, outcome: str) -> None:
    """Raise a clear error unless ``outcome`` is a 0/1 (or boolean) column without gaps."""
    if outcome not in data.columns:
        raise KeyError(f"outcome column {outcome!r} not in data; available: {list(data.columns)}")
    y = data[outcome]
    if y.isna().any() or not y.isin([0, 1, True, False]).all():
        raise ValueError(f"outcome column {outcome!r} must hold only 0/1 (or booleans)")


def check_weights(data: pd.DataFrame, weights: str) -> FloatArray:
    """The weight column as floats; raise unless finite and non-negative."""
    if weights not in data.columns:
        raise KeyError(f"weights column {weights!r} not in data; available: {list(data.columns)}")
    w = data[weights].to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"weights column {weights!r} must be finite and non-negative")
    return w


def logistic(
    data: pd.DataFrame,
    *,
    outcome: str,
    covariates: Sequence[str],
    weights: str | None = None,
    tol: float = 1e-12,
    max_iter: int = 50,
    alpha: float = 0.05,
) -> LogisticResult:
    """Fit a logistic regression (with intercept) by exact Newton-Raphson.

    Parameters
    ----------
    data
        One row per subject.
    outcome
        Column with the 0/1 outcome.
    covariates
        Covariate columns; non-numeric columns become dummies (first sorted level dropped).
    weights
        Optional column of non-negative frequency weights.
    tol
        Convergence tolerance on the Newton step.
    max_iter
        Maximum Newton iterations.
    alpha
        Confidence intervals are ``1 - alpha``.

    Returns
    -------
    LogisticResult

    Examples
    --------
    >>> df = pd.DataFrame({"y": [0, 0, 1, 0, 1, 1], "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    >>> logistic(df, outcome="y", covariates=["x"]).summary["coef"].round(4).tolist()
    [-4.2491, 1.214]
    """
    check_outcome(data, outcome)
    levels = categorical_levels(data, covariates)
    x = logistic_design(data, covariates, levels)
    y = data[outcome].to_numpy().astype(np.float64)
    w = None if weights is None else check_weights(data, weights)
    xm = x.to_numpy()
    beta, cov, ll, its = newton_raphson(
        lambda b: logistic_stats(b, xm, y, w), xm.shape[1], tol=tol, max_iter=max_iter
    )
    return logistic_result(
        beta,
        cov,
        list(x.columns),
        loglik=ll,
        n=len(data),
        iterations=its,
        levels=levels,
        alpha=alpha,
    )
