"""clinnova_explore: federated exploration of harmonized OMOP CDM data (MS, IBD, RA).

The public API:

- :class:`Catalog` / :class:`Site`: where each site's data live; ``site.table("person")``.
- :func:`build`: generate, harmonize and quality-check the synthetic demo federation.
- :mod:`clinnova_explore.overview`: the federation at a glance (aggregates only).
- :func:`harmonize_site`, :func:`harmonize_all`: native exports -> CDM with quarantine.
- :func:`run_checks`, :func:`run_site`: data-quality checks.
- :func:`generate`: the synthetic five-hospital federation with ground truth.
- :class:`CohortDefinition`, :func:`compile_cohort`, :func:`open_cdm`: cohorts (YAML or
  ATLAS/Circe JSON) on any OMOP CDM database.
- :func:`count_cohort`, :func:`characterize`, :func:`incidence`, :func:`pathways`: analyses that
  run pooled or federated (``mode=``) with the same code.
- :func:`kaplan_meier`, :func:`logrank`, :func:`cox`: survival estimators on a pandas DataFrame or
  an ibis table (work in progress towards issue 4: no federation object or dashboard yet).
"""

from __future__ import annotations

from clinnova_explore import overview
from clinnova_explore.analysis import (
    TimeAtRisk,
    characterize,
    count_cohort,
    incidence,
    pathways,
)
from clinnova_explore.analysis.survival import cox, kaplan_meier, logrank
from clinnova_explore.catalog import Catalog, CatalogError, DisclosurePolicy, Site
from clinnova_explore.cdm.source import open_cdm
from clinnova_explore.cohort import CohortDefinition, compile_cohort, generate_cohort
from clinnova_explore.harmonize import harmonize_all, harmonize_site
from clinnova_explore.pipeline import BuildResult, build
from clinnova_explore.quality import run_checks, run_site
from clinnova_explore.synth import generate

__version__ = "0.1.0"

__all__ = [
    "BuildResult",
    "Catalog",
    "CatalogError",
    "CohortDefinition",
    "DisclosurePolicy",
    "Site",
    "TimeAtRisk",
    "__version__",
    "build",
    "characterize",
    "compile_cohort",
    "count_cohort",
    "cox",
    "generate",
    "generate_cohort",
    "harmonize_all",
    "harmonize_site",
    "incidence",
    "kaplan_meier",
    "logrank",
    "open_cdm",
    "overview",
    "pathways",
    "run_checks",
    "run_site",
]
