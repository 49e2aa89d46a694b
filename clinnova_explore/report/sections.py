"""The sections of a survival report, each rendered from result objects.

Every function here formats numbers that a library function computed (cohort counts, Table 1,
Kaplan-Meier, Cox, balance); none computes a statistic of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from clinnova_explore.report.html import Section, esc, key_value_table, notice, table_html

if TYPE_CHECKING:
    from bokeh.model import Model

    from clinnova_explore.analysis.counts import CohortCountResult
    from clinnova_explore.analysis.result import Provenance
    from clinnova_explore.analysis.survival.cox import CoxResult
    from clinnova_explore.analysis.survival.km import KaplanMeierResult
    from clinnova_explore.analysis.table1 import Table1Result

__all__ = [
    "attrition_section",
    "balance_section",
    "cox_section",
    "cox_table",
    "failed_section",
    "km_section",
    "parameters_section",
    "provenance_section",
    "table1_section",
]

OVERALL = "overall"


def failed_section(id: str, title: str, error: BaseException) -> Section:
    """A section that says what could not be computed and why."""
    return Section(id, title, notice(f"Not available: {error}", kind="error"))


def parameters_section(rows: Sequence[tuple[str, str]]) -> Section:
    """The run parameters: config file, catalog, comparison, adjustment, mode, times..."""
    return Section("parameters", "Run parameters", key_value_table(rows))


def _counts_wide(attrition: pd.DataFrame, key: str) -> pd.DataFrame:
    """``key`` x site table of persons (rows in order of appearance, counts kept integer);
    suppressed counts stay ``<NA>`` (shown as ``—``)."""
    wide = attrition.pivot(index=key, columns="site", values="persons")
    sites = [c for c in dict.fromkeys(attrition["site"]) if c != OVERALL]
    order = [*sites, OVERALL] if OVERALL in wide.columns else sites
    wide = wide.reindex(index=list(dict.fromkeys(attrition[key])), columns=order)
    wide.columns.name = None
    return wide.reset_index()


def attrition_section(
    cohorts: Mapping[str, CohortCountResult],
    time_to_event: pd.DataFrame | None,
    *,
    tte_error: BaseException | None = None,
) -> Section:
    """Cohort attrition per cohort definition, then the time-to-event attrition.

    Parameters
    ----------
    cohorts
        ``{label: count_cohort(...) result}`` (e.g. target and comparator).
    time_to_event
        ``step, <site>..., overall`` persons left after each step of the time-to-event
        extraction (suppressed cells ``<NA>``), or None.
    tte_error
        Why the time-to-event attrition could not be computed, if it could not.
    """
    parts = ["<h3>Cohort definitions</h3>"]
    for label, result in cohorts.items():
        frame = result.attrition.copy()
        frame["rule"] = [
            f"{int(step)}. {rule}" for step, rule in zip(frame["step"], frame["rule"], strict=True)
        ]
        wide = _counts_wide(frame, "rule")
        parts.append(table_html(wide, index=False, caption=f"{label}: persons after each rule"))
        summary = result.summary
        if "refused" in summary:
            for r in summary.dropna(subset=["refused"]).itertuples(index=False):
                parts.append(notice(f"{label}: site {r.site} refused ({r.refused})"))
    parts.append("<h3>Time-to-event population</h3>")
    if time_to_event is not None:
        parts.append(table_html(time_to_event, index=False, caption="persons after each step"))
    elif tte_error is not None:
        parts.append(notice(f"Not available: {tte_error}", kind="error"))
    parts.append(
        "<p>— marks a count a site's disclosure policy suppressed (and an overall count with "
        "a suppressed part).</p>"
    )
    return Section("attrition", "Attrition", "".join(parts))


def table1_section(result: Table1Result) -> Section:
    """Table 1 of target vs comparator with SMDs, and its notes."""
    table = result.to_great_table(per_site=False).as_raw_html()
    notes = "".join(f"<li>{esc(n)}</li>" for n in result.notes)
    return Section(
        "table1",
        "Baseline characteristics (Table 1)",
        f"<div class='table1'>{table}</div>" + (f"<ul>{notes}</ul>" if notes else ""),
    )


def _fmt_days(value: Any) -> str:
    return "not reached" if value == float("inf") else f"{float(value):,.0f}"


def km_section(
    curves: Mapping[str, tuple[KaplanMeierResult, Model]],
    times: Sequence[int],
    labels: Mapping[Any, str],
    *,
    logrank_p: float | None = None,
) -> Section:
    """Kaplan-Meier curves with risk tables, median survival and survival at ``times``.

    Parameters
    ----------
    curves
        ``{heading: (result, bokeh figure)}``, e.g. unadjusted and IPTW-weighted.
    times
        Days at which survival is tabulated.
    labels
        Display name per group value.
    logrank_p
        The unadjusted log-rank p-value, if computed.
    """
    body = []
    if logrank_p is not None:
        body.append(f"<p>Log-rank test (unadjusted): p = {logrank_p:.3g}</p>")
    after = []
    for heading, (result, _) in curves.items():
        at = result.at(list(times))
        at["group"] = [labels.get(g, str(g)) for g in at["group"]]
        at["survival (95% CI)"] = [
            f"{s:.3f} ({lo:.3f}–{hi:.3f})"
            for s, lo, hi in zip(at["survival"], at["lower"], at["upper"], strict=True)
        ]
        wide = at.pivot(index="group", columns="time", values="survival (95% CI)")
        wide.columns = [f"day {t:g}" for t in wide.columns]
        median = result.median.rename(index=lambda g: labels.get(g, str(g)))
        median = median.map(_fmt_days)
        median.columns = ["median (days)", "lower", "upper"]
        after.append(f"<h3>{esc(heading)}</h3>")
        after.append(table_html(wide.join(median), caption="survival at chosen days; median"))
    return Section(
        "km",
        "Kaplan-Meier",
        "".join(body),
        plots=tuple(fig for _, fig in curves.values()),
        after="".join(after),
    )


def cox_table(fits: Mapping[str, CoxResult]) -> pd.DataFrame:
    """One row per covariate, ``HR (95% CI)`` and ``p`` per model."""
    columns: dict[tuple[str, str], pd.Series] = {}
    for name, fit in fits.items():
        s = fit.summary
        text = [
            f"{h:.3f} ({lo:.3f}–{hi:.3f})"
            for h, lo, hi in zip(s["hr"], s["hr_lower"], s["hr_upper"], strict=True)
        ]
        columns[(name, "HR (95% CI)")] = pd.Series(text, index=s.index, dtype=object)
        columns[(name, "p")] = s["p"].astype("float64")
    out = pd.DataFrame(columns)
    out.index.name = "covariate"
    return out


def cox_section(
    fits: Mapping[str, CoxResult], forest: Model | None, notes: Sequence[str]
) -> Section:
    """Cox hazard ratios of each model side by side, the forest plot and model notes."""

    def strata(fit: CoxResult) -> str:
        if not fit.strata:
            return ""
        names = [fit.strata] if isinstance(fit.strata, str) else list(fit.strata)
        return ", strata " + esc(", ".join(names))

    facts = "".join(
        f"<li>{esc(name)}: n = {fit.n:,}, events = {fit.events:,}, {esc(fit.ties)} ties"
        f"{strata(fit)}</li>"
        for name, fit in fits.items()
    )
    extra = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return Section(
        "cox",
        "Cox proportional hazards",
        table_html(cox_table(fits), digits=3) + f"<ul>{facts}{extra}</ul>",
        plots=(forest,) if forest is not None else (),
    )


def balance_section(
    balance: pd.DataFrame, love_plot: Model | None, facts: Sequence[tuple[str, str]]
) -> Section:
    """Covariate balance before and after adjustment (SMDs) and the love plot."""
    return Section(
        "balance",
        "Covariate balance",
        table_html(balance, digits=3) + (key_value_table(facts) if facts else ""),
        plots=(love_plot,) if love_plot is not None else (),
    )


def provenance_section(
    rows: Sequence[tuple[str, str]], provenances: Mapping[str, Provenance]
) -> Section:
    """Where the numbers come from: catalog, definitions, version, sites, suppressions."""
    suppressed = [f"{name}: {cell}" for name, p in provenances.items() for cell in p.suppressed]
    refused = [
        f"{name}: {site} ({rule})"
        for name, p in provenances.items()
        for site, rule in p.refused.items()
    ]
    per_analysis = pd.DataFrame(
        [
            {
                "analysis": name,
                "mode": p.mode,
                "sites": ", ".join(p.sites),
                "suppressed cells": len(p.suppressed),
                "refused": ", ".join(f"{s} ({r})" for s, r in p.refused.items()) or "none",
                "created": p.created,
            }
            for name, p in provenances.items()
        ]
    )
    body = key_value_table(rows)
    if len(per_analysis):
        body += "<h3>Analyses</h3>" + table_html(per_analysis, index=False)
    body += "<h3>Suppressed cells</h3>"
    body += (
        f"<details><summary>{len(suppressed)} cells or notes (small counts hidden or merged)"
        "</summary><ul>" + "".join(f"<li>{esc(s)}</li>" for s in suppressed) + "</ul></details>"
        if suppressed
        else "<p>none</p>"
    )
    body += "<h3>Refusals</h3>"
    body += (
        "<ul>" + "".join(f"<li>{esc(s)}</li>" for s in refused) + "</ul>"
        if refused
        else "<p>none</p>"
    )
    return Section("provenance", "Provenance", body)
