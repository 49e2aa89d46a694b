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
- :func:`kaplan_meier`, :func:`logrank`, :func:`cox`, :func:`rmst`, :func:`aalen_johansen`:
  survival estimators on a pandas DataFrame or an ibis table; :func:`time_to_event` builds their
  input from a CDM (:class:`TimeToEventSpec`, presets in :func:`comparison`).
- :class:`Federation`: the same estimators (and :func:`logistic`) over sites whose rows never
  leave them; ``Federation.from_tables`` / ``Federation.from_cdm``; ``.pooled()`` for checks.
- :func:`compare_treatments`, :func:`propensity`, :func:`iptw`, :func:`match`, :func:`balance`:
  comparative effectiveness (naive, IPTW, matching, regression) locally or federated.
- :mod:`clinnova_explore.report`: ``build_survival_report`` (an offline HTML report).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinnova_explore._lazy import lazy_exports

if TYPE_CHECKING:
    from clinnova_explore import overview
    from clinnova_explore.analysis import (
        TimeAtRisk,
        characterize,
        count_cohort,
        incidence,
        pathways,
    )
    from clinnova_explore.analysis.effects import compare_treatments, iptw, match
    from clinnova_explore.analysis.effects.balance import balance
    from clinnova_explore.analysis.effects.propensity import propensity
    from clinnova_explore.analysis.logistic import logistic
    from clinnova_explore.analysis.survival import (
        aalen_johansen,
        cox,
        kaplan_meier,
        logrank,
        rmst,
    )
    from clinnova_explore.analysis.survival.presets import comparison, comparison_names
    from clinnova_explore.analysis.survival.tte import Covariate as TimeToEventCovariate
    from clinnova_explore.analysis.survival.tte import TimeToEventSpec, time_to_event
    from clinnova_explore.catalog import Catalog, CatalogError, DisclosurePolicy, Site
    from clinnova_explore.cdm.source import open_cdm
    from clinnova_explore.cohort import CohortDefinition, compile_cohort, generate_cohort
    from clinnova_explore.federated import Federation
    from clinnova_explore.harmonize import harmonize_all, harmonize_site
    from clinnova_explore.pipeline import BuildResult, build
    from clinnova_explore.quality import run_checks, run_site
    from clinnova_explore.synth import generate

_EXPORTS = {
    "overview": "clinnova_explore.overview:",
    "TimeAtRisk": "clinnova_explore.analysis",
    "characterize": "clinnova_explore.analysis",
    "count_cohort": "clinnova_explore.analysis",
    "incidence": "clinnova_explore.analysis",
    "pathways": "clinnova_explore.analysis",
    "balance": "clinnova_explore.analysis.effects.balance:balance",
    "compare_treatments": "clinnova_explore.analysis.effects",
    "iptw": "clinnova_explore.analysis.effects",
    "match": "clinnova_explore.analysis.effects",
    "propensity": "clinnova_explore.analysis.effects.propensity:propensity",
    "logistic": "clinnova_explore.analysis.logistic",
    "aalen_johansen": "clinnova_explore.analysis.survival",
    "cox": "clinnova_explore.analysis.survival",
    "kaplan_meier": "clinnova_explore.analysis.survival",
    "logrank": "clinnova_explore.analysis.survival",
    "rmst": "clinnova_explore.analysis.survival",
    "comparison": "clinnova_explore.analysis.survival.presets",
    "comparison_names": "clinnova_explore.analysis.survival.presets",
    "TimeToEventCovariate": "clinnova_explore.analysis.survival.tte:Covariate",
    "TimeToEventSpec": "clinnova_explore.analysis.survival.tte",
    "time_to_event": "clinnova_explore.analysis.survival.tte",
    "Catalog": "clinnova_explore.catalog",
    "CatalogError": "clinnova_explore.catalog",
    "DisclosurePolicy": "clinnova_explore.catalog",
    "Site": "clinnova_explore.catalog",
    "open_cdm": "clinnova_explore.cdm.source",
    "CohortDefinition": "clinnova_explore.cohort",
    "compile_cohort": "clinnova_explore.cohort",
    "generate_cohort": "clinnova_explore.cohort",
    "Federation": "clinnova_explore.federated",
    "harmonize_all": "clinnova_explore.harmonize",
    "harmonize_site": "clinnova_explore.harmonize",
    "BuildResult": "clinnova_explore.pipeline",
    "build": "clinnova_explore.pipeline",
    "run_checks": "clinnova_explore.quality",
    "run_site": "clinnova_explore.quality",
    "generate": "clinnova_explore.synth",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__version__ = "0.1.0"

__all__ = [
    "BuildResult",
    "Catalog",
    "CatalogError",
    "CohortDefinition",
    "DisclosurePolicy",
    "Federation",
    "Site",
    "TimeAtRisk",
    "TimeToEventCovariate",
    "TimeToEventSpec",
    "__version__",
    "aalen_johansen",
    "balance",
    "build",
    "characterize",
    "compare_treatments",
    "comparison",
    "comparison_names",
    "compile_cohort",
    "count_cohort",
    "cox",
    "generate",
    "generate_cohort",
    "harmonize_all",
    "harmonize_site",
    "incidence",
    "iptw",
    "kaplan_meier",
    "logistic",
    "logrank",
    "match",
    "open_cdm",
    "overview",
    "pathways",
    "propensity",
    "rmst",
    "run_checks",
    "run_site",
    "time_to_event",
]
