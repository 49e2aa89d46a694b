"""clinnova_explore: federated exploration of harmonized OMOP CDM data (MS, IBD, RA).

The public API:

- :class:`Catalog` / :class:`Site`: where each site's data live; ``site.table("person")``.
- :func:`build`: generate, harmonize and quality-check the synthetic demo federation.
- :mod:`clinnova_explore.overview`: the federation at a glance (aggregates only).
- :func:`harmonize_site`, :func:`harmonize_all`: native exports -> CDM with quarantine.
- :func:`run_checks`, :func:`run_site`: data-quality checks.
- :func:`generate`: the synthetic five-hospital federation with ground truth.
"""

from __future__ import annotations

from clinnova_explore import overview
from clinnova_explore.catalog import Catalog, CatalogError, DisclosurePolicy, Site
from clinnova_explore.harmonize import harmonize_all, harmonize_site
from clinnova_explore.pipeline import BuildResult, build
from clinnova_explore.quality import run_checks, run_site
from clinnova_explore.synth import generate

__version__ = "0.1.0"

__all__ = [
    "BuildResult",
    "Catalog",
    "CatalogError",
    "DisclosurePolicy",
    "Site",
    "__version__",
    "build",
    "generate",
    "harmonize_all",
    "harmonize_site",
    "overview",
    "run_checks",
    "run_site",
]
