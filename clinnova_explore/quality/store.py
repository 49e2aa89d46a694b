"""Keep data-quality results in the site database: ``dq_results`` and ``dq_violations``.

Both tables hold a ``site`` column; storing a report replaces that site's rows and keeps the
others, so one database may also collect the results of several sites.
"""

from __future__ import annotations

import ibis
import pandas as pd

from clinnova_explore.quality.report import RESULT_COLUMNS, VIOLATION_COLUMNS, QualityReport

__all__ = ["RESULTS_TABLE", "VIOLATIONS_TABLE", "read_results", "store_results"]

RESULTS_TABLE = "dq_results"
VIOLATIONS_TABLE = "dq_violations"

_RESULTS_SCHEMA = ibis.schema(
    {
        "site": "string",
        "check_id": "string",
        "category": "string",
        "subcategory": "string",
        "level": "string",
        "cdm_table": "string",
        "cdm_field": "string",
        "description": "string",
        "threshold": "float64",
        "num_violated": "int64",
        "num_denominator": "int64",
        "pct_violated": "float64",
        "status": "string",
        "error": "string",
    }
)
_VIOLATIONS_SCHEMA = ibis.schema(
    {
        "site": "string",
        "check_id": "string",
        "cdm_table": "string",
        "record_id": "int64",
        "person_id": "int64",
        "source_file": "string",
        "source_line": "int64",
    }
)
assert tuple(_RESULTS_SCHEMA.names) == RESULT_COLUMNS
assert tuple(_VIOLATIONS_SCHEMA.names) == VIOLATION_COLUMNS


def _replace_site(
    con: ibis.BaseBackend, name: str, schema: ibis.Schema, site: str, new: pd.DataFrame
) -> None:
    frame = new[list(schema.names)]
    if name in con.list_tables():
        old = con.table(name)
        others = old.filter(old.site != site).to_pandas()
        if not others.empty:
            frame = pd.concat([others[list(schema.names)], frame], ignore_index=True)
    frame = frame.astype(object).where(frame.notna(), None)
    con.create_table(name, ibis.memtable(frame, schema=schema), overwrite=True)


def store_results(con_rw: ibis.BaseBackend, report: QualityReport) -> None:
    """Write a report into ``dq_results`` and ``dq_violations`` of a database.

    Parameters
    ----------
    con_rw
        A writable ibis backend, usually the site's own database.
    report
        The report to store; earlier results of the same site are replaced.
    """
    _replace_site(con_rw, RESULTS_TABLE, _RESULTS_SCHEMA, report.site_id, report.summary)
    _replace_site(con_rw, VIOLATIONS_TABLE, _VIOLATIONS_SCHEMA, report.site_id, report.violations)


def read_results(con: ibis.BaseBackend, site: str | None = None) -> QualityReport:
    """Read stored results back as a :class:`QualityReport`.

    Parameters
    ----------
    con
        The database :func:`store_results` wrote to.
    site
        Which site's results; may be omitted when the database holds one site only.

    Returns
    -------
    QualityReport
        The stored summary and violations (``elapsed_s`` is not stored and reads 0).

    Raises
    ------
    LookupError
        When no results are stored, or ``site`` is needed or unknown (the message lists
        the sites present).
    """
    if RESULTS_TABLE not in con.list_tables():
        raise LookupError(
            f"no {RESULTS_TABLE} table in this database; run `clinnova-explore quality` "
            "(or quality.store_results) first"
        )
    res = con.table(RESULTS_TABLE)
    sites = sorted(res.select("site").distinct().to_pandas()["site"].tolist())
    if site is None:
        if len(sites) != 1:
            raise LookupError(f"{RESULTS_TABLE} holds sites {sites}; pass site=...")
        site = sites[0]
    if site not in sites:
        raise LookupError(f"no stored quality results for site {site!r}; present: {sites}")
    summary = res.filter(res.site == site).to_pandas()
    if VIOLATIONS_TABLE in con.list_tables():
        v = con.table(VIOLATIONS_TABLE)
        violations = v.filter(v.site == site).to_pandas()
    else:
        violations = pd.DataFrame(columns=list(VIOLATION_COLUMNS))
    summary = summary[list(RESULT_COLUMNS)].astype(
        {"num_violated": "Int64", "num_denominator": "Int64"}
    )
    violations = violations[list(VIOLATION_COLUMNS)].astype(
        {"record_id": "Int64", "person_id": "Int64", "source_line": "Int64"}
    )
    return QualityReport(site_id=site, summary=summary, violations=violations)
