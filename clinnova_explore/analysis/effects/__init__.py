"""Treatment effects from observational data: propensity scores, weighting, matching, balance.

- :mod:`~clinnova_explore.analysis.effects.propensity`: :func:`propensity` (logistic model).
- :mod:`~clinnova_explore.analysis.effects.weighting`: :func:`iptw` (stabilized, trimmed).
- :mod:`~clinnova_explore.analysis.effects.matching`: :func:`match` (1:1 greedy, caliper).
- :mod:`~clinnova_explore.analysis.effects.balance`: :func:`balance` (SMD before/after).
- :mod:`~clinnova_explore.analysis.effects.equipoise`: :func:`preference_score`,
  :func:`equipoise` (Walker et al. 2013).
- :mod:`~clinnova_explore.analysis.effects.compare`: :func:`compare_treatments`, naive vs
  adjusted Cox models, on pandas or federated
  (:mod:`~clinnova_explore.analysis.effects.federated`).
"""

from __future__ import annotations

from clinnova_explore.analysis.effects.balance import balance
from clinnova_explore.analysis.effects.compare import (
    METHODS,
    EffectResult,
    Method,
    compare_treatments,
)
from clinnova_explore.analysis.effects.equipoise import equipoise, preference_score
from clinnova_explore.analysis.effects.matching import match
from clinnova_explore.analysis.effects.propensity import PropensityModel, propensity
from clinnova_explore.analysis.effects.weighting import iptw

__all__ = [
    "METHODS",
    "EffectResult",
    "Method",
    "PropensityModel",
    "balance",
    "compare_treatments",
    "equipoise",
    "iptw",
    "match",
    "preference_score",
    "propensity",
]
