"""Forest plot of Cox hazard ratios (bokeh): one row per model and covariate, log axis.

``forest_figure`` returns a plain bokeh figure (embeddable with ``bokeh.embed.file_html``);
``forest_plot`` wraps it in a Panel pane. Both are re-exported by
:mod:`clinnova_explore.viz.survival_plots`. Every number is read from
:attr:`CoxResult.summary <clinnova_explore.analysis.survival.cox.CoxResult>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, LayoutDOM, Range1d
from bokeh.models.annotations import Span
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

if TYPE_CHECKING:
    from clinnova_explore.analysis.survival.cox import CoxResult

__all__ = ["forest_figure", "forest_plot", "forest_rows"]


def forest_rows(
    fits: Mapping[str, CoxResult], covariate: str | Sequence[str] | None = None
) -> pd.DataFrame:
    """The rows a forest plot draws: one per model and covariate, with finite HR and CI.

    Parameters
    ----------
    fits
        Cox fits by display name (e.g. ``{"naive": ..., "IPTW": ...}``), in drawing order.
    covariate
        One or several covariates to show (default: every covariate of every fit). A fit
        without the covariate contributes no row for it.

    Returns
    -------
    pandas.DataFrame
        Columns ``model, covariate, hr, hr_lower, hr_upper, p`` in drawing order.
    """
    wanted = [covariate] if isinstance(covariate, str) else covariate
    rows = []
    for model, fit in fits.items():
        table = fit.summary
        names = list(table.index) if wanted is None else [c for c in wanted if c in table.index]
        for cov in names:
            r = table.loc[cov]
            rows.append(
                {
                    "model": str(model),
                    "covariate": str(cov),
                    "hr": float(r["hr"]),
                    "hr_lower": float(r["hr_lower"]),
                    "hr_upper": float(r["hr_upper"]),
                    "p": float(r["p"]),
                }
            )
    out = pd.DataFrame(rows, columns=["model", "covariate", "hr", "hr_lower", "hr_upper", "p"])
    finite = np.isfinite(out[["hr", "hr_lower", "hr_upper"]].to_numpy(dtype="float64")).all(1)
    out = out[finite & (out["hr_lower"] > 0)].reset_index(drop=True)
    if out.empty:
        raise ValueError(
            f"nothing to draw: no fit in {list(fits)} has a finite hazard ratio and CI for "
            f"covariate(s) {wanted if wanted is not None else 'any'}"
        )
    return out


def forest_figure(
    fits: Mapping[str, CoxResult],
    covariate: str | Sequence[str] | None = None,
    *,
    title: str = "Hazard ratios (95% CI)",
    width: int | None = 640,
) -> LayoutDOM:
    """Forest plot: hazard ratio and CI whiskers per model and covariate on a log axis.

    Parameters
    ----------
    fits
        Cox fits by display name, e.g. naive vs adjusted.
    covariate
        Covariate(s) to show (default: all). With one covariate the rows are the models;
        otherwise rows are ``(covariate, model)``.
    title
        Plot title.
    width
        Width in pixels, or None to stretch.

    Returns
    -------
    bokeh.models.LayoutDOM
        A figure with a dashed reference line at HR = 1.
    """
    rows = forest_rows(fits, covariate)
    single = rows["covariate"].nunique() == 1
    factors: list[Any] = (
        list(rows["model"]) if single else list(zip(rows["covariate"], rows["model"], strict=True))
    )
    models = list(dict.fromkeys(rows["model"]))
    palette = {m: Category10_10[i % 10] for i, m in enumerate(models)}
    text = [
        f"{h:.2f} ({lo:.2f}–{hi:.2f})"
        for h, lo, hi in zip(rows["hr"], rows["hr_lower"], rows["hr_upper"], strict=True)
    ]
    src = ColumnDataSource(
        {
            "y": factors,
            **{c: rows[c].to_numpy() for c in ("model", "covariate", "hr", "hr_lower")},
            "hr_upper": rows["hr_upper"].to_numpy(),
            "p": rows["p"].to_numpy(),
            "text": text,
            "text_x": rows["hr_upper"].to_numpy() * 1.08,
            "color": [palette[m] for m in rows["model"]],
        }
    )
    low = min(float(rows["hr_lower"].min()), 1.0)
    high = max(float(rows["hr_upper"].max()), 1.0)
    label = f"Hazard ratio ({rows['covariate'].iloc[0]})" if single else "Hazard ratio"
    sizing: dict[str, Any] = (
        {"width": width} if width is not None else {"sizing_mode": "stretch_width"}
    )
    fig = figure(
        title=title,
        x_axis_type="log",
        x_range=Range1d(start=low / 1.3, end=high * 3.5),
        y_range=FactorRange(factors=list(reversed(factors))),
        height=70 + 34 * len(rows),
        x_axis_label=label,
        tools="save",
        toolbar_location=None,
        name="forest",
        **sizing,
    )
    fig.segment(
        x0="hr_lower",
        x1="hr_upper",
        y0="y",
        y1="y",
        source=src,
        line_color="color",
        line_width=2,
        name="forest-ci",
    )
    points = fig.scatter(
        x="hr", y="y", source=src, size=10, marker="square", color="color", name="forest-hr"
    )
    fig.text(
        x="text_x",
        y="y",
        text="text",
        source=src,
        text_baseline="middle",
        text_font_size="11px",
        name="forest-text",
    )
    fig.add_layout(Span(location=1.0, dimension="height", line_dash="dashed", line_color="#555555"))
    fig.add_tools(
        HoverTool(
            renderers=[points],
            tooltips=[
                ("model", "@model"),
                ("covariate", "@covariate"),
                ("HR", "@hr{0.000}"),
                ("CI", "@hr_lower{0.000} – @hr_upper{0.000}"),
                ("p", "@p{0.0000}"),
            ],
        )
    )
    fig.ygrid.visible = False
    return fig


def forest_plot(
    fits: Mapping[str, CoxResult], covariate: str | Sequence[str] | None = None, **kw: Any
) -> Any:
    """:func:`forest_figure` in a Panel pane (for notebooks and dashboards).

    Parameters
    ----------
    fits
        Cox fits by display name.
    covariate
        Covariate(s) to show (default: all).
    **kw
        Passed to :func:`forest_figure`.
    """
    import panel as pn

    return pn.pane.Bokeh(forest_figure(fits, covariate, **kw))
