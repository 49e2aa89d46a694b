"""HoloViews builders for the federation overview (dashboards, notebooks, reports)."""

from __future__ import annotations

import holoviews as hv
import pandas as pd

__all__ = ["SITE_COLORS", "coverage_heatmap", "disease_bars", "followup_bars", "site_cmap"]

#: One fixed colour per demo site so that filtering never recolours the plots.
SITE_COLORS: dict[str, str] = {
    "luxembourg": "#1f77b4",
    "strasbourg": "#d62728",
    "basel": "#ff7f0e",
    "freiburg": "#2ca02c",
    "homburg": "#7f7f7f",
}
_EXTRA = ["#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]


def site_cmap(sites: list[str]) -> dict[str, str]:
    """Colour per site: the fixed demo colours, then a cycle for any other site id."""
    extra = iter(_EXTRA * (len(sites) // len(_EXTRA) + 1))
    return {s: SITE_COLORS.get(s) or next(extra) for s in sites}


def disease_bars(df: pd.DataFrame) -> hv.Bars:
    """Persons per disease, stacked by site.

    Parameters
    ----------
    df
        Output of :func:`clinnova_explore.overview.persons_by_disease` (suppressed cells are
        drawn as zero-height bars and listed in the hover).
    """
    data = df.assign(persons=df.persons.fillna(0))
    return hv.Bars(data, kdims=["disease", "site"], vdims=["persons", "suppressed"]).opts(
        stacked=True,
        invert_axes=True,
        responsive=True,
        height=320,
        xlabel="",
        ylabel="Persons",
        tools=["hover"],
        title="Persons per disease and site",
        legend_position="right",
        cmap=site_cmap(sorted(data.site.unique())),
    )


def followup_bars(df: pd.DataFrame) -> hv.Bars:
    """Persons by length of follow-up (years), grouped by site."""
    data = df.assign(persons=df.persons.fillna(0), years=df.years_from.map(lambda v: f"{v:g}"))
    return hv.Bars(data, kdims=["years", "site"], vdims=["persons"]).opts(
        stacked=True,
        responsive=True,
        height=300,
        xlabel="Years of observation (bin start)",
        ylabel="Persons",
        tools=["hover"],
        title="Follow-up",
        legend_position="right",
        cmap=site_cmap(sorted(data.site.unique())),
    )


def coverage_heatmap(df: pd.DataFrame) -> hv.HeatMap:
    """Share of rows mapped to standard concepts, per site and CDM table."""
    data = df.assign(coverage_pct=(df.coverage * 100).round(2))
    return hv.HeatMap(data, kdims=["cdm_table", "site"], vdims=["coverage_pct", "rows"]).opts(
        responsive=True,
        height=260,
        cmap="RdYlGn",
        clim=(90, 100),
        colorbar=True,
        tools=["hover"],
        title="Mapping coverage (%)",
        xrotation=30,
    )
