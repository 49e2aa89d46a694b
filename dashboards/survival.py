"""Survival dashboard: compare two treatments on time to an outcome with Kaplan-Meier curves,
the log-rank test, naive and propensity-adjusted hazard ratios, and covariate balance, federated
or pooled.

Thin by design: state lives in :class:`clinnova_explore.viz.survival_state.SurvivalState`, Panel
blocks in :mod:`clinnova_explore.viz.survival_views`; this file only lays them out.
"""

from __future__ import annotations

import holoviews as hv
import panel as pn

from clinnova_explore.viz import survival_views as views
from clinnova_explore.viz.survival_state import SurvivalState

pn.extension("tabulator", sizing_mode="stretch_width")
hv.extension("bokeh")

state = SurvivalState.from_path()

pn.template.FastListTemplate(
    title="clinnova_explore · survival",
    sidebar=[views.controls(state)],
    sidebar_width=340,
    main=[views.title_markdown(state), views.result_tabs(state)],
).servable()
