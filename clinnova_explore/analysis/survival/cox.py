"""Cox proportional-hazards regression: exact Newton-Raphson, Efron or Breslow ties, strata.

The fit sums per-stratum log-likelihood, score and information (see
:mod:`clinnova_explore.analysis.survival.cox_stats`) over one or more data blocks, so a fit
stratified by site over per-site blocks (:func:`fit_blocks`) equals the pooled stratified fit.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from clinnova_explore.analysis.survival.cox_stats import (
    CoxBlock,
    FloatArray,
    Ties,
    block_stats,
    make_block,
)

__all__ = ["CoxResult", "concordance_index", "cox", "design_matrix", "fit_blocks"]


@dataclass(frozen=True)
class CoxResult:
    """A fitted Cox model.

    Parameters
    ----------
    summary
        Indexed by covariate: ``coef``, ``se``, ``hr``, ``hr_lower``, ``hr_upper``, ``z``, ``p``.
    loglik
        Maximized log partial likelihood.
    n
        Number of rows.
    events
        Number of events.
    ties
        Tie method used.
    strata
        Stratification column, if any.
    iterations
        Newton-Raphson iterations used.
    """

    summary: pd.DataFrame
    loglik: float
    n: int
    events: int
    ties: Ties
    strata: str | None
    iterations: int
    _inputs: tuple[FloatArray, npt.NDArray[np.bool_], FloatArray, npt.NDArray[Any] | None] = field(
        repr=False, compare=False
    )

    @cached_property
    def concordance(self) -> float:
        """Harrell's C of the linear predictor, pairs compared within strata only.

        Computed on first access (like lifelines' ``concordance_index_``).
        """
        return concordance_index(*self._inputs)

    def _repr_html_(self) -> str:
        table = self.summary.to_html(float_format=lambda v: f"{v:.4g}")
        strata = f", strata={html.escape(self.strata)}" if self.strata else ""
        foot = (
            f"<p>Cox PH ({html.escape(self.ties)} ties{strata}): n={self.n}, "
            f"events={self.events}, log-likelihood={self.loglik:.4f}, "
            f"concordance={self.concordance:.4f}</p>"
        )
        return table + foot


def design_matrix(data: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    """Numeric design matrix: numeric columns as is, categoricals as dummies.

    Numeric and boolean columns are used as floats. Other columns (strings, pandas
    categoricals) get one 0/1 column per level except the first level (the first in sorted
    order, or in category order for a pandas categorical), named ``"<column>[<level>]"``.

    Parameters
    ----------
    data
        Input rows.
    covariates
        Columns to use.

    Returns
    -------
    pandas.DataFrame
        Float columns, same index as ``data``.
    """
    parts: dict[str, pd.Series] = {}
    for col in covariates:
        s = data[col]
        if s.isna().any():
            raise ValueError(f"covariate {col!r} has missing values; drop or impute them first")
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            values = s.astype(np.float64)
            if not np.isfinite(values).all():
                raise ValueError(f"covariate {col!r} has infinite values")
            if values.min() == values.max():
                raise ValueError(f"covariate {col!r} is constant; it has no effect to estimate")
            parts[col] = values
            continue
        cat = s.astype("category")
        levels = list(cat.cat.categories)
        if len(levels) < 2:
            raise ValueError(f"categorical covariate {col!r} has fewer than two levels")
        for level in levels[1:]:
            parts[f"{col}[{level}]"] = (cat == level).astype(np.float64)
    return pd.DataFrame(parts, index=data.index)


def _check(data: pd.DataFrame, duration: str, event: str, columns: Sequence[str]) -> None:
    missing = [c for c in (duration, event, *columns) if c not in data.columns]
    if missing:
        raise KeyError(f"column(s) {missing} not in data; available: {list(data.columns)}")
    t = data[duration]
    if not pd.api.types.is_numeric_dtype(t) or t.isna().any():
        raise ValueError(f"duration column {duration!r} must be numeric without missing values")
    if (t < 0).any():
        raise ValueError(f"duration column {duration!r} has negative values")
    e = data[event]
    if e.isna().any() or not e.isin([0, 1, True, False]).all():
        raise ValueError(f"event column {event!r} must hold only 0/1 (or booleans)")


def fit_blocks(
    blocks: Sequence[CoxBlock],
    p: int,
    *,
    ties: Ties = "efron",
    tol: float = 1e-12,
    max_iter: int = 50,
) -> tuple[FloatArray, FloatArray, float, int]:
    """Newton-Raphson on per-stratum statistics summed over blocks.

    Each stratum must lie within one block (e.g. strata = site, one block per site).

    Parameters
    ----------
    blocks
        Prepared blocks (:func:`~clinnova_explore.analysis.survival.cox_stats.make_block`).
    p
        Number of coefficients.
    ties
        ``"efron"`` or ``"breslow"``.
    tol
        Stop when the largest Newton step is below ``tol`` (absolute).
    max_iter
        Maximum number of iterations.

    Returns
    -------
    tuple
        ``(beta, covariance, loglik, iterations)``.
    """
    seen: set[object] = set()
    for block in blocks:
        dup = seen & set(block.strata)
        if dup:
            raise ValueError(f"stratum {sorted(map(str, dup))} appears in more than one block")
        seen |= set(block.strata)

    def total(beta: FloatArray) -> tuple[float, FloatArray, FloatArray]:
        ll, score, info = 0.0, np.zeros(p), np.zeros((p, p))
        for block in blocks:
            for st in block_stats(beta, block, ties).values():
                ll += st.loglik
                score += st.score
                info += st.information
        return ll, score, info

    beta = np.zeros(p)
    ll, score, info = total(beta)
    for it in range(1, max_iter + 1):
        step = np.linalg.solve(info, score)
        new = beta + step
        new_ll, new_score, new_info = total(new)
        halvings = 0
        while not new_ll >= ll - 1e-12 * abs(ll) and halvings < 30:
            step /= 2.0
            new = beta + step
            new_ll, new_score, new_info = total(new)
            halvings += 1
        beta, ll, score, info = new, new_ll, new_score, new_info
        if np.max(np.abs(step)) < tol:
            return beta, np.linalg.inv(info).astype(np.float64), ll, it
    raise RuntimeError(
        f"Cox fit did not converge in {max_iter} iterations (last step "
        f"{np.max(np.abs(step)):.3g}); check for separation or collinear covariates"
    )


def concordance_index(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    risk: npt.ArrayLike,
    strata: npt.ArrayLike | None = None,
) -> float:
    """Harrell's C: share of comparable pairs where the earlier event has the higher risk.

    A pair is comparable when one subject has an event strictly before the other's time, or
    an event at the time the other is censored; pairs of tied events are not comparable.
    Tied risks count one half. With ``strata``, only pairs within a stratum are compared.

    Parameters
    ----------
    time, event, risk
        Durations, event indicators, predicted risk (higher = earlier event).
    strata
        Optional stratum label per row.

    Returns
    -------
    float
        The concordance index (``nan`` if there are no comparable pairs).
    """
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event).astype(bool)
    r = pd.factorize(np.asarray(risk, dtype=np.float64), sort=True)[0].astype(np.int64)
    lab = (
        np.zeros(len(t), np.int64)
        if strata is None
        else pd.factorize(np.asarray(strata), sort=True)[0].astype(np.int64)
    )
    # order: stratum, time, events before censored; "later" = after in this order
    order = np.lexsort((~e, t, lab))
    t, e, r, lab = t[order], e[order], r[order], lab[order]
    less, equal, n_later = _later_counts(r, lab)
    # remove tied events at the same time (not comparable) from the counts
    new = np.ones(len(t), dtype=bool)
    new[1:] = (t[1:] != t[:-1]) | (lab[1:] != lab[:-1])
    key_t = np.cumsum(new) - 1
    tl, te, tc = _later_counts(r[e], key_t[e])
    less[e] -= tl
    equal[e] -= te
    n_later[e] -= tc
    pairs = n_later[e].sum()
    if pairs == 0:
        return float("nan")
    return float((less[e].sum() + 0.5 * equal[e].sum()) / pairs)


def _later_counts(
    rank: npt.NDArray[np.int64], group: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For each row, counts of later rows in its group with smaller / equal rank, and all."""
    n = len(rank)
    big = int(rank.max()) + 2 if n else 1
    less = np.zeros(n, np.int64)
    equal = np.zeros(n, np.int64)
    idx = np.arange(n)
    gstart = np.searchsorted(group, group, side="left")  # rows are sorted by group
    gend = np.searchsorted(group, group, side="right")
    pos = idx - gstart
    width = 1
    maxlen = int((gend - gstart).max()) if n else 0
    while width < maxlen:
        pair = pos // (2 * width)
        left = (pos % (2 * width)) < width
        base = (group.astype(np.int64) * (maxlen // (2 * width) + 1) + pair) * big
        keys = np.sort(base[~left] + rank[~left])
        q = base[left] + rank[left]
        lo = np.searchsorted(keys, base[left], side="left")
        lt = np.searchsorted(keys, q, side="left")
        le = np.searchsorted(keys, q, side="right")
        less[left] += lt - lo
        equal[left] += le - lt
        width *= 2
    return less, equal, gend - idx - 1


def cox(
    data: pd.DataFrame,
    *,
    duration: str,
    event: str,
    covariates: Sequence[str],
    strata: str | None = None,
    ties: Ties = "efron",
    tol: float = 1e-12,
    max_iter: int = 50,
    alpha: float = 0.05,
) -> CoxResult:
    """Fit a Cox proportional-hazards model by exact Newton-Raphson.

    Parameters
    ----------
    data
        One row per subject.
    duration
        Column with follow-up time (non-negative).
    event
        Column with event indicator (1/True = event, 0/False = censored).
    covariates
        Covariate columns; non-numeric columns become dummies (first level dropped).
    strata
        Optional column: separate baseline hazard per stratum.
    ties
        ``"efron"`` (default) or ``"breslow"``.
    tol
        Convergence tolerance on the Newton step.
    max_iter
        Maximum Newton iterations.
    alpha
        Confidence intervals are ``1 - alpha``.

    Returns
    -------
    CoxResult
        Coefficients, hazard ratios, CIs, log-likelihood and concordance.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"t": [1, 2, 3, 4, 5, 6], "e": [1, 1, 0, 1, 1, 0],
    ...                    "x": [2.0, 0.5, 1.0, 1.5, 0.0, 0.2]})
    >>> fit = cox(df, duration="t", event="e", covariates=["x"])
    >>> fit.summary.round(4)
                 coef      se      hr  hr_lower  hr_upper       z       p
    covariate
    x          1.5111  1.0605  4.5317     0.567   36.2181  1.4249  0.1542
    """
    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow', not {ties!r}")
    if not covariates:
        raise ValueError("give at least one covariate")
    _check(data, duration, event, [*covariates, *([strata] if strata else [])])
    if strata is not None and data[strata].isna().any():
        raise ValueError(f"strata column {strata!r} has missing values")
    x = design_matrix(data, covariates)
    time = data[duration].to_numpy(np.float64)
    ev = data[event].to_numpy().astype(bool)
    labels = None if strata is None else data[strata].to_numpy()
    block = make_block(time, ev, x.to_numpy(), labels)
    beta, cov, ll, its = fit_blocks([block], x.shape[1], ties=ties, tol=tol, max_iter=max_iter)
    se = np.sqrt(np.diag(cov))
    zq = stats.norm.ppf(1 - alpha / 2)
    z = beta / se
    summary = pd.DataFrame(
        {
            "coef": beta,
            "se": se,
            "hr": np.exp(beta),
            "hr_lower": np.exp(beta - zq * se),
            "hr_upper": np.exp(beta + zq * se),
            "z": z,
            "p": 2 * stats.norm.sf(np.abs(z)),
        },
        index=pd.Index(x.columns, name="covariate"),
    )
    inputs = (time, ev, x.to_numpy() @ beta, labels)
    return CoxResult(summary, ll, len(data), int(ev.sum()), ties, strata, its, inputs)
