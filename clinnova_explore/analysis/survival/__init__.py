"""Survival analysis on pandas DataFrames or ibis tables, from per-time counts.

- :mod:`~clinnova_explore.analysis.survival.counts`: :func:`event_table`, counts per time.
- :mod:`~clinnova_explore.analysis.survival.km`: :func:`kaplan_meier`.
- :mod:`~clinnova_explore.analysis.survival.logrank`: :func:`logrank`.
- :mod:`~clinnova_explore.analysis.survival.cox`: :func:`cox` (Efron or Breslow ties, strata;
  case weights, robust/clustered variances; per-stratum sufficient statistics, :func:`newton`
  and :func:`block_meat` in :mod:`~clinnova_explore.analysis.survival.cox_stats`).
- :mod:`~clinnova_explore.analysis.survival.schoenfeld`: :func:`proportional_hazards_test`.
- :mod:`~clinnova_explore.analysis.survival.rmst`: :func:`rmst`, restricted mean survival time.
- :mod:`~clinnova_explore.analysis.survival.competing`: :func:`aalen_johansen`, cumulative
  incidence under competing risks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinnova_explore._lazy import lazy_exports

if TYPE_CHECKING:
    from clinnova_explore.analysis.survival.competing import AalenJohansenResult, aalen_johansen
    from clinnova_explore.analysis.survival.counts import (
        SurvivalInputError,
        combine_event_tables,
        event_table,
    )
    from clinnova_explore.analysis.survival.cox import (
        CoxInputs,
        CoxResult,
        cox,
        cox_result,
        fit_blocks,
    )
    from clinnova_explore.analysis.survival.km import (
        KaplanMeierResult,
        kaplan_meier,
        kaplan_meier_from_event_table,
    )
    from clinnova_explore.analysis.survival.logrank import (
        LogrankResult,
        logrank,
        logrank_from_event_table,
    )
    from clinnova_explore.analysis.survival.rmst import RMSTResult, rmst
    from clinnova_explore.analysis.survival.schoenfeld import (
        PHTestResult,
        proportional_hazards_test,
    )

_EXPORTS = {
    "AalenJohansenResult": "clinnova_explore.analysis.survival.competing",
    "aalen_johansen": "clinnova_explore.analysis.survival.competing",
    "SurvivalInputError": "clinnova_explore.analysis.survival.counts",
    "combine_event_tables": "clinnova_explore.analysis.survival.counts",
    "event_table": "clinnova_explore.analysis.survival.counts",
    "CoxInputs": "clinnova_explore.analysis.survival.cox",
    "CoxResult": "clinnova_explore.analysis.survival.cox",
    "cox": "clinnova_explore.analysis.survival.cox",
    "cox_result": "clinnova_explore.analysis.survival.cox",
    "fit_blocks": "clinnova_explore.analysis.survival.cox",
    "KaplanMeierResult": "clinnova_explore.analysis.survival.km",
    "kaplan_meier": "clinnova_explore.analysis.survival.km",
    "kaplan_meier_from_event_table": "clinnova_explore.analysis.survival.km",
    "LogrankResult": "clinnova_explore.analysis.survival.logrank",
    "logrank": "clinnova_explore.analysis.survival.logrank",
    "logrank_from_event_table": "clinnova_explore.analysis.survival.logrank",
    "RMSTResult": "clinnova_explore.analysis.survival.rmst",
    "rmst": "clinnova_explore.analysis.survival.rmst",
    "PHTestResult": "clinnova_explore.analysis.survival.schoenfeld",
    "proportional_hazards_test": "clinnova_explore.analysis.survival.schoenfeld",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "AalenJohansenResult",
    "CoxInputs",
    "CoxResult",
    "KaplanMeierResult",
    "LogrankResult",
    "PHTestResult",
    "RMSTResult",
    "SurvivalInputError",
    "aalen_johansen",
    "combine_event_tables",
    "cox",
    "cox_result",
    "event_table",
    "fit_blocks",
    "kaplan_meier",
    "kaplan_meier_from_event_table",
    "logrank",
    "logrank_from_event_table",
    "proportional_hazards_test",
    "rmst",
]
