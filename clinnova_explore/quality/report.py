"""The result of running data-quality checks at one site."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

__all__ = [
    "RESULT_COLUMNS",
    "STATUSES",
    "VIOLATION_COLUMNS",
    "QualityReport",
    "overview",
]

#: Columns of :attr:`QualityReport.summary` and of the stored ``dq_results`` table.
RESULT_COLUMNS: tuple[str, ...] = (
    "site",
    "check_id",
    "category",
    "subcategory",
    "level",
    "cdm_table",
    "cdm_field",
    "description",
    "threshold",
    "num_violated",
    "num_denominator",
    "pct_violated",
    "status",
    "error",
)
#: Columns of :attr:`QualityReport.violations` and of the stored ``dq_violations`` table.
VIOLATION_COLUMNS: tuple[str, ...] = (
    "site",
    "check_id",
    "cdm_table",
    "record_id",
    "person_id",
    "source_file",
    "source_line",
)
STATUSES: tuple[str, ...] = ("PASS", "FAIL", "ERROR", "NOT_APPLICABLE")


@dataclass(frozen=True, eq=False)
class QualityReport:
    """Data-quality results of one site, DQD style.

    Attributes
    ----------
    site_id
        The site the checks ran at.
    summary
        One row per check (:data:`RESULT_COLUMNS`).
    violations
        Violating rows (:data:`VIOLATION_COLUMNS`) of up to ``violation_limit`` CDM rows per
        check, with the native file and line each came from when the site keeps
        ``source_provenance``: one row per distinct (check, record, provenance line), so a
        record whose primary key is duplicated is listed once per source line of that key.
    elapsed_s
        Wall time of the run.
    violation_limit
        Largest number of violating rows kept per check (``num_violated`` is always exact).

    Examples
    --------
    >>> report = run_site(catalog.site("basel"))  # doctest: +SKIP
    >>> report.failed, report.passed  # doctest: +SKIP
    (4, 141)
    >>> report.failing()[["check_id", "num_violated", "pct_violated"]]  # doctest: +SKIP
    """

    site_id: str
    summary: pd.DataFrame
    violations: pd.DataFrame
    elapsed_s: float = 0.0
    violation_limit: int = 10_000

    def _count(self, status: str) -> int:
        return int((self.summary["status"] == status).sum())

    @property
    def passed(self) -> int:
        """Number of checks with status PASS."""
        return self._count("PASS")

    @property
    def failed(self) -> int:
        """Number of checks with status FAIL."""
        return self._count("FAIL")

    @property
    def errors(self) -> int:
        """Number of checks that could not run (status ERROR)."""
        return self._count("ERROR")

    @property
    def not_applicable(self) -> int:
        """Number of checks without data to check (status NOT_APPLICABLE)."""
        return self._count("NOT_APPLICABLE")

    def to_frame(self) -> pd.DataFrame:
        """The per-check results as a new DataFrame.

        Returns
        -------
        pandas.DataFrame
            A copy of :attr:`summary`.
        """
        return self.summary.copy()

    def failing(self) -> pd.DataFrame:
        """Checks with status FAIL or ERROR.

        Returns
        -------
        pandas.DataFrame
            Rows of :attr:`summary`: errors first, then failures by largest violation share.
        """
        bad = self.summary[self.summary["status"].isin(["FAIL", "ERROR"])]
        return bad.sort_values(
            ["status", "pct_violated"], ascending=[False, False], na_position="first"
        ).reset_index(drop=True)

    def violations_of(self, check_id: str, *, prefix: bool = False) -> pd.DataFrame:
        """Violating rows of one check, or of every check whose id starts with a prefix.

        Parameters
        ----------
        check_id
            A check id, or with ``prefix`` the start of check ids (e.g.
            ``"date_out_of_range"``).
        prefix
            Match every check whose id starts with ``check_id``.

        Returns
        -------
        pandas.DataFrame
            Rows of :attr:`violations`, renumbered from 0.
        """
        ids = self.violations["check_id"]
        keep = ids.str.startswith(check_id) if prefix else ids == check_id
        return self.violations[keep].reset_index(drop=True)

    def __repr__(self) -> str:
        return (
            f"QualityReport(site={self.site_id!r}, checks={len(self.summary)}, "
            f"passed={self.passed}, failed={self.failed}, errors={self.errors}, "
            f"not_applicable={self.not_applicable}, elapsed_s={self.elapsed_s:.2f})"
        )

    def _repr_html_(self) -> str:
        head = (
            f"<p><b>Data quality at {html.escape(self.site_id)}</b>: "
            f"{len(self.summary)} checks, {self.passed} passed, {self.failed} failed, "
            f"{self.errors} errors, {self.not_applicable} not applicable "
            f"({self.elapsed_s:.2f} s)</p>"
        )
        bad = self.failing()
        if bad.empty:
            return head + "<p>All applicable checks pass.</p>"
        cols = [
            "check_id",
            "status",
            "num_violated",
            "num_denominator",
            "pct_violated",
            "threshold",
            "description",
            "error",
        ]
        table = bad[cols].to_html(index=False, na_rep="", float_format=lambda x: f"{x:.2f}")
        return head + table


def overview(reports: Mapping[str, QualityReport]) -> pd.DataFrame:
    """One row per site: counts of checks by status and of violating rows.

    Parameters
    ----------
    reports
        Site id -> report, e.g. from running :func:`~clinnova_explore.quality.run_site` over
        a catalog.

    Returns
    -------
    pandas.DataFrame
        Columns ``site, checks, passed, failed, errors, not_applicable, violated_rows,
        elapsed_s``.
    """
    rows = [
        {
            "site": site,
            "checks": len(r.summary),
            "passed": r.passed,
            "failed": r.failed,
            "errors": r.errors,
            "not_applicable": r.not_applicable,
            "violated_rows": int(r.summary["num_violated"].fillna(0).sum()),
            "elapsed_s": r.elapsed_s,
        }
        for site, r in reports.items()
    ]
    return pd.DataFrame(
        rows,
        columns=[
            "site",
            "checks",
            "passed",
            "failed",
            "errors",
            "not_applicable",
            "violated_rows",
            "elapsed_s",
        ],
    )
