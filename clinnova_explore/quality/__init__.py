"""Data-quality checks per site, in the manner of the OHDSI DataQualityDashboard.

Every check is an ibis expression pushed down to the site's backend (DuckDB, PostgreSQL, ...),
counting violating rows against a denominator; a check passes while the share of violating
rows stays at or below its threshold. Checks follow Kahn's framework (conformance,
completeness, plausibility) as the DQD does.

Examples
--------
>>> from clinnova_explore.catalog import Catalog  # doctest: +SKIP
>>> report = run_site(Catalog.load().site("basel"))  # doctest: +SKIP
>>> report.failing()  # doctest: +SKIP
"""

from __future__ import annotations

from clinnova_explore.quality.check import Check, CheckContext
from clinnova_explore.quality.recall import (
    QUALITY_CATCHERS,
    recall_against_truth,
    unexplained_violations,
)
from clinnova_explore.quality.registry import CHECKS, get_check, select_checks
from clinnova_explore.quality.report import (
    RESULT_COLUMNS,
    VIOLATION_COLUMNS,
    QualityReport,
    overview,
)
from clinnova_explore.quality.runner import DEFAULT_VIOLATION_LIMIT, run_checks, run_site
from clinnova_explore.quality.store import read_results, store_results

__all__ = [
    "CHECKS",
    "DEFAULT_VIOLATION_LIMIT",
    "QUALITY_CATCHERS",
    "RESULT_COLUMNS",
    "VIOLATION_COLUMNS",
    "Check",
    "CheckContext",
    "QualityReport",
    "get_check",
    "overview",
    "read_results",
    "recall_against_truth",
    "run_checks",
    "run_site",
    "select_checks",
    "store_results",
    "unexplained_violations",
]
