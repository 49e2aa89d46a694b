"""Panel views of the cohort dashboard: the editing form and the result tabs.

Each function turns :class:`~clinnova_explore.viz.cohort_state.CohortState` into Panel
objects; numbers come only from the state's library calls. ``dashboards/cohorts.py`` lays the
views out.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
from bokeh.models.widgets.tables import NumberFormatter

from clinnova_explore.analysis.counts import OVERALL, CohortCountResult
from clinnova_explore.analysis.incidence import IncidenceResult
from clinnova_explore.analysis.pathways import PathwaysResult
from clinnova_explore.analysis.table1 import Table1Result
from clinnova_explore.viz.cohort_state import CohortState
from clinnova_explore.viz.panel_views import bind_view, table

__all__ = [
    "concept_set_editor",
    "counts_markdown",
    "counts_tab",
    "criteria_form",
    "incidence_tab",
    "live_counts",
    "pathways_tab",
    "result_tabs",
    "scope_form",
    "table1_tab",
]


def _fmt(value: Any) -> str:
    return "suppressed" if pd.isna(value) else f"{int(value):,}"


def _on_demand(bound: Any) -> pn.param.ParamFunction:
    """Evaluate ``bound`` only once it is first shown (with dynamic tabs: its tab is opened)."""
    return pn.param.ParamFunction(bound, lazy=True, loading_indicator=True)


def counts_markdown(summary: pd.DataFrame) -> pn.pane.Markdown:
    """Persons per site and overall as one line (``site: n``); suppressed cells say so."""
    if summary.empty:
        return pn.pane.Markdown("Persons: pick at least one site.", css_classes=["cohort-counts"])
    rows = summary.set_index("site")
    parts = (
        [f"**{OVERALL}: {_fmt(rows.loc[OVERALL, 'persons'])}**"] if OVERALL in rows.index else []
    )
    for site, row in rows.drop(index=OVERALL, errors="ignore").iterrows():
        shown = f"refused ({row['refused']})" if row.get("refused") else _fmt(row["persons"])
        parts.append(f"{site}: {shown}")
    return pn.pane.Markdown("Persons &nbsp; " + " · ".join(parts), css_classes=["cohort-counts"])


def scope_form(state: CohortState) -> pn.Column:
    """Sites, mode, disease and the definition to start from."""
    return pn.Column(
        pn.widgets.Select.from_param(state.param.disease, name="Disease"),
        pn.widgets.Select.from_param(state.param.start_from, name="Start from"),
        pn.widgets.CheckButtonGroup.from_param(
            state.param.sites, name="Sites", button_type="primary", orientation="vertical"
        ),
        pn.widgets.RadioButtonGroup.from_param(state.param.mode, name="Mode"),
    )


def criteria_form(state: CohortState) -> pn.Column:
    """Entry domain, prior observation, age at index and one criterion's window and count."""
    return pn.Column(
        "#### Entry event",
        pn.widgets.Select.from_param(state.param.entry_domain, name="Entry domain"),
        pn.widgets.IntInput.from_param(
            state.param.prior_days, name="Prior observation (days)", css_classes=["prior-days"]
        ),
        pn.widgets.IntRangeSlider.from_param(
            state.param.age_range, name="Age at index", step=1, css_classes=["age-range"]
        ),
        "#### Inclusion criterion",
        pn.widgets.Select.from_param(state.param.criterion, name="Criterion"),
        pn.Row(
            pn.widgets.IntInput.from_param(state.param.window_start, name="From day"),
            pn.widgets.IntInput.from_param(state.param.window_end, name="To day"),
        ),
        pn.Row(
            pn.widgets.Select.from_param(state.param.occurrence_type, name="Occurrences"),
            pn.widgets.IntInput.from_param(state.param.occurrence_count, name="Count"),
        ),
        pn.pane.Alert(
            state.param.edit_error,
            alert_type="danger",
            visible=state.param.edit_error.rx.bool(),
            css_classes=["edit-error"],
        ),
    )


def _concepts(df: pd.DataFrame, **kw: Any) -> pn.widgets.Tabulator:
    """A read-only concept table; ids shown as plain digits (no thousands separators)."""
    return pn.widgets.Tabulator(
        df,
        disabled=True,
        show_index=False,
        layout="fit_data_table",
        formatters={"concept_id": NumberFormatter(format="0")},
        **kw,
    )


def concept_set_editor(state: CohortState) -> pn.Column:
    """Pick a concept set, search the vocabulary, preview descendants, add or remove concepts."""
    results = _concepts(state.search_results(), selectable=1, height=220)
    items = _concepts(state.concept_set_items(), selectable=1)
    descendants = pn.widgets.Checkbox(name="with descendants", value=True)
    add = pn.widgets.Button(name="Add to concept set", button_type="primary")
    remove = pn.widgets.Button(name="Remove selected", button_type="warning")

    def refresh_results(*_: Any) -> None:
        results.value = state.search_results()

    def refresh_items(*_: Any) -> None:
        items.value = state.concept_set_items()

    def preview(event: Any) -> None:
        rows = results.selected_dataframe
        if not rows.empty:
            state.preview_concept = int(rows.concept_id.iloc[0])

    def on_add(_: Any) -> None:
        rows = results.selected_dataframe
        if not rows.empty:
            state.add_concept(int(rows.concept_id.iloc[0]), descendants=descendants.value)

    def on_remove(_: Any) -> None:
        rows = items.selected_dataframe
        if not rows.empty and pd.notna(rows.concept_id.iloc[0]):
            state.remove_concept(int(rows.concept_id.iloc[0]))

    state.param.watch(refresh_results, ["search_text", "search_domain"])
    state.param.watch(refresh_items, ["definition", "concept_set"])
    results.param.watch(preview, "selection")
    add.on_click(on_add)
    remove.on_click(on_remove)
    return pn.Column(
        pn.widgets.Select.from_param(state.param.concept_set, name="Concept set"),
        items,
        remove,
        pn.Row(
            pn.widgets.TextInput.from_param(
                state.param.search_text, name="Search concepts", placeholder="name, code or id"
            ),
            pn.widgets.Select.from_param(state.param.search_domain, name="Domain"),
        ),
        results,
        pn.Row(add, descendants),
        "#### Descendants of the selected concept",
        bind_view(state, lambda df: _concepts(df, height=200), state.preview),
    )


def live_counts(state: CohortState) -> Any:
    """The one-line persons-per-site summary, recomputed on every edit."""
    return bind_view(state, counts_markdown, state.site_counts)


def _counts_plot(result: CohortCountResult | None) -> Any:
    if result is None:
        return pn.pane.Markdown("")
    return result.plot().opts(responsive=True, height=300)


def counts_tab(state: CohortState) -> pn.Column:
    """Persons and records per site, ATLAS-style attrition per site, and a bar chart."""
    return pn.Column(
        bind_view(state, table, state.site_counts),
        "#### Attrition: persons remaining after each inclusion rule",
        bind_view(state, table, state.attrition),
        pn.panel(bind_view(state, _counts_plot, state.counts)),
    )


def _table1(result: Table1Result | None) -> Any:
    if result is None:
        return pn.pane.Markdown("Pick a comparator cohort and at least one site.")
    notes = "\n".join(f"- {n}" for n in result.notes)
    return pn.Column(
        pn.pane.HoloViews(result.plot()),
        pn.pane.HTML(result.to_great_table(per_site=False).as_raw_html(), css_classes=["table1"]),
        pn.pane.Markdown(notes),
    )


def table1_tab(state: CohortState) -> pn.Column:
    """The edited cohort against a comparator: SMD plot and Table 1."""
    return pn.Column(
        pn.widgets.Select.from_param(state.param.comparator, name="Comparator"),
        _on_demand(bind_view(state, _table1, state.table1)),
    )


def _incidence(result: IncidenceResult | None) -> Any:
    if result is None:
        return pn.pane.Markdown("Pick an outcome cohort and at least one site.")
    summary = result.summary
    if "year" in summary:  # calendar years read as labels, not as 2,013
        summary = summary.assign(year=summary["year"].astype("Int64").astype("string"))
    return pn.Column(
        pn.pane.HoloViews(result.plot(by="site")),
        table(summary, pagination="local", page_size=15),
    )


def incidence_tab(state: CohortState) -> pn.Column:
    """Incidence of an outcome in the edited cohort: rates per site, table by stratum."""
    return pn.Column(
        pn.widgets.Select.from_param(state.param.outcome, name="Outcome"),
        _on_demand(bind_view(state, _incidence, state.incidence)),
    )


def _pathways(result: PathwaysResult | None) -> Any:
    if result is None:
        return pn.pane.Markdown("Pick at least one site.")
    return pn.Column(
        pn.pane.HoloViews(result.plot()),
        table(result.paths(), pagination="local", page_size=15),
    )


def pathways_tab(state: CohortState) -> pn.Column:
    """Treatment pathways of the disease's drugs within the edited cohort."""
    return pn.Column(
        pn.Row(
            pn.widgets.RadioButtonGroup.from_param(state.param.pathway_level, name="Events"),
            pn.widgets.IntSlider.from_param(state.param.max_path_length, name="Steps per path"),
        ),
        _on_demand(bind_view(state, _pathways, state.pathways)),
    )


def result_tabs(state: CohortState) -> pn.Tabs:
    """Counts, concept sets, Table 1, incidence, pathways and the definition as tabs; only the
    open tab is rendered, and the heavy analyses run when their tab is first opened."""
    return pn.Tabs(
        ("Counts", counts_tab(state)),
        ("Concept sets", concept_set_editor(state)),
        ("Compare (Table 1)", table1_tab(state)),
        ("Incidence", incidence_tab(state)),
        ("Pathways", pathways_tab(state)),
        (
            "Definition",
            bind_view(
                state, lambda text: pn.pane.Markdown(f"```yaml\n{text}\n```"), state.definition_yaml
            ),
        ),
        dynamic=True,
    )
