"""HoloViews builders for incidence results: rates per 100 person-years with exact CIs."""

from __future__ import annotations

import holoviews as hv
import holoviews.plotting.bokeh  # registers the bokeh backend that .opts needs
import pandas as pd

from clinnova_explore.viz.overview import site_cmap

__all__ = ["rate_plot", "rate_points"]

_LEVEL = {"year": "year", "age_group": "age_group", "sex": "sex"}


def rate_points(summary: pd.DataFrame, by: str = "year") -> pd.DataFrame:
    """The rows a rate plot draws: ``site``, ``level``, rate and CI (suppressed rows dropped).

    Parameters
    ----------
    summary
        :attr:`IncidenceResult.summary <clinnova_explore.analysis.incidence.IncidenceResult>`.
    by
        ``"site"`` (the overall row of every site) or a single stratum (``"year"``,
        ``"age_group"``, ``"sex"``).
    """
    if by == "site":
        rows = summary[summary.stratum == "overall"].assign(level=summary.site)
    elif by in _LEVEL:
        rows = summary[summary.stratum == by].assign(level=summary[_LEVEL[by]].astype(str))
    else:
        raise ValueError(
            f"rate plot: `by` must be 'site', 'year', 'age_group' or 'sex', not {by!r}"
        )
    rows = rows[rows.rate_p100py.notna()]
    rate = rows.rate_p100py.astype(float)
    return pd.DataFrame(
        {
            "site": rows.site.astype(str),
            "level": rows.level.astype(str),
            "rate": rate,
            "lower": rows.rate_lower.astype(float),
            "upper": rows.rate_upper.astype(float),
            "neg": rate - rows.rate_lower.astype(float),
            "pos": rows.rate_upper.astype(float) - rate,
            "outcomes": rows.outcomes.astype("Int64").astype(float),
            "person_years": rows.person_years.astype(float),
        }
    ).reset_index(drop=True)


def rate_plot(summary: pd.DataFrame, by: str = "year") -> hv.Overlay:
    """Incidence rate per 100 person-years with exact Poisson 95 % intervals.

    One colour per site (``overall`` in black) when ``by`` is a stratum; one point per site
    when ``by="site"``.
    """
    data = rate_points(summary, by)
    sites = [s for s in dict.fromkeys(data.site) if s != "overall"]
    colors = {"overall": "#000000", **site_cmap(sites)}
    layers: list[hv.Element] = []
    for site in dict.fromkeys(data.site):
        part = data[data.site == site]
        color = colors[site]
        layers.append(
            hv.ErrorBars(part, kdims=["level"], vdims=["rate", "neg", "pos"]).opts(color=color)
        )
        layers.append(
            hv.Scatter(
                part,
                kdims=["level"],
                vdims=["rate", "lower", "upper", "outcomes", "person_years"],
                label=site,
            ).opts(color=color, size=7, tools=["hover"])
        )
    xlabel = {"site": "Site", "year": "Calendar year", "age_group": "Age group", "sex": "Sex"}[by]
    return hv.Overlay(layers).opts(
        responsive=True,
        height=320,
        xlabel=xlabel,
        ylabel="Rate per 100 person-years",
        title="Incidence rate (exact 95 % CI)",
        legend_position="right",
    )
