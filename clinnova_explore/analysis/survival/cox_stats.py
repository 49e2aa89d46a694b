"""Exact Cox partial-likelihood statistics per stratum, vectorized with numpy.

The Cox fit is Newton-Raphson (:func:`newton`) on a sum of per-stratum terms. :func:`block_stats`
computes, for one data block (e.g. one site) and a given coefficient vector, the log partial
likelihood, score vector and information matrix of every stratum in the block. Because strata
share no risk sets, summing these terms over blocks gives exactly the pooled stratified fit,
which is what makes a site-stratified Cox model federable: only ``p + p*p + 1`` numbers per
stratum leave a site per iteration. :func:`block_meat` gives the middle of the robust
(sandwich) variance the same way.

Ties are handled with Efron's approximation (default) or Breslow's. Case weights follow R's
``coxph`` and lifelines' ``weights_col``: each tied event time contributes its ``d`` Efron
terms with the mean case weight of its ``d`` events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clinnova_explore.analysis.survival.cox_block import (
    CoxBlock,
    FloatArray,
    SortedStratum,
    Ties,
    cumulative_hazard,
    make_block,
    matvec,
    per_time,
    scratch,
    segment_sums,
    tdot,
    weighted_gram,
)

__all__ = [
    "CoxBlock",
    "FloatArray",
    "StratumStats",
    "Ties",
    "block_meat",
    "block_stats",
    "make_block",
    "newton",
    "schoenfeld_residuals",
    "score_residuals",
    "stratum_stats",
]


@dataclass(frozen=True)
class StratumStats:
    """Sufficient statistics of one stratum at one coefficient vector.

    Parameters
    ----------
    loglik
        Log partial likelihood.
    score
        Gradient of ``loglik`` (length ``p``).
    information
        Negative Hessian of ``loglik`` (``p x p``).
    """

    loglik: float
    score: FloatArray
    information: FloatArray


def _risk_sums(st: SortedStratum, w: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Risk-set sums ``S0 = sum w`` and ``S1 = sum w x`` at each event time (``K`` and ``K x p``).

    Rows are sorted by time descending, so the risk set of event time ``k`` is the union of the
    risk segments ``0..k``: segment sums, then cumulative sums over the ``K`` event times.
    """
    s1 = segment_sums(st.x, st.seg_ptr, st.seg_idx, w)
    np.cumsum(s1, axis=0, out=s1)
    s0 = np.add.reduceat(w[: st.seg_ptr[-1]], st.seg_ptr[:-1])
    return np.cumsum(s0, out=s0), s1


@dataclass(frozen=True)
class _Terms:
    """Per-event-time pieces of one stratum at ``beta`` (shared by stats and residuals).

    ``w`` and ``s1`` may be scratch arrays of the stratum: valid until its next evaluation.
    """

    w: FloatArray  # case weight * exp(eta - shift) per row
    eta_events: FloatArray  # eta of the event rows
    shift: float
    s1: FloatArray  # S1 at each event time (K x p)
    d1: FloatArray | None  # sum of w x over the tied events (Efron), K x p
    inv: FloatArray  # 1 / r0 per event
    c0: FloatArray  # m * sum over the time's events of 1 / r0
    c1: FloatArray | None  # m * sum of f / r0 (Efron)
    m: FloatArray | None  # mean case weight per event time


def _terms(beta: FloatArray, st: SortedStratum, ties: Ties) -> _Terms:
    n = len(st.x)
    eta = matvec(st.x, beta, scratch(st, "n", (n,)))
    eta_events = eta[st.event_rows]
    shift = float(eta.max())
    eta -= shift
    w = np.exp(eta, out=eta)
    if st.weights is not None:
        w *= st.weights
    s0, s1 = _risk_sums(st, w)
    # one denominator r0 per event; Efron removes the fraction l/d of the tied events' weight:
    # r0 = S0 - f D0, r1 = S1 - f D1, with D the sums over the events tied at that time
    efron = ties == "efron" and st.tied
    r0 = s0[st.entry_time] if st.tied else s0
    d1 = c1 = None
    m = st.mean_weight
    if efron:
        we = w[st.event_rows]
        r0 = r0 - st.frac * per_time(st, we)[st.entry_time]
        d1 = segment_sums(st.x, st.event_ptr, st.event_rows, we)
    inv = 1.0 / r0
    c0 = per_time(st, inv)
    if efron:
        c1 = per_time(st, st.frac * inv)
    if m is not None:
        c0 = c0 * m
        c1 = None if c1 is None else c1 * m
    return _Terms(w, eta_events, shift, s1, d1, inv, c0, c1, m)


def stratum_stats(beta: FloatArray, stratum: SortedStratum, ties: Ties) -> StratumStats:
    """Log partial likelihood, score and information of one prepared stratum.

    Parameters
    ----------
    beta
        Coefficients (length ``p``).
    stratum
        One stratum of a :class:`CoxBlock`.
    ties
        ``"efron"`` or ``"breslow"``.

    Returns
    -------
    StratumStats
        The stratum's contribution.
    """
    st = stratum
    p = st.x.shape[1]
    if st.n_times == 0:
        return StratumStats(0.0, np.zeros(p), np.zeros((p, p)))
    return _stratum_stats(beta, st, ties)


def _stratum_stats(beta: FloatArray, st: SortedStratum, ties: Ties) -> StratumStats:
    tm = _terms(beta, st, ties)
    inv, s1, d1, m = tm.inv, tm.s1, tm.d1, tm.m

    def weighted(values: FloatArray) -> FloatArray:
        out = per_time(st, values)
        return out if m is None else out * m

    q0 = weighted(inv * inv)
    score = st.x_event_sum - tdot(s1, tm.c0)
    # sum over events of (r1/r0)(r1/r0)' = sum over event times of q0 S1 S1' (+ Efron terms)
    mtm = weighted_gram(s1, q0, st)
    if d1 is not None and tm.c1 is not None:
        fi = st.frac * inv
        q1 = weighted(fi * inv)
        q2 = weighted(fi * fi)
        score += tdot(d1, tm.c1)
        cross = tdot(s1 * q1[:, None], d1)
        mtm += tdot(d1 * q2[:, None], d1) - cross - cross.T
    log_r0 = np.log(inv)
    if m is None:
        n_ev = float(len(inv))
        ll_eta = float(tm.eta_events.sum())
        ll_den = float(log_r0.sum())
    else:
        we = st.weights[st.event_rows] if st.weights is not None else 1.0
        n_ev = float((m * np.diff(st.event_first, append=len(inv))).sum())
        ll_eta = float(np.dot(we, tm.eta_events))
        ll_den = float(np.dot(m, per_time(st, log_r0)))
    loglik = ll_eta - n_ev * tm.shift + ll_den
    # sum over events of S2/r0 = sum_i w_i x_i x_i' * (sum of c0 over event times <= t_i)
    v = cumulative_hazard(st, tm.c0)
    v *= tm.w[: len(v)]
    if d1 is not None and tm.c1 is not None:
        # Efron: minus sum over events of f/r0 * (sum of w x x' over the events tied with
        # it), folded into the same weights (c1 <= c0 of the event's own time, so v >= 0)
        v[st.event_rows] -= tm.w[st.event_rows] * tm.c1[st.entry_time]
    information = weighted_gram(st.x, v, st) - mtm
    return StratumStats(loglik, score, information)


def block_stats(beta: FloatArray, block: CoxBlock, ties: Ties) -> dict[object, StratumStats]:
    """Per-stratum statistics of one block at ``beta``.

    Parameters
    ----------
    beta
        Coefficients (length ``p``).
    block
        A block from :func:`make_block`.
    ties
        ``"efron"`` or ``"breslow"``.

    Returns
    -------
    dict
        ``{stratum label: StratumStats}``.
    """
    return {key: stratum_stats(beta, s, ties) for key, s in block.strata.items()}


def _event_means(st: SortedStratum, tm: _Terms) -> tuple[FloatArray, FloatArray]:
    """Per event: the ``r1 / r0`` of its term and the mean of those over its time's terms."""
    r1 = tm.s1[st.entry_time] if st.tied else tm.s1
    if tm.d1 is not None:
        r1 = r1 - st.frac[:, None] * tm.d1[st.entry_time]
    xbar = r1 * tm.inv[:, None]
    if not st.tied:
        return xbar, xbar
    d = np.diff(st.event_first, append=len(st.event_rows)).astype(np.float64)
    return xbar, (per_time(st, xbar) / d[:, None])[st.entry_time]


def schoenfeld_residuals(beta: FloatArray, stratum: SortedStratum, ties: Ties) -> FloatArray:
    """Schoenfeld residuals of one stratum's events (rows ``stratum.event_rows``).

    Each event gets ``x_i`` minus the risk-set mean of ``x`` at its time; with Efron ties the
    mean of the ``d`` Efron terms' means (as lifelines and R ``residuals(type = "schoenfeld")``).
    """
    st = stratum
    if st.n_times == 0:
        return np.zeros((0, st.x.shape[1]))
    return st.x[st.event_rows] - _event_means(st, _terms(beta, st, ties))[1]


def score_residuals(beta: FloatArray, stratum: SortedStratum, ties: Ties) -> FloatArray:
    """Score residuals of one stratum's rows (in its sorted order), without case weights.

    Row ``i`` gets ``delta_i (x_i - xbar_i) - sum_l dLambda_l exp(eta_i) (x_i - xbar_l)`` over
    the event-time terms ``l`` it is at risk for; with Efron ties an event counts at risk with
    ``1 - l/d`` in the ``l``-th term of its own time and its ``xbar_i`` is the mean of the ``d``
    terms' means (as R's ``residuals.coxph(type = "score")``). Multiplied by the case weights
    and summed, they give the score vector.
    """
    st = stratum
    n, p = st.x.shape
    if st.n_times == 0:
        return np.zeros((n, p))
    return _score_residuals(beta, st, ties)


def _score_residuals(beta: FloatArray, st: SortedStratum, ties: Ties) -> FloatArray:
    tm = _terms(beta, st, ties)
    m = tm.m
    phi = tm.w if st.weights is None else tm.w / st.weights  # exp(eta - shift)
    xbar, mean_xbar = _event_means(st, tm)
    # hazard part: -phi_i * sum over event times <= t_i of (c0_k x_i - g_k), g = m sum r1/r0^2
    g = per_time(st, xbar * tm.inv[:, None])
    if m is not None:
        g = g * m[:, None]
    at_risk = len(st.row_seg)
    big_g = np.cumsum(g[::-1], axis=0)[::-1][st.row_seg]
    resid = np.zeros_like(st.x)
    resid[:at_risk] = -phi[:at_risk, None] * (
        st.x[:at_risk] * cumulative_hazard(st, tm.c0)[:, None] - big_g
    )
    # event part: x_e minus the mean of its time's term means
    x_events = st.x[st.event_rows]
    add = x_events - mean_xbar
    if tm.d1 is not None and tm.c1 is not None:
        # Efron: an event is at risk with weight 1 - f in its own time's terms; add back f
        gf = per_time(st, xbar * (st.frac * tm.inv)[:, None])
        if m is not None:
            gf = gf * m[:, None]
        pe = phi[st.event_rows][:, None]
        add += pe * (x_events * tm.c1[st.entry_time][:, None] - gf[st.entry_time])
    resid[st.event_rows] += add
    return resid


def block_meat(beta: FloatArray, block: CoxBlock, ties: Ties) -> FloatArray:
    """Middle of the sandwich variance: sum of outer products of (clustered) score residuals.

    Each row's score residual (:func:`score_residuals`) times its case weight, summed per
    cluster when the block has clusters (else per row), gives ``sum_c U_c U_c'``. Blocks whose
    clusters do not cross blocks add up to the pooled meat; the robust covariance is
    ``I^-1 (sum of meats) I^-1`` (lifelines ``robust=True`` / ``cluster_col``, R ``coxph``
    ``robust`` / ``cluster``).

    Parameters
    ----------
    beta
        Coefficients (length ``p``), normally the fitted ones.
    block
        A block from :func:`make_block` (with ``cluster`` for a clustered variance).
    ties
        ``"efron"`` or ``"breslow"``.

    Returns
    -------
    numpy.ndarray
        The ``p x p`` meat matrix of this block.
    """
    p = len(beta)
    meat = np.zeros((p, p))
    per_cluster = np.zeros((block.n_clusters, p)) if block.n_clusters else None
    for st in block.strata.values():
        u = score_residuals(beta, st, ties)
        if st.weights is not None:
            u *= st.weights[:, None]
        if per_cluster is not None and st.cluster is not None:
            for j in range(p):
                per_cluster[:, j] += np.bincount(
                    st.cluster, weights=u[:, j], minlength=block.n_clusters
                )
        else:
            meat += tdot(u, u)
    if per_cluster is not None:
        meat += tdot(per_cluster, per_cluster)
    return meat


TotalStats = Callable[[FloatArray], tuple[float, FloatArray, FloatArray]]


def newton(
    total: TotalStats,
    p: int,
    tol: float = 1e-12,
    max_iter: int = 50,
    beta0: npt.ArrayLike | None = None,
) -> tuple[FloatArray, FloatArray, float, int]:
    """Maximize a log partial likelihood by Newton-Raphson with step halving.

    Parameters
    ----------
    total
        ``beta -> (loglik, score, information)`` summed over every stratum (and every site,
        e.g. one federated round per call).
    p
        Number of coefficients.
    tol
        Stop when the largest absolute Newton step is below ``tol`` (that last step is taken
        without another call of ``total``).
    max_iter
        Maximum number of Newton steps.
    beta0
        Starting point (default zero); a good start saves iterations, not accuracy.

    Returns
    -------
    tuple
        ``(beta, covariance, loglik, iterations)``; the covariance is the inverse information
        (at ``beta`` up to the last step, below ``tol``).

    Raises
    ------
    RuntimeError
        When the steps do not fall below ``tol`` within ``max_iter`` iterations.
    numpy.linalg.LinAlgError
        When the information matrix is singular (collinear covariates).
    """
    beta = np.zeros(p) if beta0 is None else np.array(beta0, dtype=np.float64).reshape(p)
    ll, score, info = total(beta)
    step = np.full(p, np.inf)
    for it in range(1, max_iter + 1):
        step = np.linalg.solve(info, score)
        if np.max(np.abs(step)) < tol:
            # converged: take the last step without evaluating there again (the
            # information changes by O(step), the log-likelihood by O(step^2))
            return beta + step, np.asarray(np.linalg.inv(info), dtype=np.float64), ll, it
        new = beta + step
        new_ll, new_score, new_info = total(new)
        halvings = 0
        while not new_ll >= ll - 1e-12 * abs(ll) and halvings < 30:
            step /= 2.0
            new = beta + step
            new_ll, new_score, new_info = total(new)
            halvings += 1
        beta, ll, score, info = new, new_ll, new_score, new_info
    raise RuntimeError(
        f"Cox fit did not converge in {max_iter} iterations (last step "
        f"{np.max(np.abs(step)):.3g}); check for separation or collinear covariates"
    )
