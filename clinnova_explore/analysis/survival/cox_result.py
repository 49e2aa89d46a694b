"""The result of a Cox fit: :class:`CoxResult`, built by :func:`cox_result`, and Harrell's C.

:func:`cox_result` turns coefficients and a covariance into the summary table (hazard ratios,
Wald confidence intervals and p-values), so a local fit (:func:`~.cox.cox`) and a federated fit
assembled by a coordinator report the same way.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from clinnova_explore.analysis.result import Provenance
from clinnova_explore.analysis.survival.cox_block import CoxBlock, FloatArray, Ties
from clinnova_explore.analysis.wald import wald_table

if TYPE_CHECKING:
    from clinnova_explore.analysis.survival.schoenfeld import PHTestResult

__all__ = ["CoxInputs", "CoxResult", "concordance_index", "cox_result"]


@dataclass(frozen=True)
class CoxInputs:
    """The prepared data a :class:`CoxResult` keeps for concordance and residual diagnostics.

    Parameters
    ----------
    blocks
        The blocks the model was fitted on (their arrays are shared, not copied).
    information_inverse
        Inverse of the information matrix at the estimate (the model-based covariance).
    """

    blocks: tuple[CoxBlock, ...]
    information_inverse: FloatArray


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
        Number of events (rows, not weighted).
    ties
        Tie method used.
    strata
        Stratification column(s), if any (a tuple when several).
    iterations
        Newton-Raphson steps on all rows (after a subsample warm start on large data).
    covariance
        Covariance of the coefficients (robust when ``robust``), covariates x covariates.
    robust
        Whether ``se`` and ``covariance`` are the sandwich (robust or clustered) estimate.
    inputs
        Prepared data for :attr:`concordance` and :meth:`check_ph` (None for a federated fit).
    provenance
        How the result was made (set by federated and pooled runs).
    """

    summary: pd.DataFrame
    loglik: float
    n: int
    events: int
    ties: Ties
    strata: str | tuple[str, ...] | None
    iterations: int
    covariance: pd.DataFrame
    robust: bool = False
    inputs: CoxInputs | None = field(default=None, repr=False, compare=False)
    provenance: Provenance | None = None

    @cached_property
    def concordance(self) -> float:
        """Harrell's C of the linear predictor, pairs compared within strata only.

        Computed on first access (like lifelines' ``concordance_index_``); ``nan`` when the
        data are not at hand (federated fits).
        """
        if self.inputs is None:
            return float("nan")
        beta = self.summary["coef"].to_numpy()
        parts: list[tuple[Any, ...]] = []
        for block in self.inputs.blocks:
            for st in block.strata.values():
                event = np.zeros(len(st.time), dtype=bool)
                event[st.event_rows] = True
                parts.append((st.time, event, st.x @ beta, np.full(len(st.time), len(parts))))
        time, event, risk, label = (np.concatenate(c) for c in zip(*parts, strict=True))
        return concordance_index(time, event, risk, label)

    def check_ph(self, transform: str = "rank") -> PHTestResult:
        """Test proportional hazards with scaled Schoenfeld residuals.

        See :func:`~clinnova_explore.analysis.survival.schoenfeld.proportional_hazards_test`.
        """
        from clinnova_explore.analysis.survival.schoenfeld import proportional_hazards_test

        return proportional_hazards_test(self, transform=transform)  # type: ignore[arg-type]

    def plot(self, **kw: Any) -> Any:
        """Forest plot of the hazard ratios (``viz.survival_plots.forest_plot``)."""
        from clinnova_explore.viz.survival_plots import forest_plot

        return forest_plot({"model": self}, **kw)

    def _repr_html_(self) -> str:
        table = self.summary.to_html(float_format=lambda v: f"{v:.4g}")
        strata = self.strata if isinstance(self.strata, str) else ", ".join(self.strata or ())
        strata = f", strata={html.escape(strata)}" if strata else ""
        robust = ", robust SE" if self.robust else ""
        foot = (
            f"<p>Cox PH ({html.escape(self.ties)} ties{strata}{robust}): n={self.n}, "
            f"events={self.events}, log-likelihood={self.loglik:.4f}, "
            f"concordance={self.concordance:.4f}</p>"
        )
        return table + foot


def cox_result(
    beta: npt.ArrayLike,
    covariance: npt.ArrayLike,
    names: Sequence[str],
    *,
    loglik: float,
    n: int,
    events: int,
    ties: Ties = "efron",
    strata: str | Sequence[str] | None = None,
    iterations: int = 0,
    alpha: float = 0.05,
    robust: bool = False,
    inputs: CoxInputs | None = None,
    provenance: Provenance | None = None,
) -> CoxResult:
    """Build a :class:`CoxResult` (summary with Wald CIs and p-values) from a fit.

    Used by :func:`cox` and by a federation coordinator that ran :func:`newton` over sites.

    Parameters
    ----------
    beta
        Coefficients (length ``p``).
    covariance
        Their covariance (``p x p``): the inverse information, or a sandwich estimate.
    names
        Covariate names (length ``p``).
    loglik, n, events, ties, strata, iterations
        Reported as given (see :class:`CoxResult`).
    alpha
        Confidence intervals are ``1 - alpha``.
    robust
        Whether ``covariance`` is a sandwich estimate.
    inputs
        Prepared data for concordance and diagnostics, if at hand.
    provenance
        How the result was made.

    Returns
    -------
    CoxResult
    """
    b = np.asarray(beta, dtype=np.float64).reshape(-1)
    cov = np.asarray(covariance, dtype=np.float64).reshape(len(b), len(b))
    if len(names) != len(b):
        raise ValueError(f"got {len(names)} names for {len(b)} coefficients")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    summary = wald_table(names, b, np.sqrt(np.diag(cov)), ratio="hr", alpha=alpha)
    label = strata if strata is None or isinstance(strata, str) else tuple(strata)
    return CoxResult(
        summary=summary,
        loglik=float(loglik),
        n=int(n),
        events=int(events),
        ties=ties,
        strata=label,
        iterations=int(iterations),
        covariance=pd.DataFrame(cov, index=summary.index, columns=summary.index.rename(None)),
        robust=robust,
        inputs=inputs,
        provenance=provenance,
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
