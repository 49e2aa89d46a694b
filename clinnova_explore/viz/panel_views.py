"""Small Panel building blocks shared by the dashboards (the only Panel code in the library)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn
import param
from bokeh.models.widgets.tables import NumberFormatter

__all__ = ["bind_view", "kpi_markdown", "table"]


def bind_view(
    state: param.Parameterized, render: Callable[[Any], Any], method: Callable[[], Any]
) -> Any:
    """Re-render ``render(method())`` whenever a parameter ``method`` depends on changes.

    Parameters
    ----------
    state
        The dashboard's state object.
    render
        Turns the method's result into something Panel can show.
    method
        A ``param.depends``-decorated method of ``state``.

    Returns
    -------
    A bound function Panel re-evaluates on every relevant change.
    """
    deps = [state.param[d.name] for d in state.param.method_dependencies(method.__name__)]
    return pn.bind(lambda *_: render(method()), *deps)


def kpi_markdown(totals: dict[str, float]) -> pn.pane.Markdown:
    """Headline numbers (sites, persons, person-years) as one line of Markdown.

    Parameters
    ----------
    totals
        Output of :meth:`OverviewState.totals`.
    """
    return pn.pane.Markdown(
        f"**Sites:** {totals['sites']:.0f} &nbsp; **Persons:** {totals['persons']:,.0f} &nbsp; "
        f"**Person-years:** {totals['person_years']:,.0f}",
        css_classes=["kpis"],
    )


def table(df: pd.DataFrame, **kw: Any) -> pn.widgets.Tabulator:
    """A read-only table with readable number formats (suppressed cells show as ``-``).

    Parameters
    ----------
    df
        The frame to show.
    **kw
        Passed to :class:`panel.widgets.Tabulator` (e.g. ``pagination``).
    """
    numbers = {c: NumberFormatter(format="0,0.[00]") for c in df.select_dtypes("number")}
    return pn.widgets.Tabulator(
        df, disabled=True, show_index=False, layout="fit_data_table", formatters=numbers, **kw
    )
