"""Generate notebooks/03_survival.ipynb (without outputs) with nbformat.

Run ``python tools/make_notebook_03.py``; ``tests/test_notebooks.py`` executes every notebook
on a small federation (and checks that no cell holds logic of its own). Cells carry tags a test
can look them up by.
"""

from __future__ import annotations

from notebook_cells import NOTEBOOKS, code, md, write

OUT = NOTEBOOKS / "03_survival.ipynb"

CELLS = [
    md(
        """
# 03 · Survival: time to first relapse on high-efficacy vs platform MS therapy

Does starting multiple sclerosis treatment with a high-efficacy disease-modifying therapy (DMT)
delay the first relapse, compared with starting on a platform therapy? This notebook builds the
time-to-event table of an active-comparator, new-user design from the OMOP CDM of every site,
then estimates Kaplan-Meier curves, a stratified log-rank test, Cox models (naive and adjusted
for the confounders), restricted mean survival times and the cumulative incidence of relapse
with death as a competing event. Finally it fits the same Cox model *federated* (only score
vectors and information matrices leave the sites) and shows that it equals the pooled fit.

All logic lives in the `clinnova_explore` library; the cells only call it. The notebook reads
the catalog named by `$CLINNOVA_CATALOG`, or the project's `data_catalog.yaml`.
"""
    ),
    code(
        """
import dataclasses

import pandas as pd
import panel as pn
import yaml

from clinnova_explore import Catalog
from clinnova_explore.analysis.pooled import pooled_site
from clinnova_explore.analysis.survival import aalen_johansen, cox, kaplan_meier, logrank, rmst
from clinnova_explore.analysis.survival.presets import comparison, comparison_names
from clinnova_explore.analysis.survival.tte import time_to_event, tte_attrition
from clinnova_explore.federated import Federation
from clinnova_explore.viz.survival_plots import forest_plot

pn.extension()
catalog = Catalog.load()
comparison_names()
"""
    ),
    md(
        """
## The comparison

A shipped preset says everything the time-to-event table needs: the two arms (persons whose
first-ever DMT is high-efficacy, or platform; each person is in exactly one arm), the outcome
(the first MS relapse after the index date), follow-up (from the day after the index date to the
end of observation: intention to treat; death ends it) and the baseline covariates measured
around the index date: the latest EDSS in the 90 days before index, and the number of relapses
in the two years before. Sicker patients get stronger drugs, so both confound the comparison.
"""
    ),
    code(
        """
spec = comparison("ms_high_efficacy_vs_platform")
print(yaml.safe_dump(spec.to_dict(), sort_keys=False))
"""
    ),
    md(
        """
## Attrition per site

Each site builds its own rows; the attrition shows how many persons each step keeps.
"""
    ),
    code(
        """
attrition = pd.concat({site.id: tte_attrition(site, spec) for site in catalog}, names=["site"])
attrition.reset_index(level=0).pivot_table(
    index="step", columns="site", values="persons", aggfunc="first", sort=False
)
""",
        "attrition",
    ),
    md(
        """
## The pooled time-to-event table

For the analyses below, every site's rows are read through a pooled view of the site databases
(`pooled_site`); the `site` column keeps each person's own hospital. The arms differ at
baseline: the high-efficacy arm (`treatment` 1) has a higher EDSS and more prior relapses.
"""
    ),
    code(
        """
with pooled_site(catalog) as pooled:
    data = time_to_event(pooled, spec).to_pandas()
data.head()
"""
    ),
    code(
        """
data.groupby("treatment")[["baseline_edss", "prior_relapses", "age", "female", "event"]].mean()
""",
        "baseline",
    ),
    md(
        """
## Kaplan-Meier curves and the log-rank test

The curves ignore the confounding: they compare the arms as treated in practice.
"""
    ),
    code(
        """
km = kaplan_meier(data, duration="duration", event="event", group="treatment")
km.median
"""
    ),
    code(
        """
km.plot(title="First relapse after the first DMT", labels={1: "high-efficacy", 0: "platform"})
"""
    ),
    code(
        """
logrank(data, duration="duration", event="event", group="treatment", strata="site")
"""
    ),
    md(
        """
## Cox models, stratified by site

Sites differ in their baseline relapse hazard, so the models are stratified by site. The naive
model has treatment alone; the adjusted one adds the confounders. In the synthetic federation
the true hazard ratio of high-efficacy vs platform therapy is exp(-0.8) = 0.449
(`truth.json`); the naive estimate is pulled towards 1 by confounding by indication.
"""
    ),
    code(
        """
covariates = ["treatment", "baseline_edss", "prior_relapses", "age", "female"]
naive = cox(data, duration="duration", event="event", covariates=["treatment"], strata="site")
adjusted = cox(data, duration="duration", event="event", covariates=covariates, strata="site")
adjusted
""",
        "cox",
    ),
    code(
        """
forest_plot({"naive": naive, "adjusted": adjusted}, covariate="treatment")
"""
    ),
    md(
        """
Proportional hazards: Schoenfeld-residual tests of the adjusted model (rank time transform).
"""
    ),
    code(
        """
adjusted.check_ph().summary
"""
    ),
    md(
        """
## Restricted mean survival time

The mean relapse-free time over the first two years, per arm (unadjusted).
"""
    ),
    code(
        """
rmst(data, duration="duration", event="event", tau=730, group="treatment").summary
"""
    ),
    md(
        """
## Death as a competing event

With `competing="death"` a death before any relapse is event 2 instead of a censoring, and the
Aalen-Johansen estimator gives the cumulative incidence of relapse in the presence of death.
"""
    ),
    code(
        """
with_death = dataclasses.replace(spec, competing="death")
with pooled_site(catalog) as pooled:
    competing = time_to_event(pooled, with_death).to_pandas()
competing.event.value_counts().sort_index()
"""
    ),
    code(
        """
cif = aalen_johansen(
    competing, duration="duration", event="event", event_of_interest=1, group="treatment"
)
cif.at([365, 730, 1095])
"""
    ),
    md(
        """
## Federated equals pooled

`Federation.from_cdm` keeps each site's time-to-event table at the site. The federated Cox fit
runs Newton rounds: the coordinator sends the coefficients, each site returns its per-stratum
log-likelihood, score and information, and the coordinator takes the step. Stratified by site,
it is exactly the pooled model. A site whose policy refuses the model (e.g. too few rows per
parameter: `max_params_per_obs`) is left out and named in the provenance's `refused`; the
pooled fit, on every site's rows, then differs.
"""
    ),
    code(
        """
federation = Federation.from_cdm(catalog, spec)
federated = federation.cox(duration="duration", event="event", covariates=covariates)
pooled_fit = federation.pooled().cox(duration="duration", event="event", covariates=covariates)
pd.DataFrame({"federated": federated.summary["coef"], "pooled": pooled_fit.summary["coef"]})
""",
        "federated",
    ),
    code(
        """
federated.provenance
"""
    ),
    md(
        """
The largest difference between the federated and the pooled coefficients (about 1e-15 on the
demo federation, where every site answers):
"""
    ),
    code(
        """
float((federated.summary["coef"] - pooled_fit.summary["coef"]).abs().max())
""",
        "difference",
    ),
]


if __name__ == "__main__":
    write(CELLS, OUT)
