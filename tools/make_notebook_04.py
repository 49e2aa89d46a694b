"""Generate notebooks/04_treatment_effects.ipynb (without outputs) with nbformat.

Run ``python tools/make_notebook_04.py``; ``tests/test_notebooks.py`` executes the notebook on a
small federation. The cells only call library functions.
"""

from __future__ import annotations

from notebook_cells import NOTEBOOKS, code, md, write

OUT = NOTEBOOKS / "04_treatment_effects.ipynb"

CELLS = [
    md(
        """
# 04 · Treatment effects: high-efficacy vs platform therapy in MS

Patients who start a high-efficacy disease-modifying therapy are sicker than those who start a
platform therapy: higher EDSS, more relapses before. Comparing their relapse rates directly
mixes the effect of the drug with the effect of being sicker (*confounding by indication*).
This notebook estimates the hazard ratio of a first relapse three ways:

- **naive**: a Cox model of relapse on treatment alone, stratified by site;
- **IPTW**: the same model weighted by stabilized inverse probability of treatment weights from
  a federated propensity model, with a robust standard error; it estimates a *marginal*
  (population-averaged) hazard ratio;
- **matching**: 1:1 nearest-neighbour matching on the logit propensity score within each site
  (caliper 0.2 SD), with a standard error clustered on the pair;

and, for comparison, a covariate-adjusted Cox model, whose hazard ratio is *conditional* on the
covariates. Hazard ratios are not collapsible: even without any confounding the marginal and the
conditional hazard ratio differ, the marginal one closer to 1.

It reads the catalog named by `$CLINNOVA_CATALOG`, or the project's `data_catalog.yaml`.
"""
    ),
    code(
        """
import holoviews as hv

from clinnova_explore import Catalog
from clinnova_explore.analysis.effects import compare_treatments
from clinnova_explore.analysis.survival.presets import comparison
from clinnova_explore.federated import Federation

hv.extension("bokeh")
catalog = Catalog.load()
spec = comparison("ms_high_efficacy_vs_platform")
spec
"""
    ),
    md(
        """
## The analysis table at each site

Each site derives one row per new user of an MS therapy: the arm (`treatment` 1 =
high-efficacy), follow-up to the first relapse or the end of observation, and the baseline
confounders. Only counts leave the site:
"""
    ),
    code(
        """
fed = Federation.from_cdm(catalog, spec)
fed.count(by="treatment", event="event")
""",
        "counts",
    ),
    md(
        """
## Federated or pooled

`compare_treatments(fed, ...)` runs everything federated: the propensity model is a logistic
regression fitted by federated Newton rounds (site as a fixed effect), each site scores,
weights and matches its own patients, and the Cox models run by Newton rounds stratified by
site. A site releases a model's statistics only when it holds at least ten rows per
coefficient (`max_params_per_obs`), so the small sites of a test federation refuse the
nine-coefficient propensity model. On synthetic data we may pool instead: `fed.pooled()` runs
the very same code on all rows as one site, and gives the same numbers as the federated run
wherever that one is allowed (the 5,000-person `make demo` federation; see
`tests/test_effects_federated.py`). Pass `fed` instead of `pooled` below to run federated.
"""
    ),
    code(
        """
pooled = fed.pooled()
pooled
"""
    ),
    md(
        """
## Inverse probability of treatment weighting

The weights are stabilized: the marginal share of each arm over the inverse of the propensity
score of the patient's arm.
"""
    ),
    code(
        """
confounders = ["baseline_edss", "prior_relapses", "age", "female"]
weighted = compare_treatments(
    pooled, treatment="treatment", duration="duration", event="event", covariates=confounders,
    method="iptw",
)
weighted.summary
""",
        "iptw",
    ),
    code(
        """
weighted.ps_model.summary
"""
    ),
    md(
        """
Empirical equipoise (Walker et al. 2013): the share of patients whose preference score lies
between 0.3 and 0.7. Below one half, treatment choice is largely determined by the patients'
characteristics, and the weights become large.
"""
    ),
    code(
        """
weighted.equipoise
"""
    ),
    md(
        """
## Covariate balance

Standardized mean differences between the arms before and after weighting; 0.1 is the usual
threshold for negligible imbalance.
"""
    ),
    code(
        """
weighted.balance
"""
    ),
    code(
        """
weighted.love_plot()
"""
    ),
    code(
        """
weighted.km.summary.groupby("group").tail(1)
"""
    ),
    md(
        """
## Propensity score matching

Patients are matched within their site; balance is computed from the matched pairs.
"""
    ),
    code(
        """
matched = compare_treatments(
    pooled, treatment="treatment", duration="duration", event="event", covariates=confounders,
    method="match",
)
matched.summary
""",
        "match",
    ),
    code(
        """
matched.love_plot(title="Balance after matching")
"""
    ),
    md(
        """
## The conditional hazard ratio

The covariate-adjusted Cox model estimates the hazard ratio conditional on the confounders. On
the synthetic federation the true conditional hazard ratio is in `truth.json`
(`effects.ms.hazard_ratio`, 0.449); IPTW and matching estimate the marginal one, which is
closer to 1.
"""
    ),
    code(
        """
conditional = compare_treatments(
    pooled, treatment="treatment", duration="duration", event="event", covariates=confounders,
    method="regression",
)
conditional.summary
""",
        "regression",
    ),
    code(
        """
conditional.adjusted.summary
"""
    ),
]


if __name__ == "__main__":
    write(CELLS, OUT)
