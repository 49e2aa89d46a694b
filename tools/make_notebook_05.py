"""Generate notebooks/05_federated_analysis.ipynb (without outputs) with nbformat.

Run ``python tools/make_notebook_05.py``; ``tests/test_notebooks.py`` executes the notebook on a
small federation. The cells only call library functions.
"""

from __future__ import annotations

from notebook_cells import NOTEBOOKS, code, md, write

OUT = NOTEBOOKS / "05_federated_analysis.ipynb"

CELLS = [
    md(
        """
# 05 · Federated analysis: what leaves each hospital, and proof of it

Patient rows never leave a hospital. Each site runs here as its own process, with its own
database connection, behind a local connection that only accepts the coordinator's key; the
coordinator (this notebook) sees nothing but the aggregates each site checks and releases.

This notebook runs the same survival and characterization analyses **federated** (site
processes) and **pooled** (every row in one place, possible only because the data are
synthetic), previews what each site *would* release before anything is released, and reads a
site's audit log, the hash-chained record of everything that left it.

It reads the catalog named by `$CLINNOVA_CATALOG`, or the project's `data_catalog.yaml`.
"""
    ),
    code(
        """
import holoviews as hv

from clinnova_explore import Catalog, characterize
from clinnova_explore.analysis import plan
from clinnova_explore.analysis.survival.presets import comparison
from clinnova_explore.cohort import builtin_definition
from clinnova_explore.federated import Federation
from clinnova_explore.federated.audit import AuditLog, entries_frame
from clinnova_explore.federated.process_runner import ProcessRunner
from clinnova_explore.federated.status import status_frame

hv.extension("bokeh")
catalog = Catalog.load()
spec = comparison("ms_high_efficacy_vs_platform")
"""
    ),
    md(
        """
## The sites

`ProcessRunner.start` starts one process per site. Each opens only its own catalog entry and
database, applies its **own** disclosure policy (whatever the coordinator believes it is) and
writes its own audit log. A site answers a status request with its engine, versions, policy
version and the state of its audit chain:
"""
    ),
    code(
        """
runner = ProcessRunner.start(catalog)
fed = Federation.from_cdm(catalog, spec, runner=runner)
status_frame(fed.status())
""",
        "status",
    ),
    md(
        """
Each site's disclosure policy, from the catalog: the smallest count a site releases, the
smallest cohort it analyses, the Kaplan-Meier time bins, the most model parameters per person,
the differencing guard, and the analyses it allows.
"""
    ),
    code(
        """
catalog.site("basel").policy
"""
    ),
    md(
        """
## Preview: what would leave

Before running, ask every site what it would release for an analysis. The sites run the local
step, apply their policy and answer with the shapes of the tables, the names of the values, the
suppressed cells and any refusal, never a number. Nothing is released; each site records the
preview in its audit log.
"""
    ),
    code(
        """
km_preview = fed.preview("kaplan_meier", duration="duration", event="event", group="treatment")
km_preview
""",
        "preview",
    ),
    code(
        """
cox_preview = fed.preview("cox", duration="duration", event="event", covariates=["treatment"])
cox_preview.summary
"""
    ),
    md(
        """
## Survival, federated and pooled

A site releases a Kaplan-Meier curve as an event table: per time, arm and site, the persons at
risk, events and censorings, with times binned and small cells merged into later times. The
site-stratified Cox model runs Newton rounds in which each site returns only its
log-likelihood, score and information.

For the check, the same analyses run on the pooled rows: `Federation.from_cdm` without a runner
keeps the sites in this process, and `.pooled()` puts every row in one site with the strictest
policy.
"""
    ),
    code(
        """
km = fed.kaplan_meier(duration="duration", event="event", group="treatment")
in_process = Federation.from_cdm(catalog, spec)
pooled = in_process.pooled()
pooled_km = pooled.kaplan_meier(duration="duration", event="event", group="treatment")
km.median.join(pooled_km.median, rsuffix=" (pooled)")
""",
        "km",
    ),
    md(
        """
The medians differ: a site releases no count of events or censorings between 1 and its
minimum cell count, so runs of days are merged and their events moved to the end of the run.
The curves keep every event but step later and coarser; pooled mode applies the same rule to
one big site, which merges far less. A site can make the trade-off explicit with
`km_time_bin_days` (e.g. 30: months) and `km_min_events_per_bin` in its policy.
"""
    ),
    code(
        """
km.plot()
"""
    ),
    code(
        """
federated_cox = fed.cox(duration="duration", event="event", covariates=["treatment"])
pooled_cox = pooled.cox(duration="duration", event="event", covariates=["treatment"])
federated_cox.summary[["coef", "se", "hr", "p"]].join(
    pooled_cox.summary[["coef", "se"]], rsuffix=" (pooled)"
)
""",
        "cox",
    ),
    md(
        """
Stratified by site, the federated model *is* the pooled model: equal coefficients unless a site
refused (then it is left out and named). Every result says how it was made: which sites
answered, which refused and why, what was suppressed, and whether the result is partial.
"""
    ),
    code(
        """
federated_cox.provenance.site_status
"""
    ),
    md(
        """
## Table 1, federated and pooled

The CDM analyses (`count_cohort`, `characterize`, `incidence`, `pathways`) take the same
`runner`. `plan(...)` captures the analysis a call would run, so it can be previewed first.
"""
    ),
    code(
        """
target = builtin_definition("ms_high_efficacy_start")
comparator = builtin_definition("ms_platform_start")
plan(characterize, target, catalog, comparator=comparator).preview(runner).summary
"""
    ),
    code(
        """
table1 = characterize(target, catalog, comparator=comparator, runner=runner)
pooled_table1 = characterize(target, catalog, comparator=comparator, mode="pooled")
table1.summary.head(8)
""",
        "table1",
    ),
    md(
        """
## The audit log

Every request a site answered is in its log: when, who asked, which analysis, a hash of the
parameters, the policy version, and what was released (the payload's hash, table shapes and
value names) or the refusal. Each entry holds the hash of the one before it, so an edited,
deleted, inserted or reordered entry breaks the chain at that entry.
`clinnova-explore audit verify basel` and `clinnova-explore audit show basel` read the same log.
"""
    ),
    code(
        """
log = AuditLog(catalog.site("basel").audit_path(), site="basel")
log.verify()
""",
        "verify",
    ),
    code(
        """
entries_frame(log.tail(8))
""",
        "audit",
    ),
    code(
        """
in_process.close()
fed.close()
runner.close()
"""
    ),
]


if __name__ == "__main__":
    write(CELLS, OUT)
