"""Preference score and empirical equipoise (Walker et al. 2013).

The preference score rescales the propensity score so that the marginal share of treated
persons maps to 0.5: ``logit(F) = logit(ps) - logit(P)``, ``P`` the share treated. Two
treatments are in empirical equipoise when most persons (Walker et al. suggest at least half)
have a preference score between 0.3 and 0.7. Reference: Walker AM, Patrick AR, Lauer MS, et al.
(2013), "A tool for assessing the feasibility of comparative effectiveness research",
Comparative Effectiveness Research 3: 11-20.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from clinnova_explore.analysis.effects.propensity import logit

__all__ = ["equipoise", "in_equipoise", "preference_from", "preference_score"]


def preference_from(ps: npt.ArrayLike, p_treated: float) -> np.ndarray:
    """Preference scores given the share treated ``p_treated`` (e.g. over all sites)."""
    if not 0 < p_treated < 1:
        raise ValueError(f"the share treated must lie strictly between 0 and 1, got {p_treated}")
    x = logit(np.asarray(ps, dtype=np.float64)) - float(logit(np.array([p_treated]))[0])
    return 1.0 / (1.0 + np.exp(-x))


def preference_score(ps: npt.ArrayLike, treatment: npt.ArrayLike) -> np.ndarray:
    """Preference scores, with the share treated taken from ``treatment`` (0/1).

    Examples
    --------
    >>> preference_score([0.25, 0.5, 0.75, 0.25], [1, 0, 0, 0]).round(4).tolist()
    [0.5, 0.75, 0.9, 0.5]
    """
    t = np.asarray(treatment, dtype=np.float64)
    return preference_from(ps, float(t.mean()))


def in_equipoise(preference: npt.ArrayLike, bounds: tuple[float, float] = (0.3, 0.7)) -> np.ndarray:
    """``True`` where the preference score lies within ``bounds`` (inclusive)."""
    low, high = bounds
    if not 0 <= low < high <= 1:
        raise ValueError(f"bounds must be (low, high) with 0 <= low < high <= 1, got {bounds}")
    f = np.asarray(preference, dtype=np.float64)
    return (f >= low) & (f <= high)


def equipoise(
    ps: npt.ArrayLike, treatment: npt.ArrayLike, bounds: tuple[float, float] = (0.3, 0.7)
) -> float:
    """Share of persons whose preference score lies within ``bounds``.

    Examples
    --------
    >>> equipoise([0.25, 0.5, 0.75, 0.25], [1, 0, 0, 0])
    0.5
    """
    return float(in_equipoise(preference_score(ps, treatment), bounds).mean())
