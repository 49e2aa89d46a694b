"""Scripted reports: self-contained HTML files that open offline.

- :func:`build_survival_report` / :func:`write_survival_report`: a survival and treatment-effect
  report from a YAML config (:class:`SurvivalReportConfig`); on the command line
  ``clinnova-explore report survival --config FILE.yaml -o report.html``.
- :func:`external_references`: what in an HTML page would be fetched from elsewhere.
"""

from __future__ import annotations

from clinnova_explore.report.config import (
    ReportConfigError,
    SurvivalReportConfig,
    load_report_config,
)
from clinnova_explore.report.html import external_references
from clinnova_explore.report.survival import (
    build_survival_report,
    survival_report,
    write_survival_report,
)

__all__ = [
    "ReportConfigError",
    "SurvivalReportConfig",
    "build_survival_report",
    "external_references",
    "load_report_config",
    "survival_report",
    "write_survival_report",
]
