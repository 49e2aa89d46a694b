"""Cohort dashboard: build or edit a cohort, see counts per site and attrition update live,
compare two cohorts in a Table 1, show incidence and treatment pathways.

Thin by design: state lives in :class:`clinnova_explore.viz.cohort_state.CohortState`, Panel
blocks in :mod:`clinnova_explore.viz.cohort_views`; this file only lays them out.
"""

from __future__ import annotations

import holoviews as hv
import panel as pn

from clinnova_explore.viz import cohort_views as views
from clinnova_explore.viz.cohort_state import CohortState

pn.extension("tabulator", sizing_mode="stretch_width")
hv.extension("bokeh")

state = CohortState.from_path()

pn.template.FastListTemplate(
    title="clinnova_explore · cohorts",
    sidebar=[views.scope_form(state), pn.layout.Divider(), views.criteria_form(state)],
    sidebar_width=360,
    main=[views.live_counts(state), views.result_tabs(state)],
).servable()
