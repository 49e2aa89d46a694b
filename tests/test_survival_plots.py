"""Kaplan-Meier and forest plots: the drawn data equal independent references (lifelines on the
Rossi recidivism data, hand counts), every option changes what it should, and the figures work
as standalone bokeh documents."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from bokeh.embed import file_html
from bokeh.models import ColumnDataSource, FixedTicker, HoverTool, LogScale
from bokeh.models.annotations import Span
from bokeh.models.renderers import GlyphRenderer
from bokeh.resources import INLINE
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.datasets import load_rossi

from clinnova_explore.analysis.survival import CoxResult, KaplanMeierResult, cox, kaplan_meier
from clinnova_explore.viz.survival_plots import (
    default_times,
    forest_figure,
    forest_plot,
    forest_rows,
    km_figure,
    km_plot,
    km_steps,
)

LABELS = {0: "no aid", 1: "financial aid"}


@pytest.fixture(scope="module")
def rossi() -> pd.DataFrame:
    """Rossi et al. (1980) recidivism data as shipped with lifelines (MIT licence)."""
    return load_rossi()


@pytest.fixture(scope="module")
def km(rossi: pd.DataFrame) -> KaplanMeierResult:
    return kaplan_meier(rossi, duration="week", event="arrest", group="fin", conf_type="log-log")


def _renderer(layout: Any, name: str) -> Any:
    found = list(layout.select({"name": name}))
    assert len(found) == 1, f"{len(found)} models named {name!r}"
    return found[0]


def _data(layout: Any, name: str) -> dict[str, Any]:
    source = _renderer(layout, name).data_source
    assert isinstance(source, ColumnDataSource)
    return {k: np.asarray(v) if not isinstance(v, list) else v for k, v in source.data.items()}


def _tooltips(layout: Any) -> str:
    hover = [t for t in _renderer(layout, "km-curves").tools if isinstance(t, HoverTool)]
    return str(hover[0].tooltips)


def _lifelines(rossi: pd.DataFrame, fin: int) -> KaplanMeierFitter:
    part = rossi[rossi["fin"] == fin]
    return KaplanMeierFitter().fit(part["week"], part["arrest"])


# ---------------------------------------------------------------------------- staircase
def test_steps_by_hand() -> None:
    df = pd.DataFrame({"t": [1, 2, 2, 3], "e": [1, 0, 1, 1]})
    steps = km_steps(kaplan_meier(df, duration="t", event="e"))
    assert steps["time"].tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert np.allclose(steps["survival"], [1, 1, 0.75, 0.75, 0.5, 0.5, 0.0], atol=1e-15)
    assert set(steps["group"]) == {"all"}


def test_steps_follow_lifelines(rossi: pd.DataFrame, km: KaplanMeierResult) -> None:
    steps = km_steps(km)
    for fin in (0, 1):
        ref = _lifelines(rossi, fin)
        part = steps[steps["group"] == fin]
        t = part["time"].to_numpy()
        after = part["survival"].to_numpy()[0::2]  # (0, 1) then the value after each drop
        before = part["survival"].to_numpy()[1::2]  # the value just before each drop
        assert np.allclose(after, ref.survival_function_at_times(t[0::2]).to_numpy(), atol=1e-12)
        assert np.allclose(
            before, ref.survival_function_at_times(t[1::2] - 1e-9).to_numpy(), atol=1e-12
        )
        # bands: lifelines' exponential Greenwood interval at the drop vertices
        ci = ref.confidence_interval_.loc[t[2::2]]
        assert np.allclose(part["lower"].to_numpy()[2::2], ci.iloc[:, 0].to_numpy(), atol=1e-9)
        assert np.allclose(part["upper"].to_numpy()[2::2], ci.iloc[:, 1].to_numpy(), atol=1e-9)


# ---------------------------------------------------------------------------- KM figure
def test_km_figure_draws_the_result(rossi: pd.DataFrame, km: KaplanMeierResult) -> None:
    layout = km_figure(km, labels=LABELS)
    steps = km_steps(km)
    for fin, name in LABELS.items():
        curve = _data(layout, f"km-curve:{name}")
        part = steps[steps["group"] == fin]
        assert np.array_equal(curve["time"], part["time"].to_numpy())
        assert np.array_equal(curve["survival"], part["survival"].to_numpy())
        band = _renderer(layout, f"km-band:{name}")
        assert band.data_source is _renderer(layout, f"km-curve:{name}").data_source
        points = _data(layout, f"km-points:{name}")
        ref = _lifelines(rossi, fin).event_table.loc[points["time"]]
        assert np.array_equal(points["n_at_risk"], ref["at_risk"].to_numpy())
        assert np.array_equal(points["n_events"], ref["observed"].to_numpy())
        assert set(points["group"]) == {name}
        marks = _data(layout, f"km-censored:{name}")
        censored = ref[ref["censored"] > 0]
        assert np.array_equal(marks["x"], censored.index.to_numpy(dtype=float))
        assert np.allclose(marks["y"], _lifelines(rossi, fin).predict(censored.index), atol=1e-12)


def test_risk_table_counts_by_hand(rossi: pd.DataFrame, km: KaplanMeierResult) -> None:
    times = [0, 10, 25, 40, 52]
    layout = km_figure(km, times=times, labels=LABELS)
    table = _data(layout, "risk-table")
    expected = [
        (LABELS[fin], t, int((rossi.loc[rossi.fin == fin, "week"] >= t).sum()))
        for fin in (0, 1)
        for t in times
    ]
    got = list(zip(table["group"], table["time"], table["n_at_risk"], strict=True))
    assert got == expected
    assert table["text"] == [f"{n:,}" for *_, n in expected]
    curves = _renderer(layout, "km-curves")
    risk = _renderer(layout, "km-risk-table")
    assert risk.x_range is curves.x_range  # the table columns sit under the ticks
    ticker = curves.xaxis[0].ticker
    assert isinstance(ticker, FixedTicker)
    assert list(ticker.ticks) == times
    assert list(risk.y_range.factors) == list(reversed(LABELS.values()))


def test_default_ticks_follow_the_follow_up(km: KaplanMeierResult) -> None:
    ticks = list(_renderer(km_figure(km), "km-curves").xaxis[0].ticker.ticks)
    assert ticks == default_times(52).tolist() == [0, 10, 20, 30, 40, 50]
    assert default_times(1500).tolist() == [0, 365, 730, 1095, 1460]
    assert default_times(8).tolist() == [0, 2, 4, 6, 8]
    assert default_times(0).tolist() == [0]


def test_options_change_the_figure(km: KaplanMeierResult) -> None:
    plain = km_figure(km)
    assert {r.name for r in plain.select({"type": GlyphRenderer})} >= {
        "km-band:0",
        "km-curve:1",
        "km-censored:1",
    }
    bare = km_figure(km, ci=False, censor_marks=False)
    names = {r.name for r in bare.select({"type": GlyphRenderer})}
    assert not any(str(n).startswith(("km-band", "km-censored")) for n in names)
    colored = km_figure(km, labels=LABELS, colors={"no aid": "#000000"})
    assert _renderer(colored, "km-curve:no aid").glyph.line_color == "#000000"
    assert _renderer(colored, "km-curve:financial aid").glyph.line_color != "#000000"
    titled = km_figure(km, title="Rossi", x_label="Weeks")
    curves = _renderer(titled, "km-curves")
    assert curves.title.text == "Rossi"
    assert curves.xaxis[0].axis_label == "Weeks"
    assert _renderer(km_figure(km, width=500), "km-curves").width == 500
    assert _renderer(km_figure(km, height=250), "km-curves").height == 250
    assert _renderer(km_figure(km, width=None), "km-curves").sizing_mode == "stretch_width"
    assert "95% CI" in _tooltips(plain)
    ninety = kaplan_meier(
        pd.DataFrame({"t": [1, 2, 3], "e": [1, 1, 0]}), duration="t", event="e", alpha=0.1
    )
    assert "90% CI" in _tooltips(km_figure(ninety))


def test_single_curve_and_weighted_counts() -> None:
    df = pd.DataFrame({"t": [1.0, 2.0, 2.0, 3.0], "e": [1, 0, 1, 1]})
    result = kaplan_meier(df, duration="t", event="e")
    table = _data(km_figure(result, times=[0, 2]), "risk-table")
    assert table["group"] == ["all", "all"] and table["text"] == ["4", "3"]
    # weighted counts (e.g. IPTW): every subject weighs 0.4, so 1.6 and 1.2 are at risk
    counts = ["n_at_risk", "n_events", "n_censored"]
    weighted = KaplanMeierResult(
        summary=result.summary.assign(**{c: result.summary[c] * 0.4 for c in counts}),
        conf_type=result.conf_type,
        alpha=result.alpha,
    )
    table = _data(km_figure(weighted, times=[0, 2]), "risk-table")
    assert np.allclose(table["n_at_risk"], [1.6, 1.2]) and table["text"] == ["2", "1"]
    assert _renderer(km_figure(weighted), "km-risk-table").title.text == "Number at risk (weighted)"
    assert _renderer(km_figure(result), "km-risk-table").title.text == "Number at risk"


def test_km_plot_is_a_panel_pane(km: KaplanMeierResult) -> None:
    import panel as pn

    pane = km_plot(km, title="Rossi")
    assert isinstance(pane, pn.pane.Bokeh)
    assert _renderer(pane.object, "km-curves").title.text == "Rossi"


# ---------------------------------------------------------------------------- forest
@pytest.fixture(scope="module")
def fits(rossi: pd.DataFrame) -> dict[str, CoxResult]:
    return {
        "naive": cox(rossi, duration="week", event="arrest", covariates=["fin"]),
        "adjusted": cox(rossi, duration="week", event="arrest", covariates=["fin", "age", "prio"]),
    }


def _lifelines_cox(rossi: pd.DataFrame, covariates: list[str]) -> pd.DataFrame:
    fit = CoxPHFitter().fit(
        rossi[["week", "arrest", *covariates]],
        duration_col="week",
        event_col="arrest",
        fit_options={"precision": 1e-12},
    )
    return fit.summary


def test_forest_rows_match_lifelines(rossi: pd.DataFrame, fits: dict[str, CoxResult]) -> None:
    rows = forest_rows(fits)
    assert list(zip(rows["model"], rows["covariate"], strict=True)) == [
        ("naive", "fin"),
        ("adjusted", "fin"),
        ("adjusted", "age"),
        ("adjusted", "prio"),
    ]
    for model, covs in (("naive", ["fin"]), ("adjusted", ["fin", "age", "prio"])):
        ref = _lifelines_cox(rossi, covs)
        got = rows[rows["model"] == model].set_index("covariate")
        assert np.allclose(got["hr"], ref["exp(coef)"].loc[covs], rtol=1e-6)
        assert np.allclose(got["hr_lower"], ref["exp(coef) lower 95%"].loc[covs], rtol=1e-6)
        assert np.allclose(got["hr_upper"], ref["exp(coef) upper 95%"].loc[covs], rtol=1e-6)
        assert np.allclose(got["p"], ref["p"].loc[covs], rtol=1e-5)


def test_forest_figure_draws_the_rows(fits: dict[str, CoxResult]) -> None:
    fig: Any = forest_figure(fits, "fin")
    data = _data(fig, "forest-hr")
    rows = forest_rows(fits, "fin")
    assert data["y"] == ["naive", "adjusted"]
    assert np.array_equal(data["hr"], rows["hr"].to_numpy())
    assert np.array_equal(data["hr_lower"], rows["hr_lower"].to_numpy())
    assert np.array_equal(data["hr_upper"], rows["hr_upper"].to_numpy())
    hr, lo, hi = rows.loc[0, ["hr", "hr_lower", "hr_upper"]]
    assert data["text"][0] == f"{hr:.2f} ({lo:.2f}–{hi:.2f})"
    assert _renderer(fig, "forest-ci").data_source is _renderer(fig, "forest-hr").data_source
    assert isinstance(fig.x_scale, LogScale)
    assert fig.x_range.start < min(1.0, lo) and fig.x_range.end > max(1.0, hi)
    spans = [s for s in fig.center if isinstance(s, Span)]
    assert [s.location for s in spans] == [1.0]
    assert fig.xaxis[0].axis_label == "Hazard ratio (fin)"
    assert fig.title.text == "Hazard ratios (95% CI)"
    sized: Any = forest_figure(fits, "fin", width=500, title="HR")
    assert (sized.width, sized.title.text) == (500, "HR")
    stretched: Any = forest_figure(fits, "fin", width=None)
    assert stretched.sizing_mode == "stretch_width"


def test_forest_covariate_choice(fits: dict[str, CoxResult]) -> None:
    every = _data(forest_figure(fits), "forest-hr")
    expected = [("fin", "naive"), ("fin", "adjusted"), ("age", "adjusted"), ("prio", "adjusted")]
    assert every["y"] == expected
    two = _data(forest_figure(fits, ["prio", "age"]), "forest-hr")
    assert two["y"] == [("prio", "adjusted"), ("age", "adjusted")]
    with pytest.raises(ValueError, match=r"no fit in \['naive', 'adjusted'\].*'nope'"):
        forest_rows(fits, "nope")


def test_forest_plot_is_a_panel_pane(fits: dict[str, CoxResult]) -> None:
    import panel as pn

    pane = forest_plot(fits, "fin", title="Naive vs adjusted")
    assert isinstance(pane, pn.pane.Bokeh)
    assert pane.object.title.text == "Naive vs adjusted"


# ---------------------------------------------------------------------------- standalone
def test_figures_embed_offline(km: KaplanMeierResult, fits: dict[str, CoxResult]) -> None:
    for model in (km_figure(km, labels=LABELS), forest_figure(fits, "fin")):
        page = file_html(model, resources=INLINE, title="survival")
        assert "Bokeh.embed" in page
        # bokeh's own bundle names a MathJax CDN it would use for LaTeX labels (we draw none);
        # outside the script bodies nothing may point to the network
        markup = re.sub(r"<script[^>]*>.*?</script>", "<script></script>", page, flags=re.S)
        assert not re.search(r"https?://", markup)
        assert "$$" not in page.split("Bokeh.embed")[-1]
