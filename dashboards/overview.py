"""Overview dashboard: the federation at a glance. Served by `make demo`.

Thin by design: state lives in :class:`clinnova_explore.viz.overview_state.OverviewState`,
plots in :mod:`clinnova_explore.viz.overview`; this file only lays them out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn
from bokeh.models.widgets.tables import NumberFormatter

from clinnova_explore.viz import overview as plots
from clinnova_explore.viz.overview_state import OverviewState

pn.extension("tabulator", sizing_mode="stretch_width")
hv.extension("bokeh")

state = OverviewState.from_path()

site_picker = pn.widgets.CheckButtonGroup.from_param(
    state.param.sites, name="Sites", button_type="primary", orientation="vertical",
    css_classes=["site-picker"],
)
disease_picker = pn.widgets.Select.from_param(state.param.disease, name="Disease")
bin_slider = pn.widgets.FloatSlider.from_param(state.param.bin_years, name="Follow-up bin (y)")
drill_picker = pn.widgets.Select.from_param(state.param.drill_site, name="Quality drill-down")
passed_toggle = pn.widgets.Checkbox.from_param(state.param.include_passed)


def _kpis(totals: dict[str, float]) -> pn.pane.Markdown:
    return pn.pane.Markdown(
        f"**Sites:** {totals['sites']:.0f} &nbsp; "
        f"**Persons:** {totals['persons']:,.0f} &nbsp; "
        f"**Person-years:** {totals['person_years']:,.0f}",
        css_classes=["kpis"],
    )


def _table(df: pd.DataFrame, **kw: object) -> pn.widgets.Tabulator:
    numbers = {c: NumberFormatter(format="0,0.[00]") for c in df.select_dtypes("number")}
    return pn.widgets.Tabulator(df, disabled=True, show_index=False, layout="fit_data_table",
                                formatters=numbers, **kw)


def _view(render: Callable[[Any], Any], method: Callable[[], Any]) -> Any:
    """Re-render ``render(method())`` whenever a parameter the state method depends on changes."""
    deps = [state.param[d.name] for d in state.param.method_dependencies(method.__name__)]
    return pn.bind(lambda *_: render(method()), *deps)


kpis = _view(_kpis, state.totals)
diseases = _view(plots.disease_bars, state.disease_counts)
followup = _view(plots.followup_bars, state.followup)
coverage = _view(plots.coverage_heatmap, state.coverage)
summary = _view(_table, state.summary)
quality = _view(_table, state.quality)
reconciliation = _view(_table, state.reconciliation)
checks = _view(lambda df: _table(df, pagination="local", page_size=15), state.checks)

pn.template.FastListTemplate(
    title="clinnova_explore · federation overview",
    sidebar=[site_picker, disease_picker, bin_slider, pn.layout.Divider(), drill_picker,
             passed_toggle],
    main=[
        pn.Column(kpis, summary),
        pn.Row(pn.panel(diseases), pn.panel(followup)),
        pn.Column("### Mapping coverage", pn.panel(coverage)),
        pn.Column("### Data quality per site", quality,
                  "### Checks of the drill-down site", checks),
        pn.Column("### Reconciliation (rows in = loaded + quarantined)", reconciliation),
    ],
).servable()
