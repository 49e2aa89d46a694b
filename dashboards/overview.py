"""Overview dashboard: the federation at a glance. Served by `make demo`.

Thin by design: state lives in :class:`clinnova_explore.viz.overview_state.OverviewState`,
plots in :mod:`clinnova_explore.viz.overview`, Panel blocks in
:mod:`clinnova_explore.viz.panel_views`; this file only lays them out.
"""

from __future__ import annotations

import holoviews as hv
import panel as pn

from clinnova_explore.viz import overview as plots
from clinnova_explore.viz.overview_state import OverviewState
from clinnova_explore.viz.panel_views import bind_view, kpi_markdown, table

pn.extension("tabulator", sizing_mode="stretch_width")
hv.extension("bokeh")

state = OverviewState.from_path()

site_picker = pn.widgets.CheckButtonGroup.from_param(
    state.param.sites,
    name="Sites",
    button_type="primary",
    orientation="vertical",
    css_classes=["site-picker"],
)
disease_picker = pn.widgets.Select.from_param(state.param.disease, name="Disease")
bin_slider = pn.widgets.IntSlider.from_param(state.param.bin_years, name="Follow-up bin (y)")
drill_picker = pn.widgets.Select.from_param(state.param.drill_site, name="Quality drill-down")
passed_toggle = pn.widgets.Checkbox.from_param(state.param.include_passed)

pn.template.FastListTemplate(
    title="clinnova_explore · federation overview",
    sidebar=[
        site_picker,
        disease_picker,
        bin_slider,
        pn.layout.Divider(),
        drill_picker,
        passed_toggle,
    ],
    main=[
        pn.Column(
            bind_view(state, kpi_markdown, state.totals), bind_view(state, table, state.summary)
        ),
        pn.Row(
            pn.panel(bind_view(state, plots.disease_bars, state.disease_counts)),
            pn.panel(bind_view(state, plots.followup_bars, state.followup)),
        ),
        pn.Column(
            "### Mapping coverage",
            pn.panel(bind_view(state, plots.coverage_heatmap, state.coverage)),
        ),
        pn.Column(
            "### Data quality per site",
            bind_view(state, table, state.quality),
            "### Checks of the drill-down site",
            bind_view(state, lambda df: table(df, pagination="local", page_size=15), state.checks),
        ),
        pn.Column(
            "### Reconciliation (rows in = loaded + quarantined)",
            bind_view(state, table, state.reconciliation),
        ),
    ],
).servable()
