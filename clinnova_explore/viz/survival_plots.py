"""Bokeh plots of survival results: Kaplan-Meier curves with a number-at-risk table, and (from
:mod:`~clinnova_explore.viz.survival_forest`) a forest plot of Cox hazard ratios.

``km_figure`` and ``forest_figure`` return plain bokeh layouts, so they embed in a standalone
HTML file (``bokeh.embed.file_html(fig, resources=INLINE)``); ``km_plot`` and ``forest_plot``
wrap them in a Panel pane for notebooks and dashboards. Every number drawn is read from the
result objects (:attr:`KaplanMeierResult.summary`, :meth:`KaplanMeierResult.risk_table`,
:attr:`CoxResult.summary`); this module only reshapes and formats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from bokeh.layouts import column
from bokeh.models import (
    ColumnDataSource,
    FactorRange,
    FixedTicker,
    HoverTool,
    LayoutDOM,
    Range1d,
)
from bokeh.models.annotations import Legend, LegendItem
from bokeh.models.renderers import GlyphRenderer
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from clinnova_explore.viz.survival_forest import forest_figure, forest_plot, forest_rows

if TYPE_CHECKING:
    from clinnova_explore.analysis.survival.km import KaplanMeierResult

__all__ = [
    "default_times",
    "forest_figure",
    "forest_plot",
    "forest_rows",
    "km_figure",
    "km_plot",
    "km_steps",
]

_NICE = (1.0, 2.0, 2.5, 5.0, 10.0)


def default_times(max_time: float, *, target: int = 6) -> np.ndarray:
    """Evenly spaced "nice" times from 0 to at least ``max_time`` (about ``target`` steps).

    Follow-up of two years or more in days is ticked in whole years (365 days).

    Parameters
    ----------
    max_time
        Largest follow-up time shown.
    target
        Approximate number of intervals.

    Examples
    --------
    >>> default_times(100).tolist()
    [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    >>> default_times(1500).tolist()
    [0.0, 365.0, 730.0, 1095.0, 1460.0]
    """
    if not math.isfinite(max_time) or max_time <= 0:
        return np.array([0.0])
    if max_time >= 730:
        step = 365.0 * max(1, math.ceil(max_time / 365.0 / (target + 2)))
    else:
        raw = max_time / target
        base = 10.0 ** math.floor(math.log10(raw))
        step = base * next(m for m in _NICE if m * base >= raw)
    return np.arange(0.0, max_time + 1e-9, step)


def _label(key: object, labels: Mapping[Any, str] | None) -> str:
    if labels is not None and key in labels:
        return str(labels[key])
    return "missing" if pd.isna(key) else str(key)


def km_steps(result: KaplanMeierResult) -> pd.DataFrame:
    """The staircase a Kaplan-Meier plot draws: two vertices per observed time.

    Each curve starts at ``(0, 1)``; at every time in :attr:`KaplanMeierResult.summary` it
    drops vertically from the previous value to the new one, so consecutive rows share a time.
    The bands (``lower``, ``upper``) follow the same staircase.

    Parameters
    ----------
    result
        A fitted Kaplan-Meier result.

    Returns
    -------
    pandas.DataFrame
        Columns ``group, time, survival, lower, upper`` (``group`` as in the summary).
    """
    parts = []
    for key, part in result.summary.groupby("group", sort=False, dropna=False):
        steps = _staircase(part)
        steps.insert(0, "group", [key] * len(steps))
        parts.append(steps)
    return pd.concat(parts, ignore_index=True)


def _staircase(part: pd.DataFrame) -> pd.DataFrame:
    cols = {}
    for col in ("survival", "lower", "upper"):
        v = part[col].to_numpy(dtype="float64")
        before = np.concatenate([[1.0], v[:-1]])
        cols[col] = np.concatenate([[1.0], np.column_stack([before, v]).ravel()])
    times = np.concatenate([[0.0], np.repeat(part["time"].to_numpy(dtype="float64"), 2)])
    return pd.DataFrame({"time": times, **cols})


def _count_text(values: pd.Series) -> list[str]:
    return ["–" if pd.isna(v) else f"{v:,.0f}" for v in values]


def km_figure(
    result: KaplanMeierResult,
    *,
    times: Sequence[float] | np.ndarray | None = None,
    title: str = "",
    labels: Mapping[Any, str] | None = None,
    colors: Mapping[str, str] | None = None,
    x_label: str = "Days since index",
    ci: bool = True,
    censor_marks: bool = True,
    width: int | None = 760,
    height: int = 380,
) -> LayoutDOM:
    """Kaplan-Meier curves with confidence bands and a number-at-risk table under them.

    Parameters
    ----------
    result
        A Kaplan-Meier result (one curve per group).
    times
        Times of the x ticks and of the risk table columns (default: :func:`default_times`
        of the longest follow-up).
    title
        Plot title.
    labels
        Display name per group value (e.g. ``{1: "high efficacy", 0: "platform"}``).
    colors
        Colour per displayed group name (default: a fixed categorical palette in group order).
    x_label
        Label of the time axis.
    ci
        Draw the pointwise confidence bands.
    censor_marks
        Mark times with censored subjects (``+``) on the curves.
    width
        Width in pixels, or None to stretch to the container's width.
    height
        Height of the curve plot in pixels (the table adds about 24 px per group).

    Returns
    -------
    bokeh.models.LayoutDOM
        A column of the curve figure and the risk-table figure, sharing the x range.
    """
    summary = result.summary
    groups = list(summary.groupby("group", sort=False, dropna=False))
    names = [_label(k, labels) for k, _ in groups]
    palette = {n: Category10_10[i % 10] for i, n in enumerate(names)}
    palette.update(colors or {})
    max_time = float(summary["time"].max()) if len(summary) else 0.0
    grid = np.asarray(default_times(max_time) if times is None else times, dtype="float64")
    span = max(max_time, float(grid.max()) if grid.size else 0.0) or 1.0
    pad = 0.04 * span  # room for the risk-table numbers at the first and last tick
    x_range = Range1d(start=-pad, end=span + pad, bounds=(-pad, span + pad))
    left = max(60, 8 * max(len(n) for n in names) + 24) if names else 60
    sizing: dict[str, Any] = (
        {"width": width} if width is not None else {"sizing_mode": "stretch_width"}
    )
    level = f"{100 * (1 - result.alpha):g}%"
    fig = figure(
        title=title or None,
        x_range=x_range,
        y_range=Range1d(start=0.0, end=1.02),
        height=height,
        min_border_left=left,
        min_border_right=20,
        x_axis_label=x_label,
        y_axis_label="Survival probability",
        tools="pan,wheel_zoom,box_zoom,reset,save",
        name="km-curves",
        **sizing,
    )
    fig.xaxis.ticker = FixedTicker(ticks=list(grid))
    items = []
    point_renderers: list[Any] = []
    for (_, rows), name in zip(groups, names, strict=True):
        color = palette[name]
        src = ColumnDataSource({c: v.to_numpy() for c, v in _staircase(rows).items()})
        glyphs: list[GlyphRenderer[Any]] = []
        if ci:
            glyphs.append(
                fig.varea(
                    x="time",
                    y1="lower",
                    y2="upper",
                    source=src,
                    fill_color=color,
                    fill_alpha=0.15,
                    name=f"km-band:{name}",
                )
            )
        glyphs.append(
            fig.line(
                x="time",
                y="survival",
                source=src,
                line_color=color,
                line_width=2,
                name=f"km-curve:{name}",
            )
        )
        cols = ("time", "survival", "lower", "upper", "n_at_risk", "n_events", "n_censored")
        pts = ColumnDataSource(
            {"group": [name] * len(rows), **{c: rows[c].to_numpy() for c in cols}}
        )
        point_renderers.append(
            fig.scatter(
                x="time",
                y="survival",
                source=pts,
                size=8,
                fill_alpha=0.0,
                line_alpha=0.0,
                hover_fill_color=color,
                hover_fill_alpha=1.0,
                name=f"km-points:{name}",
            )
        )
        if censor_marks:
            cens = rows[rows["n_censored"] > 0]
            glyphs.append(
                fig.scatter(
                    x=cens["time"].to_numpy(),
                    y=cens["survival"].to_numpy(),
                    marker="cross",
                    size=7,
                    line_color=color,
                    name=f"km-censored:{name}",
                )
            )
        items.append(LegendItem(label=name, renderers=glyphs))
    fig.add_tools(
        HoverTool(
            renderers=point_renderers,
            tooltips=[
                ("group", "@group"),
                ("time", "@time{0,0.[00]}"),
                ("survival", "@survival{0.000}"),
                (f"{level} CI", "@lower{0.000} – @upper{0.000}"),
                ("at risk", "@n_at_risk{0,0.[0]}"),
                ("events", "@n_events{0,0.[0]}"),
                ("censored", "@n_censored{0,0.[0]}"),
            ],
        )
    )
    legend = Legend(items=items, click_policy="hide", location="top_right")
    fig.add_layout(legend)
    risk = _risk_figure(result, grid, names, palette, x_range, left, sizing)
    layout = column(fig, risk, sizing_mode="stretch_width" if width is None else None)
    layout.name = "km-figure"
    return layout


def _risk_figure(
    result: KaplanMeierResult,
    grid: np.ndarray,
    names: list[str],
    palette: Mapping[str, str],
    x_range: Range1d,
    left: int,
    sizing: dict[str, Any],
) -> Any:
    table = result.risk_table(grid)  # one block of len(grid) rows per group, in group order
    shown = [n for n in names for _ in range(len(grid))]
    src = ColumnDataSource(
        {
            "time": table["time"].to_numpy(),
            "group": shown,
            "n_at_risk": table["n_at_risk"].to_numpy(dtype="float64"),
            "text": _count_text(table["n_at_risk"]),
            "color": [palette[n] for n in shown],
        }
    )
    at_risk = result.summary["n_at_risk"].to_numpy(dtype="float64")
    weighted = not np.allclose(at_risk, np.round(at_risk))
    fig = figure(
        title="Number at risk (weighted)" if weighted else "Number at risk",
        x_range=x_range,
        y_range=FactorRange(factors=list(reversed(names))),
        height=40 + 24 * max(1, len(names)),
        min_border_left=left,
        min_border_right=20,
        toolbar_location=None,
        tools="",
        name="km-risk-table",
        **sizing,
    )
    fig.text(
        x="time",
        y="group",
        text="text",
        source=src,
        text_align="center",
        text_baseline="middle",
        text_font_size="11px",
        text_color="color",
        name="risk-table",
    )
    fig.xaxis.visible = False
    fig.xgrid.visible = fig.ygrid.visible = False
    fig.outline_line_color = None
    fig.title.text_font_size = "11px"  # type: ignore[union-attr]
    fig.title.text_font_style = "normal"  # type: ignore[union-attr]
    return fig


def km_plot(result: KaplanMeierResult, **kw: Any) -> Any:
    """:func:`km_figure` in a Panel pane (for notebooks and dashboards).

    Parameters
    ----------
    result
        A Kaplan-Meier result.
    **kw
        Passed to :func:`km_figure` (``times``, ``title``, ``labels``, ``colors``, ...).
    """
    import panel as pn

    return pn.pane.Bokeh(km_figure(result, **kw))
