"""Love plot: absolute standardized mean differences before and after adjustment (HoloViews).

Reads the balance table of :func:`clinnova_explore.analysis.effects.balance.balance` (or an
:class:`~clinnova_explore.analysis.effects.compare.EffectResult`'s ``.balance``) and computes
nothing but absolute values for display.
"""

from __future__ import annotations

import math
from typing import Any

import holoviews as hv
import holoviews.plotting.bokeh
import pandas as pd

__all__ = ["love_figure", "love_plot", "love_points"]

_STAGES = {"smd_before": "before", "smd_after": "after"}
_COLORS = {"before": "#999999", "after": "#1f4e79"}


def love_points(table: pd.DataFrame) -> pd.DataFrame:
    """Long table ``covariate, stage, smd, abs_smd`` of the finite SMDs in ``table``."""
    if "smd_before" not in table.columns:
        raise ValueError(
            "a love plot needs a balance table with an 'smd_before' column (from "
            "clinnova_explore.analysis.effects.balance)"
        )
    stages = [c for c in _STAGES if c in table.columns]
    long = table[stages].rename(columns=_STAGES).rename_axis("covariate").reset_index()
    long = long.melt(id_vars="covariate", var_name="stage", value_name="smd")
    long["abs_smd"] = long["smd"].abs()
    return long[long["abs_smd"] < math.inf].dropna(subset=["abs_smd"])


def love_plot(table: pd.DataFrame, *, threshold: float = 0.1, title: str = "") -> hv.Overlay:
    """Dot plot of |SMD| per covariate, before (grey) and after (blue) adjustment.

    Parameters
    ----------
    table
        Balance table indexed by covariate with ``smd_before`` (and ``smd_after``).
    threshold
        Dashed reference line (0.1 is the usual balance criterion).
    title
        Plot title (default: "Covariate balance").

    Returns
    -------
    holoviews.Overlay
    """
    points = love_points(table)
    rows = list(dict.fromkeys(table.index.astype(str)))[::-1]
    points["covariate"] = points["covariate"].astype(str)
    layers: list[hv.Element] = [
        hv.VLine(0).opts(color="black", line_width=1),
        hv.VLine(threshold).opts(color="grey", line_dash="dashed"),
    ]
    for stage, color in _COLORS.items():
        part = points[points["stage"] == stage]
        if part.empty:
            continue
        layers.append(
            hv.Points(
                part, kdims=["abs_smd", "covariate"], vdims=["smd", "stage"], label=stage
            ).opts(color=color, size=9, tools=["hover"], show_legend=True)
        )
    height = max(220, 26 * len(rows) + 100)
    return (
        hv.Overlay(layers)
        .opts(
            title=title or "Covariate balance",
            height=height,
            responsive=True,
            xlabel="|Standardized mean difference| (treated − comparator)",
            ylabel="",
            legend_position="right",
        )
        .redim.values(covariate=rows)
    )


def love_figure(table: pd.DataFrame, *, threshold: float = 0.1, title: str = "") -> Any:
    """:func:`love_plot` rendered as a standalone bokeh figure (e.g. for ``file_html``)."""
    return hv.render(love_plot(table, threshold=threshold, title=title), backend="bokeh")
