"""Panel views of the survival dashboard: the controls and the result tabs.

Each function turns :class:`~clinnova_explore.viz.survival_state.SurvivalState` into Panel
objects; numbers come only from the state's library calls, and a result that could not be
computed shows its :class:`~clinnova_explore.viz.survival_state.Problem` message instead.
``dashboards/survival.py`` lays the views out.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn

from clinnova_explore.analysis.effects import EffectResult
from clinnova_explore.analysis.survival.km import KaplanMeierResult
from clinnova_explore.viz.federation_state import preview_rows
from clinnova_explore.viz.federation_views import preview_frame
from clinnova_explore.viz.overview import site_cmap
from clinnova_explore.viz.panel_views import bind_view, table
from clinnova_explore.viz.survival_plots import forest_figure, km_figure
from clinnova_explore.viz.survival_state import STRATA, Problem, SurvivalState

__all__ = [
    "balance_tab",
    "controls",
    "effects_tab",
    "km_tab",
    "preview_tab",
    "problem_alert",
    "result_tabs",
    "title_markdown",
]


def problem_alert(problem: Problem) -> pn.pane.Alert:
    """A result that could not be computed, as a message in the page."""
    return pn.pane.Alert(
        problem.message, alert_type="warning", css_classes=["survival-problem"], margin=10
    )


def _on_demand(bound: Any) -> pn.param.ParamFunction:
    """Evaluate ``bound`` only once it is first shown (its tab is opened)."""
    return pn.param.ParamFunction(bound, lazy=True, loading_indicator=True)


def controls(state: SurvivalState) -> pn.Column:
    """Disease, comparison, Kaplan-Meier stratification, adjustment and mode."""
    return pn.Column(
        pn.widgets.Select.from_param(state.param.disease, name="Disease"),
        pn.widgets.Select.from_param(state.param.comparison, name="Comparison"),
        "Kaplan-Meier curves by",
        pn.widgets.RadioButtonGroup.from_param(
            state.param.stratify_by,
            name="Curves by",
            css_classes=["stratify-by"],
            button_type="primary",
            button_style="outline",
        ),
        "Hazard ratio adjustment",
        pn.widgets.RadioButtonGroup.from_param(
            state.param.adjustment,
            name="Adjustment",
            css_classes=["adjustment"],
            button_type="primary",
            button_style="outline",
        ),
        pn.widgets.Checkbox.from_param(
            state.param.adjusted_curves, name="Adjust the treatment curves too"
        ),
        "Mode",
        pn.widgets.RadioButtonGroup.from_param(
            state.param.mode,
            name="Mode",
            css_classes=["mode"],
            button_type="primary",
            button_style="outline",
        ),
    )


def title_markdown(state: SurvivalState) -> Any:
    """The chosen comparison's name and arms."""

    def render(labels: dict[int, str]) -> pn.pane.Markdown:
        spec = state.spec()
        if spec is None or not labels:
            return pn.pane.Markdown("Pick a comparison.")
        return pn.pane.Markdown(
            f"### {spec.name}\n**Target:** {labels[1]} &nbsp; **Comparator:** {labels[0]} "
            f"&nbsp; **Mode:** {state.mode}",
            css_classes=["survival-title"],
        )

    return bind_view(state, render, state.labels)


def _km(state: SurvivalState, result: KaplanMeierResult | Problem) -> Any:
    if isinstance(result, Problem):
        return problem_alert(result)
    test = state.logrank()
    if isinstance(test, Problem):
        line = f"Log-rank test not available: {test.message}"
    else:
        line = (
            f"Log-rank test across {STRATA[state.stratify_by].lower()} groups: "
            f"χ² = {test.statistic:.2f} on {test.df} df, p = {test.p_value:.3g}"
        )
    by = STRATA[state.stratify_by].lower()
    if state.shows_adjusted_curves():
        by = f"{by}, {state.adjustment_label()}"
    colors = site_cmap([str(g) for g in result.groups]) if state.stratify_by == "site" else None
    figure = km_figure(
        result,
        labels=state.km_labels(),
        colors=colors,
        title=f"Time to outcome by {by} ({state.mode})",
        width=900,
    )
    return pn.Column(
        pn.pane.Markdown(line, css_classes=["logrank"]),
        pn.Column(pn.pane.Bokeh(figure), css_classes=["km-plot"]),
        pn.pane.Markdown(_km_notes(result), css_classes=["km-notes"]),
    )


def _km_notes(result: KaplanMeierResult) -> str:
    prov = getattr(result, "provenance", None)
    notes = [
        "Shaded bands: pointwise 95% confidence intervals; `+`: censored follow-up. "
        "Event times are binned and small cells merged as each site's policy requires."
    ]
    if prov is not None and prov.refused:
        refused = ", ".join(f"{s} ({r})" for s, r in prov.refused.items())
        notes.append(f"Sites that refused and are left out: {refused}.")
    return "\n\n".join(notes)


def km_tab(state: SurvivalState) -> Any:
    """Kaplan-Meier curves with CI bands and the number at risk, and the log-rank test."""
    return bind_view(state, lambda km: _km(state, km), state.km)


def format_p(p: float) -> str:
    """A p-value as read in clinical tables: two significant digits, ``<0.001`` below that."""
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def _effects(state: SurvivalState, fits: Any) -> Any:
    if isinstance(fits, Problem):
        return problem_alert(fits)
    figure = forest_figure(fits, "treatment", title="Hazard ratio of treatment (95% CI)")
    parts: list[Any] = [pn.Column(pn.pane.Bokeh(figure), css_classes=["forest-plot"])]
    rows = pd.DataFrame(
        {
            name: {
                "hr": fit.summary.loc["treatment", "hr"],
                "hr_lower": fit.summary.loc["treatment", "hr_lower"],
                "hr_upper": fit.summary.loc["treatment", "hr_upper"],
                "p": format_p(float(fit.summary.loc["treatment", "p"])),
                "n": fit.n,
                "events": fit.events,
            }
            for name, fit in fits.items()
        }
    ).T
    parts.append(table(rows.rename_axis("model").reset_index()))
    if state.adjustment != "naive":
        effect = state.effect()
        if isinstance(effect, Problem):
            parts.append(problem_alert(Problem(f"No adjusted estimate: {effect.message}")))
    parts.append(
        pn.pane.Markdown(
            "Cox models of the outcome on treatment, stratified by site. IPTW: stabilized "
            "weights, robust standard error (a marginal hazard ratio). Matching: 1:1 on the "
            "propensity score within site, standard error clustered on the pair (also "
            "marginal). Covariates: the confounders in the Cox model (a conditional hazard "
            "ratio)."
        )
    )
    return pn.Column(*parts)


def effects_tab(state: SurvivalState) -> Any:
    """Forest plot and table of the naive and adjusted hazard ratios."""
    return bind_view(state, lambda fits: _effects(state, fits), state.forest_fits)


def _balance(effect: EffectResult | Problem) -> Any:
    if isinstance(effect, Problem):
        return problem_alert(effect)
    summary = (
        f"Persons analysed: {effect.n:,} (adjusted analysis: {effect.n_adjusted:,}; left out "
        f"for missing covariates: {effect.excluded_missing:,}). Equipoise (preference score "
        f"in [0.3, 0.7]): {effect.equipoise:.1%}."
    )
    return pn.Column(
        pn.Column(pn.pane.HoloViews(effect.love_plot()), css_classes=["love-plot"]),
        table(effect.balance.rename_axis("covariate").reset_index()),
        pn.pane.Markdown(summary, css_classes=["balance-notes"]),
    )


def balance_tab(state: SurvivalState) -> Any:
    """Love plot and balance table (standardized mean differences before and after)."""
    return bind_view(state, _balance, state.effect)


_PREVIEW_NOTE = (
    "A preview runs each site's local step and policy checks but releases nothing: the "
    "coordinator sees only the table shapes, value names, suppressed cells, refusals and "
    "sizes shown here. Each site records the preview in its audit log, as it records every "
    "release."
)


def _preview(previews: dict[str, Any]) -> Any:
    parts = [
        preview_frame(
            f"{name} (federated)",
            found if isinstance(found, Problem) else preview_rows(found),
            getattr(found, "notes", ()),
        )
        for name, found in previews.items()
    ]
    return pn.Column(*parts, pn.pane.Markdown(_PREVIEW_NOTE), css_classes=["release-preview"])


def preview_tab(state: SurvivalState) -> Any:
    """What each site would release for the Kaplan-Meier curves and the naive Cox model of the
    current comparison (shapes, suppressed cells, refusals, bytes); nothing is released."""
    return bind_view(state, _preview, state.release_preview)


def result_tabs(state: SurvivalState) -> pn.Tabs:
    """Kaplan-Meier, hazard ratios, balance and what would leave the sites, as tabs; a tab's
    analyses run when it is first opened."""
    return pn.Tabs(
        ("Kaplan-Meier", _on_demand(km_tab(state))),
        ("Hazard ratios", _on_demand(effects_tab(state))),
        ("Balance", _on_demand(balance_tab(state))),
        ("What would leave", _on_demand(preview_tab(state))),
        dynamic=True,
    )
