"""Analyses on the one-code-path contract: ``local(site, spec) -> Payload``, then ``combine``.

- :mod:`~clinnova_explore.analysis.payload`: :class:`Payload`, exact JSON / Arrow IPC encodings.
- :mod:`~clinnova_explore.analysis.contract`: :func:`run` (federated or pooled), the site and
  coordinator steps, disclosure and combine helpers.
- :mod:`~clinnova_explore.analysis.pooled`: :func:`pooled_site`, all sites as one virtual site.
- :mod:`~clinnova_explore.analysis.result`: :class:`AnalysisResult`, :class:`Provenance`.
- :mod:`~clinnova_explore.analysis.counts`: :func:`count_cohort`, persons and attrition.
- :mod:`~clinnova_explore.analysis.characterize`: :func:`characterize`, Table 1 with SMDs.
- :mod:`~clinnova_explore.analysis.incidence`: :func:`incidence`, rates with exact Poisson CIs.
- :mod:`~clinnova_explore.analysis.pathways`: :func:`pathways`, treatment sequences.
"""

from __future__ import annotations

# the analyses themselves (after the contract they are built on)
from typing import TYPE_CHECKING

from clinnova_explore._lazy import lazy_exports

if TYPE_CHECKING:
    from clinnova_explore.analysis.characterize import Characterize, CharacterizeSpec, characterize
    from clinnova_explore.analysis.contract import (
        TRANSPORTS,
        Analysis,
        FederationError,
        InProcessRunner,
        Moments,
        Runner,
        SiteUnavailableError,
        Traffic,
        Transport,
        answered,
        collect,
        combine_counts,
        combine_moments,
        exchange_round,
        plan,
        preview,
        receive,
        refuse,
        refuse_small_cohort,
        release,
        run,
        spec_hashes,
        suppress,
        suppressed_cells,
    )
    from clinnova_explore.analysis.counts import (
        COHORT_COUNTS,
        CohortCountResult,
        CohortCounts,
        count_cohort,
    )
    from clinnova_explore.analysis.covariates import Covariate, default_covariates
    from clinnova_explore.analysis.incidence import (
        CohortTable,
        IncidenceAnalysis,
        IncidenceResult,
        IncidenceSpec,
        TimeAtRisk,
        exact_poisson_ci,
        exact_proportion_ci,
        incidence,
    )
    from clinnova_explore.analysis.pathways import (
        PathwaysAnalysis,
        PathwaysResult,
        PathwaysSpec,
        pathways,
    )
    from clinnova_explore.analysis.payload import Payload, PayloadError
    from clinnova_explore.analysis.pooled import (
        PooledCdm,
        PooledModeError,
        pooled_site,
        site_label,
        strictest,
    )
    from clinnova_explore.analysis.result import AnalysisResult, Provenance
    from clinnova_explore.analysis.table1 import Table1Result

_EXPORTS = {
    "Characterize": "clinnova_explore.analysis.characterize",
    "CharacterizeSpec": "clinnova_explore.analysis.characterize",
    "characterize": "clinnova_explore.analysis.characterize",
    "TRANSPORTS": "clinnova_explore.analysis.contract",
    "Analysis": "clinnova_explore.analysis.contract",
    "FederationError": "clinnova_explore.analysis.contract",
    "SiteUnavailableError": "clinnova_explore.analysis.contract",
    "exchange_round": "clinnova_explore.analysis.contract",
    "plan": "clinnova_explore.analysis.contract",
    "preview": "clinnova_explore.analysis.contract",
    "InProcessRunner": "clinnova_explore.analysis.contract",
    "Moments": "clinnova_explore.analysis.contract",
    "Runner": "clinnova_explore.analysis.contract",
    "Traffic": "clinnova_explore.analysis.contract",
    "Transport": "clinnova_explore.analysis.contract",
    "answered": "clinnova_explore.analysis.contract",
    "collect": "clinnova_explore.analysis.contract",
    "combine_counts": "clinnova_explore.analysis.contract",
    "combine_moments": "clinnova_explore.analysis.contract",
    "receive": "clinnova_explore.analysis.contract",
    "refuse": "clinnova_explore.analysis.contract",
    "refuse_small_cohort": "clinnova_explore.analysis.contract",
    "release": "clinnova_explore.analysis.contract",
    "run": "clinnova_explore.analysis.contract",
    "spec_hashes": "clinnova_explore.analysis.contract",
    "suppress": "clinnova_explore.analysis.contract",
    "suppressed_cells": "clinnova_explore.analysis.contract",
    "COHORT_COUNTS": "clinnova_explore.analysis.counts",
    "CohortCountResult": "clinnova_explore.analysis.counts",
    "CohortCounts": "clinnova_explore.analysis.counts",
    "count_cohort": "clinnova_explore.analysis.counts",
    "Covariate": "clinnova_explore.analysis.covariates",
    "default_covariates": "clinnova_explore.analysis.covariates",
    "CohortTable": "clinnova_explore.analysis.incidence",
    "IncidenceAnalysis": "clinnova_explore.analysis.incidence",
    "IncidenceResult": "clinnova_explore.analysis.incidence",
    "IncidenceSpec": "clinnova_explore.analysis.incidence",
    "TimeAtRisk": "clinnova_explore.analysis.incidence",
    "exact_poisson_ci": "clinnova_explore.analysis.incidence",
    "exact_proportion_ci": "clinnova_explore.analysis.incidence",
    "incidence": "clinnova_explore.analysis.incidence",
    "PathwaysAnalysis": "clinnova_explore.analysis.pathways",
    "PathwaysResult": "clinnova_explore.analysis.pathways",
    "PathwaysSpec": "clinnova_explore.analysis.pathways",
    "pathways": "clinnova_explore.analysis.pathways",
    "Payload": "clinnova_explore.analysis.payload",
    "PayloadError": "clinnova_explore.analysis.payload",
    "PooledCdm": "clinnova_explore.analysis.pooled",
    "PooledModeError": "clinnova_explore.analysis.pooled",
    "pooled_site": "clinnova_explore.analysis.pooled",
    "site_label": "clinnova_explore.analysis.pooled",
    "strictest": "clinnova_explore.analysis.pooled",
    "AnalysisResult": "clinnova_explore.analysis.result",
    "Provenance": "clinnova_explore.analysis.result",
    "Table1Result": "clinnova_explore.analysis.table1",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "COHORT_COUNTS",
    "TRANSPORTS",
    "Analysis",
    "AnalysisResult",
    "Characterize",
    "CharacterizeSpec",
    "CohortCountResult",
    "CohortCounts",
    "CohortTable",
    "Covariate",
    "FederationError",
    "InProcessRunner",
    "IncidenceAnalysis",
    "IncidenceResult",
    "IncidenceSpec",
    "Moments",
    "PathwaysAnalysis",
    "PathwaysResult",
    "PathwaysSpec",
    "Payload",
    "PayloadError",
    "PooledCdm",
    "PooledModeError",
    "Provenance",
    "Runner",
    "SiteUnavailableError",
    "Table1Result",
    "TimeAtRisk",
    "Traffic",
    "Transport",
    "answered",
    "characterize",
    "collect",
    "combine_counts",
    "combine_moments",
    "count_cohort",
    "default_covariates",
    "exact_poisson_ci",
    "exact_proportion_ci",
    "exchange_round",
    "incidence",
    "pathways",
    "plan",
    "pooled_site",
    "preview",
    "receive",
    "refuse",
    "refuse_small_cohort",
    "release",
    "run",
    "site_label",
    "spec_hashes",
    "strictest",
    "suppress",
    "suppressed_cells",
]
