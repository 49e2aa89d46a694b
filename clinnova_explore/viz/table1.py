"""Table 1 views: the SMD dot plot (HoloViews) and the rendered table (great-tables).

Both read a :class:`~clinnova_explore.analysis.table1.Table1Result` and compute nothing of their
own beyond formatting: every number comes from the result's ``data`` and ``smd`` tables.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import holoviews as hv
import holoviews.plotting.bokeh
import pandas as pd
from great_tables import GT

from clinnova_explore.viz.overview import site_cmap

if TYPE_CHECKING:
    from clinnova_explore.analysis.table1 import Table1Result

__all__ = ["SUPPRESSED_TEXT", "format_cell", "smd_plot", "table1_frame", "table1_gt"]

SUPPRESSED_TEXT = "suppressed"
"""What a suppressed cell shows in the rendered table."""

_OVERVIEW = "Overview"
_MISSING = "—"


def _smd_points(result: Table1Result, hide_zero: bool) -> tuple[pd.DataFrame, int]:
    if result.smd.empty:
        raise ValueError(
            "this Table 1 has no comparator cohort, so there are no standardized mean "
            "differences to plot; pass `comparator=` to characterize()"
        )
    long = result.smd.stack(future_stack=True).rename("smd").reset_index()
    long.columns = ["variable", "level", "site", "smd"]
    long["row"] = [
        f"{lv} ({v})" if lv else v for v, lv in zip(long.variable, long.level, strict=True)
    ]
    infinite = int((long["smd"].abs() == math.inf).sum())
    long = long[long["smd"].abs() < math.inf]
    if hide_zero:
        nonzero = long.groupby("row")["smd"].transform(lambda s: (s.abs() > 0).any())
        long = long[nonzero.astype(bool)]
    return long, infinite


def smd_plot(
    result: Table1Result, *, threshold: float = 0.1, per_site: bool = True, hide_zero: bool = True
) -> hv.Overlay:
    """Dot plot of target-minus-comparator SMDs, one row per covariate level.

    Parameters
    ----------
    result
        A Table 1 with a comparator.
    threshold
        Dashed reference lines at ``±threshold`` (0.1 is the usual balance criterion).
    per_site
        Also draw each site's SMD (small dots); the overall SMD is the large black dot.
    hide_zero
        Leave out rows whose SMD is 0 or NA everywhere (e.g. RA drugs in an MS comparison).

    Returns
    -------
    holoviews.Overlay
        Infinite SMDs (0 % against 100 %) cannot be drawn; the title says how many were left
        out.
    """
    points, infinite = _smd_points(result, hide_zero)
    rows = list(dict.fromkeys(points["row"]))[::-1]
    overall = points[points["site"] == "overall"]
    title = f"SMD: {' vs '.join(result.cohorts.values())}"
    if infinite:
        title += f" ({infinite} infinite SMDs not drawn)"
    height = max(240, 18 * len(rows) + 90)
    layers: list[hv.Element] = [
        hv.VLine(0).opts(color="black", line_width=1),
        hv.VLine(threshold).opts(color="grey", line_dash="dashed"),
        hv.VLine(-threshold).opts(color="grey", line_dash="dashed"),
    ]
    sites = points[points["site"] != "overall"]
    if per_site and not sites.empty:
        cmap = site_cmap(list(dict.fromkeys(sites["site"])))
        layers.append(
            hv.Points(sites, kdims=["smd", "row"], vdims=["site", "variable", "level"]).opts(
                color="site", cmap=cmap, size=6, alpha=0.7, tools=["hover"], show_legend=True
            )
        )
    layers.append(
        hv.Points(overall, kdims=["smd", "row"], vdims=["site", "variable", "level"]).opts(
            color="black", size=9, tools=["hover"]
        )
    )
    return (
        hv.Overlay(layers)
        .opts(
            title=title,
            height=height,
            responsive=True,
            xlabel="Standardized mean difference (target − comparator)",
            ylabel="",
            legend_position="right",
        )
        .redim.values(row=rows)
    )


def format_cell(row: pd.Series) -> str:
    """One table cell: ``n (p%)``, or ``mean (SD); median [Q1, Q3]; missing k (p%)``.

    A suppressed count shows :data:`SUPPRESSED_TEXT`; a continuous row whose count was hidden
    only as a complement keeps its mean and SD.

    Examples
    --------
    >>> format_cell(pd.Series({"kind": "binary", "n": 12, "percent": 40.0, "suppressed": False}))
    '12 (40.0%)'
    """
    hidden = bool(row.get("suppressed", False))
    n = row.get("n")
    if row["kind"] != "continuous":
        if hidden:
            return SUPPRESSED_TEXT
        if pd.isna(n):
            return _MISSING
        return f"{int(n):,}" if row["kind"] == "count" else f"{int(n):,} ({row['percent']:.1f}%)"
    if pd.isna(row.get("mean")):
        return SUPPRESSED_TEXT if hidden else _MISSING
    text = f"{row['mean']:.1f} ({row['sd']:.1f})"
    if pd.notna(row.get("median")):
        text += f"; {row['median']:.1f} [{row['q1']:.1f}, {row['q3']:.1f}]"
    missing = row.get("missing")
    if hidden:
        text += f"; n {SUPPRESSED_TEXT}"
    elif pd.notna(missing) and missing > 0:
        text += f"; missing {int(missing):,} ({row['missing_percent']:.0f}%)"
    return text


def table1_frame(result: Table1Result, *, per_site: bool = True) -> pd.DataFrame:
    """The displayed table: ``group, row`` then one text column per cohort and site (+ SMD)."""
    data = result.data
    if not per_site:
        data = data[data["site"] == "overall"]
    keys = data[["variable", "level"]].drop_duplicates()
    pairs = list(zip(keys.variable, keys.level, strict=True))
    frame = pd.DataFrame(
        {
            "group": [v if lv else _OVERVIEW for v, lv in pairs],
            "row": [lv or v for v, lv in pairs],
        },
        index=pd.MultiIndex.from_frame(keys),
    )
    for (cohort, site), part in data.groupby(["cohort", "site"], sort=False):
        cells = part.set_index(["variable", "level"]).apply(format_cell, axis=1)
        frame[f"{cohort}|{site}"] = cells.reindex(frame.index).fillna(_MISSING)
    if "overall" in result.smd:
        smd = result.smd["overall"].reindex(frame.index)
        frame["smd"] = [_MISSING if pd.isna(v) else f"{v:.3f}" for v in smd]
    return frame.reset_index(drop=True)


def table1_gt(result: Table1Result, *, per_site: bool = True) -> GT:
    """Table 1 as a great-tables ``GT``: a spanner per cohort, a column per site.

    Parameters
    ----------
    result
        The Table 1.
    per_site
        Show each site's column; ``False`` shows the overall column(s) only.
    """
    frame = table1_frame(result, per_site=per_site)
    table = GT(frame, rowname_col="row", groupname_col="group")
    labels: dict[str, Any] = {}  # great-tables types the values as its own text class
    for role, name in result.cohorts.items():
        columns = [c for c in frame.columns if c.startswith(f"{role}|")]
        labels |= {c: c.split("|", 1)[1] for c in columns}
        if columns:
            table = table.tab_spanner(label=name, columns=columns, id=role)
    if "smd" in frame:
        labels["smd"] = "SMD (overall)"
    table = table.cols_label(cases=labels)
    subtitle = (
        f"{result.provenance.mode} over {', '.join(result.provenance.sites)}; "
        "n (%), mean (SD); median [Q1, Q3] where released"
    )
    table = table.tab_header(title=result._title(), subtitle=subtitle)
    for note in result.notes:
        table = table.tab_source_note(note)
    return table
