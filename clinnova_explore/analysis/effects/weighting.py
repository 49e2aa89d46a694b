"""Inverse probability of treatment weights (IPTW) from propensity scores.

The unstabilized weight is ``1 / ps`` for treated and ``1 / (1 - ps)`` for comparator persons
(average treatment effect in the whole population, Rosenbaum 1987). Stabilized weights multiply
by the marginal probability of the arm a person is in, ``P(T = 1)`` resp. ``P(T = 0)``
(Robins, Hernán & Brumback 2000; Xu et al. 2010), which keeps the weighted sample size close to
the real one. Trimming (Stürmer et al. 2010, asymmetric trimming by score bounds) gives weight 0
to persons whose score lies outside ``[low, high]``; the marginal probabilities are then taken
among the persons kept.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["iptw", "marginal_treated", "stabilized_weights", "trim_mask"]


def _arrays(ps: npt.ArrayLike, treatment: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(ps, dtype=np.float64)
    t = np.asarray(treatment, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 1:
        raise ValueError(
            f"propensity scores and treatment must be 1-d of equal length, got {p.shape} and "
            f"{t.shape}"
        )
    if not np.isin(t, (0.0, 1.0)).all():
        raise ValueError("treatment must hold only 0/1 (1 = treated/target arm)")
    if not ((p > 0) & (p < 1)).all():
        raise ValueError(
            "propensity scores must lie strictly between 0 and 1; a score of 0 or 1 means a "
            "person could only ever get one treatment (positivity is violated)"
        )
    return p, t


def trim_mask(ps: npt.ArrayLike, trim: tuple[float, float] | None) -> np.ndarray:
    """``True`` for the persons kept by trimming (score within ``trim``, inclusive)."""
    p = np.asarray(ps, dtype=np.float64)
    if trim is None:
        return np.ones(p.shape, dtype=bool)
    low, high = trim
    if not 0 <= low < high <= 1:
        raise ValueError(f"trim must be (low, high) with 0 <= low < high <= 1, got {trim}")
    return (p >= low) & (p <= high)


def marginal_treated(treatment: npt.ArrayLike, keep: npt.ArrayLike | None = None) -> float:
    """``P(T = 1)`` among the persons kept (the stabilizing numerator for the treated)."""
    t = np.asarray(treatment, dtype=np.float64)
    k = np.ones(t.shape, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    if not k.any():
        raise ValueError("trimming removed every person; widen the trim bounds")
    return float(t[k].mean())


def stabilized_weights(
    ps: npt.ArrayLike,
    treatment: npt.ArrayLike,
    p_treated: float | None,
    keep: npt.ArrayLike | None = None,
) -> np.ndarray:
    """Weights given the marginal ``P(T = 1)`` (``None`` = unstabilized), 0 where not kept.

    Split out of :func:`iptw` so a federation can pass the marginal probability it computed
    over all sites while each site computes its own persons' weights.
    """
    p, t = _arrays(ps, treatment)
    num_t, num_c = (1.0, 1.0) if p_treated is None else (p_treated, 1.0 - p_treated)
    w = np.where(t == 1.0, num_t / p, num_c / (1.0 - p))
    if keep is not None:
        w = np.where(np.asarray(keep, dtype=bool), w, 0.0)
    return w


def iptw(
    ps: npt.ArrayLike,
    treatment: npt.ArrayLike,
    *,
    stabilized: bool = True,
    trim: tuple[float, float] | None = None,
) -> np.ndarray:
    """Inverse probability of treatment weights.

    Parameters
    ----------
    ps
        Propensity scores ``P(T = 1 | x)``, strictly inside (0, 1).
    treatment
        0/1 per person.
    stabilized
        Multiply by the marginal probability of the person's arm.
    trim
        Optional ``(low, high)`` score bounds; persons outside get weight 0.

    Returns
    -------
    numpy.ndarray
        One weight per person.

    Examples
    --------
    >>> iptw([0.2, 0.5, 0.8, 0.5], [1, 1, 0, 0]).round(6).tolist()
    [2.5, 1.0, 2.5, 1.0]
    >>> iptw([0.2, 0.5, 0.8, 0.5], [1, 1, 0, 0], stabilized=False).round(6).tolist()
    [5.0, 2.0, 5.0, 2.0]
    """
    p, t = _arrays(ps, treatment)
    keep = trim_mask(p, trim)
    p_treated = marginal_treated(t, keep) if stabilized else None
    return stabilized_weights(p, t, p_treated, keep if trim is not None else None)
