"""The treatment-effect sections of a survival report: Kaplan-Meier, Cox and balance.

The analyses run on a :class:`~clinnova_explore.federated.Federation` built from the catalog
and the time-to-event spec (each site's rows stay at the site; pooled mode uses the federation's
pooled site): unadjusted Kaplan-Meier and log-rank by arm, then
:func:`~clinnova_explore.analysis.effects.compare_treatments` for the naive and adjusted Cox
models, the adjusted curves and the balance table.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clinnova_explore.federated.site_transforms import with_outcome
from clinnova_explore.report.html import Section
from clinnova_explore.report.sections import (
    balance_section,
    cox_section,
    failed_section,
    km_section,
)

if TYPE_CHECKING:
    from bokeh.model import Model

    from clinnova_explore.analysis.effects import EffectResult
    from clinnova_explore.analysis.result import Provenance
    from clinnova_explore.analysis.survival.tte import TimeToEventSpec
    from clinnova_explore.catalog import Catalog
    from clinnova_explore.federated import Federation
    from clinnova_explore.report.config import SurvivalReportConfig

__all__ = ["OUTCOME", "adjustment_covariates", "effect_sections", "to_bokeh"]

OUTCOME = "outcome_event"
"""Column added at each site: 1 for the outcome, 0 for censoring or a competing event."""

TREATMENT, DURATION, EVENT = "treatment", "duration", "event"
KM_TITLE = "Kaplan-Meier: time to {outcome}"


def adjustment_covariates(config: SurvivalReportConfig, spec: TimeToEventSpec) -> list[str]:
    """The config's covariates, else the spec's covariates plus ``age`` and ``female``."""
    if config.covariates is not None:
        return list(config.covariates)
    return [*(c.name for c in spec.covariates), "age", "female"]


def to_bokeh(plot: Any) -> Model:
    """A bokeh model of a plot: bokeh models pass through, HoloViews objects are rendered,
    Panel objects give their bokeh root."""
    from bokeh.model import Model

    if isinstance(plot, Model):
        return plot
    module = type(plot).__module__
    if module.startswith("holoviews"):
        import holoviews as hv

        return hv.render(plot, backend="bokeh")
    if module.startswith("panel"):
        return plot.get_root()
    raise TypeError(f"cannot embed a {type(plot).__name__} in a report; expected a bokeh model")


_outcome_indicator = functools.partial(with_outcome, event=EVENT, outcome=OUTCOME)


def effect_sections(
    config: SurvivalReportConfig,
    spec: TimeToEventSpec,
    catalog: Catalog,
    labels: Mapping[Any, str],
) -> tuple[list[Section], dict[str, Provenance]]:
    """Kaplan-Meier, Cox and (IPTW or matching) balance sections, and their provenance.

    A user-facing error of an analysis (a ``ValueError``, e.g. every site refused) becomes a
    notice in the affected sections. What the sites kept for the analyses is released before
    returning, while the catalog's connections are still open.
    """
    from clinnova_explore.federated import Federation

    try:
        sites = Federation.from_cdm(catalog, spec)
    except (ValueError, LookupError) as exc:
        return _failed(exc), {}
    with sites:
        fed = sites.pooled() if config.mode == "pooled" else sites
        return _effect_sections(config, spec, fed, labels)


def _failed(exc: Exception) -> list[Section]:
    """The Kaplan-Meier and Cox sections, each saying why they could not be computed."""
    return [
        failed_section("km", "Kaplan-Meier", exc),
        failed_section("cox", "Cox proportional hazards", exc),
    ]


def _effect_sections(
    config: SurvivalReportConfig,
    spec: TimeToEventSpec,
    fed: Federation,
    labels: Mapping[Any, str],
) -> tuple[list[Section], dict[str, Provenance]]:
    from clinnova_explore.analysis.effects import compare_treatments

    provenances: dict[str, Provenance] = {}
    try:
        km_fed = fed.transform(_outcome_indicator, "outcome indicator (event == 1)")
        naive_km = km_fed.kaplan_meier(duration=DURATION, event=OUTCOME, group=TREATMENT)
        test = km_fed.logrank(duration=DURATION, event=OUTCOME, group=TREATMENT)
    except (ValueError, LookupError) as exc:
        return _failed(exc), provenances
    for name, result in (("Kaplan-Meier (unadjusted)", naive_km), ("log-rank", test)):
        made: Provenance | None = getattr(result, "provenance", None)
        if made is not None:
            provenances[name] = made
    error: Exception | None = None
    try:
        effect: EffectResult | None = compare_treatments(
            fed,
            treatment=TREATMENT,
            duration=DURATION,
            event=EVENT,
            covariates=adjustment_covariates(config, spec),
            method=config.adjustment,
            strata="site",
        )
    except (ValueError, LookupError) as exc:
        effect, error = None, exc
    if effect is not None and effect.provenance is not None:
        provenances["treatment effect"] = effect.provenance
    sections = _sections(config, spec, naive_km, float(test.p_value), effect, error, labels)
    return sections, provenances


def _sections(
    config: SurvivalReportConfig,
    spec: TimeToEventSpec,
    naive_km: Any,
    logrank_p: float,
    effect: EffectResult | None,
    error: BaseException | None,
    labels: Mapping[Any, str],
) -> list[Section]:
    from clinnova_explore.cohort import builtin_definition
    from clinnova_explore.viz.survival_plots import forest_figure, km_figure

    outcome = (
        builtin_definition(spec.outcome).name
        if isinstance(spec.outcome, str)
        else spec.outcome.name
    )
    title = KM_TITLE.format(outcome=outcome)
    times = list(config.times)
    curves = {
        "Unadjusted": (naive_km, km_figure(naive_km, times=times, title=title, labels=labels))
    }
    adjusted = effect is not None and config.adjustment in ("iptw", "match") and effect.km
    if adjusted:
        assert effect is not None and effect.km is not None
        heading = "IPTW-weighted" if config.adjustment == "iptw" else "Matched sample"
        fig = km_figure(effect.km, times=times, title=f"{title} ({heading})", labels=labels)
        curves[heading] = (effect.km, fig)
    out = [km_section(curves, times, labels, logrank_p=logrank_p)]
    if effect is None:
        assert error is not None
        return [*out, failed_section("cox", "Cox proportional hazards", error)]
    fits = {"naive": effect.naive}
    if config.adjustment != "naive":
        fits[f"adjusted ({config.adjustment})"] = effect.adjusted
    notes = [
        f"Persons analysed: {effect.n:,} (left out for a missing covariate: "
        f"{effect.excluded_missing:,}); in the adjusted analysis: {effect.n_adjusted:,}.",
        "Naive: treatment only, stratified by site. The outcome is cause-specific (a "
        "competing event censors).",
    ]
    if config.adjustment == "iptw":
        notes.append("IPTW: stabilized weights, robust (sandwich) standard errors; marginal HR.")
    elif config.adjustment == "match":
        notes.append("Matching: 1:1 within site, caliper 0.2 SD of logit PS; SE clustered on pair.")
    elif config.adjustment == "regression":
        notes.append("Regression: treatment plus covariates (a conditional HR).")
    forest = forest_figure(fits, covariate=TREATMENT)
    out.append(cox_section(fits, forest, notes))
    if config.adjustment in ("iptw", "match"):
        facts = [
            ("Equipoise (preference score in [0.3, 0.7])", f"{effect.equipoise:.1%}"),
            ("Propensity covariates", ", ".join(adjustment_covariates(config, spec))),
        ]
        love = to_bokeh(effect.love_plot())
        out.append(balance_section(effect.balance, love, facts))
    return out
