"""Run data-quality checks at one site, pushed down to the site's backend.

Counting is aggregate-only: row checks on the same table share one query, every other check
is one query (violations and denominator counted together). Violating rows are then fetched
in one query, at most ``violation_limit`` per check, joined to ``source_provenance`` so each
row names its native file and line. A check that fails on the backend is reported with status
ERROR and the backend's message; the other checks still run.

Counts and rows differ in grain. ``num_violated`` counts CDM rows, exactly. The violation rows
are distinct ``(check, record, provenance line)`` triples: provenance is keyed by the record's
primary key only, so when that key is duplicated (which ``is_primary_key`` reports) the CDM
rows sharing it cannot be told apart, and each distinct ``(record_id, person_id)`` is listed
once per provenance line of its key, instead of every duplicate joining every line. A key
duplicated ``n`` times for one person in the CDM and in the provenance thus gives ``n`` rows,
one per source line, not ``n * n``; without ``source_provenance`` it gives one row. A
provenance line listed twice is listed once.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import ibis
import ibis.expr.types as ir
import pandas as pd

from clinnova_explore.catalog import Site
from clinnova_explore.quality.check import Check, CheckContext
from clinnova_explore.quality.enrich import enriched
from clinnova_explore.quality.registry import CHECKS
from clinnova_explore.quality.report import RESULT_COLUMNS, VIOLATION_COLUMNS, QualityReport
from clinnova_explore.quality.sqlcache import fetch

__all__ = ["DEFAULT_VIOLATION_LIMIT", "run_checks", "run_site"]

DEFAULT_VIOLATION_LIMIT = 10_000
PROVENANCE = "source_provenance"


@dataclass
class _Outcome:
    violated: int | None = None
    denominator: int | None = None
    error: str | None = None
    not_applicable: str | None = None


def _message(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500]


def _count_one(ctx: CheckContext, check: Check) -> _Outcome:
    def build() -> ir.Table:
        v, d = check.violations(ctx), check.denominator(ctx)
        return d.aggregate(_d=d.count()).cross_join(v.aggregate(_v=v.count()))

    try:
        row = fetch(ctx, ("one", check), check.tables, build)[0]
        return _Outcome(violated=int(row["_v"] or 0), denominator=int(row["_d"] or 0))
    except Exception as exc:  # any backend or expression error becomes status ERROR
        return _Outcome(error=_message(exc))


def _count_batch(ctx: CheckContext, table: str, checks: list[Check]) -> dict[str, _Outcome]:
    """Count every row check of ``table`` in one aggregate query."""

    def build() -> ir.Table:
        t = enriched(ctx, table, {n for c in checks for n in c.enrich})
        aggs: dict[str, ir.Scalar] = {}
        for i, c in enumerate(checks):
            assert c.rule is not None
            scope, violated = c.rule(t, ctx)
            hit = violated if scope is None else scope & violated
            aggs[f"d{i}"] = t.count() if scope is None else scope.ifelse(1, 0).sum()
            aggs[f"v{i}"] = hit.ifelse(1, 0).sum()
        return t.aggregate(**aggs)

    tables = {name for c in checks for name in c.tables}
    row = fetch(ctx, ("batch", tuple(checks)), tables, build)[0]
    return {
        c.check_id: _Outcome(violated=int(row[f"v{i}"] or 0), denominator=int(row[f"d{i}"] or 0))
        for i, c in enumerate(checks)
    }


def _count_all(ctx: CheckContext, checks: Iterable[Check]) -> dict[str, _Outcome]:
    out: dict[str, _Outcome] = {}
    batches: dict[str, list[Check]] = defaultdict(list)
    for c in checks:
        missing = [t for t in c.tables if not ctx.has(t)]
        if missing:
            out[c.check_id] = _Outcome(
                not_applicable=f"table(s) {', '.join(missing)} not in the site database"
            )
        elif c.rule is not None:
            batches[c.cdm_table].append(c)
        else:
            out[c.check_id] = _count_one(ctx, c)
    for table, group in batches.items():
        try:
            out.update(_count_batch(ctx, table, group))
        except Exception:  # isolate the failing check(s): count each on its own
            out.update({c.check_id: _count_one(ctx, c) for c in group})
    return out


def _violation_rows(ctx: CheckContext, check: Check, limit: int) -> ir.Table:
    v = check.violations(ctx).limit(limit)
    return v.select(
        check_id=ibis.literal(check.check_id),
        cdm_table=ibis.literal(check.cdm_table),
        record_id=v.record_id.cast("int64"),
        person_id=v.person_id.cast("int64"),
    )


def _with_provenance(ctx: CheckContext, rows: ir.Table, provenance: bool) -> ir.Table:
    if not provenance:
        rows = rows.mutate(source_file=ibis.null("string"), source_line=ibis.null("int64"))
        return rows.distinct()
    p = ctx.table(PROVENANCE)
    p = p.select(
        _t=p.cdm_table,
        _r=p.record_id.cast("int64"),
        source_file=p.source_file.cast("string"),
        source_line=p.source_line.cast("int64"),
    )
    j = rows.left_join(p, [rows.cdm_table == p._t, rows.record_id == p._r])
    # one row per (check, record, provenance line): see the module docstring
    return j.select(
        "check_id", "cdm_table", "record_id", "person_id", "source_file", "source_line"
    ).distinct()


def _fetch_rows(
    ctx: CheckContext, checks: list[Check], limit: int, provenance: bool
) -> pd.DataFrame:
    def build() -> ir.Table:
        parts = [_violation_rows(ctx, c, limit) for c in checks]
        union = parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=False)
        return _with_provenance(ctx, union, provenance)

    tables = {name for c in checks for name in c.tables}
    if provenance:
        tables.add(PROVENANCE)
    rows = fetch(ctx, ("violations", tuple(checks), limit, provenance), tables, build)
    return pd.DataFrame(rows, columns=list(VIOLATION_COLUMNS[1:]))


def _fetch_violations(ctx: CheckContext, checks: list[Check], limit: int) -> pd.DataFrame:
    """Violating rows of ``checks`` in one query; on failure check by check, and without
    provenance when ``source_provenance`` itself cannot be read."""
    provenance = ctx.has(PROVENANCE)
    if not checks:
        return pd.DataFrame(columns=list(VIOLATION_COLUMNS[1:]))
    try:
        return _fetch_rows(ctx, checks, limit, provenance)
    except Exception:  # one odd check must not hide the others' rows
        pass
    frames = [pd.DataFrame(columns=list(VIOLATION_COLUMNS[1:]))]
    for c in checks:
        for with_prov in dict.fromkeys((provenance, False)):
            try:
                frames.append(_fetch_rows(ctx, [c], limit, with_prov))
                break
            except Exception:  # its count is reported; only the row sample is missing
                continue
    return pd.concat(frames, ignore_index=True)


def _status(check: Check, o: _Outcome) -> str:
    if o.error is not None:
        return "ERROR"
    if o.not_applicable is not None or not o.denominator:
        return "NOT_APPLICABLE"
    return "FAIL" if 100.0 * (o.violated or 0) / o.denominator > check.threshold else "PASS"


def _summary(site_id: str, checks: list[Check], outcomes: dict[str, _Outcome]) -> pd.DataFrame:
    rows = []
    for c in checks:
        o = outcomes[c.check_id]
        pct = 100.0 * (o.violated or 0) / o.denominator if o.denominator else float("nan")
        rows.append(
            {
                "site": site_id,
                "check_id": c.check_id,
                "category": c.category,
                "subcategory": c.subcategory,
                "level": c.level,
                "cdm_table": c.cdm_table,
                "cdm_field": c.cdm_field,
                "description": c.description,
                "threshold": float(c.threshold),
                "num_violated": o.violated,
                "num_denominator": o.denominator,
                "pct_violated": pct,
                "status": _status(c, o),
                "error": o.error or o.not_applicable,
            }
        )
    df = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    return df.astype(
        {
            "num_violated": "Int64",
            "num_denominator": "Int64",
            "pct_violated": "float64",
            "threshold": "float64",
        }
    )


def run_checks(
    con: ibis.BaseBackend,
    site_id: str,
    checks: Iterable[Check] | None = None,
    *,
    violation_limit: int = DEFAULT_VIOLATION_LIMIT,
    today: date | None = None,
) -> QualityReport:
    """Run data-quality checks on one site's CDM.

    Parameters
    ----------
    con
        The site's ibis backend (DuckDB, PostgreSQL, ...); only read.
    site_id
        Written into every result row.
    checks
        Checks to run; default all of :data:`~clinnova_explore.quality.CHECKS`.
    violation_limit
        Largest number of violating CDM rows fetched per check (each listed once per
        distinct provenance line of its record).
    today
        "Now"; default the current date. Future-date and year-of-birth checks compare with
        the data cut, the earlier of this and ``cdm_source.source_release_date``.

    Returns
    -------
    QualityReport
        Per-check results and a sample of violating rows.

    Examples
    --------
    >>> con = ibis.duckdb.connect("demo/basel.duckdb", read_only=True)  # doctest: +SKIP
    >>> report = run_checks(con, "basel")  # doctest: +SKIP
    >>> report.summary.query("status == 'FAIL'")  # doctest: +SKIP
    """
    start = time.perf_counter()
    selected = list(CHECKS if checks is None else checks)
    ctx = CheckContext(con, today=today)
    outcomes = _count_all(ctx, selected)
    hits = [c for c in selected if (outcomes[c.check_id].violated or 0) > 0]
    rows = _fetch_violations(ctx, hits, violation_limit)
    rows.insert(0, "site", site_id)
    rows = rows[list(VIOLATION_COLUMNS)].astype(
        {
            "record_id": "Int64",
            "person_id": "Int64",
            "source_line": "Int64",
            "source_file": "object",
        }
    )
    return QualityReport(
        site_id=site_id,
        summary=_summary(site_id, selected, outcomes),
        violations=rows,
        elapsed_s=time.perf_counter() - start,
        violation_limit=violation_limit,
    )


def run_site(site: Site, checks: Iterable[Check] | None = None) -> QualityReport:
    """Run the checks at a catalog site (through its read-only connection).

    Parameters
    ----------
    site
        A :class:`~clinnova_explore.catalog.Site` of the data catalog.
    checks
        Checks to run; default all.

    Returns
    -------
    QualityReport
        As :func:`run_checks` returns it.
    """
    return run_checks(site.connect(), site.id, checks)
