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
from clinnova_explore.analysis.characterize import Characterize, CharacterizeSpec, characterize
from clinnova_explore.analysis.contract import (
    TRANSPORTS,
    Analysis,
    InProcessRunner,
    Moments,
    Runner,
    Traffic,
    Transport,
    answered,
    collect,
    combine_counts,
    combine_moments,
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
    "incidence",
    "pathways",
    "pooled_site",
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
