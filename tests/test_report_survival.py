"""The scripted survival report: config validation, offline HTML, the numbers it shows, the CLI,
and the page in headless Chromium with the network blocked."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from bokeh.plotting import figure
from typer.testing import CliRunner

from clinnova_explore.catalog import PROJECT_ROOT, Catalog
from clinnova_explore.cli import app
from clinnova_explore.pipeline import BuildResult
from clinnova_explore.report import (
    ReportConfigError,
    build_survival_report,
    external_references,
    load_report_config,
)
from clinnova_explore.report.html import Section, render_page, table_html
from tests.characterize_reference import catalog_copy
from tests.support import CHROMIUM, CHROMIUM_ARGS, need

OPEN = {"*": {"min_cell_count": 1, "min_cohort_size": 1, "max_params_per_obs": 1.0}}
PRESET = "ms_high_efficacy_vs_platform"


def write_config(folder: Path, **keys: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.yaml"
    path.write_text(yaml.safe_dump(keys, sort_keys=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------------- config


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    """A syntactically valid catalog file (the config check does not open its sites)."""
    path = tmp_path / "cat" / "data_catalog.yaml"
    path.parent.mkdir()
    path.write_text("sites:\n  - {id: a, name: A, country: LU, location: a.duckdb}\n")
    return path


def test_config_resolves_the_catalog_relative_to_the_config_file(
    tmp_path: Path, catalog_file: Path
) -> None:
    cfg = load_report_config(
        write_config(tmp_path / "reports", catalog="../cat/data_catalog.yaml", comparison=PRESET)
    )
    assert cfg.catalog == catalog_file.resolve()
    assert (cfg.adjustment, cfg.mode, cfg.times) == ("iptw", "federated", (365, 730, 1095))


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"comparison": PRESET, "adjustmnt": "iptw"}, "unknown key `adjustmnt`"),
        ({"comparison": PRESET, "adjustment": "ipw"}, "key `adjustment`"),
        ({"comparison": PRESET, "mode": "central"}, "key `mode`"),
        ({"comparison": PRESET, "times": [730, 365]}, "key `times`: give increasing"),
        ({"comparison": PRESET, "times": []}, "key `times`"),
        ({"comparison": PRESET, "covariates": ["age", "age"]}, "key `covariates`"),
        ({}, "key `comparison` is required"),
        ({"comparison": ""}, "key `comparison`"),
    ],
)
def test_bad_config_names_the_key_and_the_file(
    tmp_path: Path, catalog_file: Path, keys: dict[str, Any], expected: str
) -> None:
    path = write_config(tmp_path, catalog=str(catalog_file), **keys)
    with pytest.raises(ReportConfigError) as err:
        load_report_config(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_missing_catalog_not_yaml_and_missing_file_are_clear(tmp_path: Path) -> None:
    path = write_config(tmp_path, catalog="nowhere.yaml", comparison=PRESET)
    with pytest.raises(ReportConfigError, match=r"key `catalog`: catalog file .*nowhere.yaml"):
        load_report_config(path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("catalog: [unclosed\n")
    with pytest.raises(ReportConfigError, match="not valid YAML"):
        load_report_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ReportConfigError, match="expected a mapping"):
        load_report_config(bad)
    with pytest.raises(ReportConfigError, match="not found"):
        load_report_config(tmp_path / "absent.yaml")


def test_shipped_example_config_is_valid_and_points_at_the_demo() -> None:
    from clinnova_explore.report.config import SurvivalReportConfig

    path = PROJECT_ROOT / "reports" / "ms_survival.yaml"
    cfg = SurvivalReportConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert (path.parent / cfg.catalog).resolve() == PROJECT_ROOT / "demo" / "data_catalog.yaml"
    assert cfg.comparison == PRESET


# ---------------------------------------------------------------------- html


@pytest.mark.parametrize(
    "planted",
    [
        '<script src="https://cdn.example.org/bokeh.js"></script>',
        '<link rel="stylesheet" href="style.css">',
        "<style>@import url('https://fonts.googleapis.com/css2?family=X');</style>",
        "<style>body { background: url(http://example.org/bg.png); }</style>",
        '<img src="//example.org/x.png">',
        '<div style="background-image: url(https://example.org/a.png)"></div>',
        "<p>see https://example.org/page</p>",
        '<script type="application/json">{"url": "https://example.org/tile"}</script>',
    ],
)
def test_external_references_finds_each_kind_of_reference(planted: str) -> None:
    page = render_page("t", [Section("s", "S", body="<p>ok</p>")])
    assert external_references(page) == []
    assert external_references(page.replace("<p>ok</p>", planted))


def test_render_page_inlines_bokeh_and_escapes_text() -> None:
    import panel  # noqa: F401  (registers models whose files bokeh would add to every page)

    fig = figure(width=200, height=150)
    fig.line([0, 1], [1, 0])
    frame = pd.DataFrame({"name": ["<b>x</b>"], "value": [float("nan")]})
    page = render_page("A & B", [Section("s-1", "T<1>", body=table_html(frame), plots=(fig,))])
    assert external_references(page) == []
    assert "<title>A &amp; B</title>" in page and "T&lt;1&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<td>—</td>" in page
    assert re.search(r'data-root-id="[^"]+"', page)  # the figure's root is embedded
    assert "Bokeh.embed" in page and "<script src" not in page


def test_tables_format_counts_and_keep_the_rule_order() -> None:
    from clinnova_explore.report.sections import _counts_wide

    attrition = pd.DataFrame(
        {
            "site": ["a", "a", "overall", "overall"],
            "rule": ["2. later", "10. last", "2. later", "10. last"],
            "persons": pd.array([1234, None, 5000, 12], dtype="Int64"),
        }
    )
    wide = _counts_wide(attrition, "rule")
    parser = _Tables()
    parser.feed(table_html(wide, index=False))
    assert parser.tables == [
        [["rule", "a", "overall"], ["2. later", "1,234", "5,000"], ["10. last", "—", "12"]]
    ]
    floats = pd.DataFrame({"v": [1234.5, 0.000123456, 3.14159, 2.0]})
    parser = _Tables()
    parser.feed(table_html(floats, index=False))
    assert [r[0] for r in parser.tables[0][1:]] == ["1,234", "0.000123", "3.14", "2"]


# ---------------------------------------------------------------------- browser


@dataclass
class Plot:
    """One embedded plot as the browser drew it."""

    canvases: list[dict[str, float]]  # bounding boxes of its canvases (in shadow roots)
    inked: float  # share of its pixels that are not white


@dataclass
class Opened:
    """What happened when a page was opened offline in Chromium."""

    requests: list[str]  # every URL the page asked for
    blocked: list[str]  # requests the route aborted (anything but file:// and data:)
    errors: list[str]  # console errors and uncaught exceptions
    plots: list[Plot]  # each div.plot of the page


def _inked(png: bytes) -> float:
    import io

    from PIL import Image

    gray = Image.open(io.BytesIO(png)).convert("L")
    histogram = gray.histogram()
    return 1 - sum(histogram[250:]) / max(sum(histogram), 1)


def open_offline(path: Path, screenshot: Path, *, plots: int) -> Opened:
    """Open ``path`` in headless Chromium with every non-file request aborted; wait until
    ``plots`` plot containers hold a canvas, then measure each plot."""
    need(CHROMIUM.exists(), f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import Route, sync_playwright

    requests: list[str] = []
    blocked: list[str] = []
    errors: list[str] = []

    def route(r: Route) -> None:
        if r.request.url.startswith(("file://", "data:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1300, "height": 1000})
            context.route("**/*", route)
            page = context.new_page()
            page.on("request", lambda req: requests.append(req.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri(), wait_until="load")
            containers = page.locator("div.plot")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                # Playwright's CSS locators pierce the shadow roots bokeh draws into
                with_canvas = sum(
                    containers.nth(i).locator("canvas").count() > 0
                    for i in range(containers.count())
                )
                if with_canvas >= plots:
                    break
                time.sleep(0.2)
            page.wait_for_timeout(500)
            seen = []
            for i in range(containers.count()):
                box = containers.nth(i)
                canvas = box.locator("canvas")
                boxes = [canvas.nth(j).bounding_box() for j in range(canvas.count())]
                inked = _inked(box.screenshot()) if box.is_visible() else 0.0
                rects = [b for b in boxes if b]
                seen.append(
                    Plot([{k: b[k] for k in ("x", "y", "width", "height")} for b in rects], inked)
                )
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return Opened(requests, blocked, errors, seen)


def drawn(plot: Plot) -> bool:
    """The plot has a canvas of real size and visibly drawn content."""
    return any(b["width"] > 100 and b["height"] > 50 for b in plot.canvases) and plot.inked > 0.01


@pytest.mark.browser
def test_harness_sees_a_blocked_request_a_drawn_plot_and_an_empty_one(tmp_path: Path) -> None:
    """The checks of the report's browser test can fail: a planted external script is seen and
    blocked, a bokeh figure is found drawn and an empty plot container is not."""
    fig = figure(width=300, height=200)
    fig.line([0, 1], [1, 0])
    page = render_page("t", [Section("s", "S", plots=(fig,))])
    planted = page.replace("</head>", '<script src="https://cdn.example.org/x.js"></script></head>')
    planted = planted.replace("</section>", "<div class='plot'></div></section>")
    path = tmp_path / "page.html"
    path.write_text(planted, encoding="utf-8")
    opened = open_offline(path, tmp_path / "page.png", plots=1)
    assert opened.blocked == ["https://cdn.example.org/x.js"]
    assert [drawn(p) for p in opened.plots] == [True, False]


# ---------------------------------------------------------------------- the report on a build


class _Tables(HTMLParser):
    """Rows of cell texts of every ``<table>`` in a section of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def section(page: str, id: str) -> str:
    """The HTML of one section of a report page."""
    found = re.search(rf'<section id="{id}">(.*?)</section>', page, re.S)
    assert found, f"no section {id!r}"
    return found.group(1)


def tables(page: str, id: str) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(section(page, id))
    return parser.tables


def row(table: list[list[str]], first: str) -> list[str]:
    hits = [r for r in table if r and r[0] == first]
    assert len(hits) == 1, (first, table)
    return hits[0]


def ci(h: float, lo: float, hi: float) -> str:
    return f"{h:.3f} ({lo:.3f}–{hi:.3f})"


@dataclass
class Built:
    page: str
    path: Path
    rows: pd.DataFrame  # every site's time-to-event rows (the reference's input)
    labels: dict[int, str]


@pytest.fixture(scope="module")
def built(small_build: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The IPTW report, federated over the small build with every site's policy open (the
    propensity model has 9 parameters for sites of 20-50 persons)."""
    from clinnova_explore.analysis.survival.presets import comparison
    from clinnova_explore.analysis.survival.tte import time_to_event
    from clinnova_explore.cohort import builtin_definition

    folder = tmp_path_factory.mktemp("report")
    cat_path = catalog_copy(small_build, folder / "catalog", OPEN)
    config = write_config(
        folder / "reports",
        catalog="../catalog/data_catalog.yaml",
        comparison=PRESET,
        adjustment="iptw",
        times=[365, 730, 1095],
        title="MS report <test>",
    )
    page = build_survival_report(config)
    path = folder / "report.html"
    path.write_text(page, encoding="utf-8")
    spec = comparison(PRESET)
    catalog = Catalog.load(cat_path)
    rows = pd.concat([time_to_event(s, spec).to_pandas() for s in catalog], ignore_index=True)
    catalog.close()
    assert isinstance(spec.target, str) and isinstance(spec.comparator, str)
    labels = {
        1: builtin_definition(spec.target).name,
        0: builtin_definition(spec.comparator).name,
    }
    return Built(page, path, rows, labels)


@pytest.mark.slow
def test_report_is_self_contained_and_has_every_section(built: Built) -> None:
    assert external_references(built.page) == []
    assert "<title>MS report &lt;test&gt;</title>" in built.page
    for id in ("parameters", "attrition", "table1", "km", "cox", "balance", "provenance"):
        assert section(built.page, id)
    assert "Not available" not in built.page


@pytest.mark.slow
def test_attrition_and_table1_show_the_arms(built: Built) -> None:
    persons = built.rows[["site", "person_id", "treatment"]].drop_duplicates()
    assert not persons.duplicated(["site", "person_id"]).any()  # person ids are per site
    arms = persons.groupby("treatment").size()
    tte = tables(built.page, "attrition")[-1]
    at_risk = row(tte, "At least one day at risk")
    assert at_risk[-1] == f"{len(persons):,}"  # the overall column
    per_site = persons.groupby("site").size()
    header = tte[0]
    for site, n in per_site.items():
        assert at_risk[header.index(site)] == f"{n:,}"
    assert row(tte, "Target cohort")[-1] == f"{arms[1]:,}"
    assert row(tte, "Comparator cohort")[-1] == f"{arms[0]:,}"
    shown = [r for t in tables(built.page, "table1") for r in t if r and r[0] == "Persons"]
    assert shown and shown[0][1:3] == [f"{arms[1]}", f"{arms[0]}"]


@pytest.mark.slow
def test_km_and_cox_match_lifelines_and_statsmodels(built: Built) -> None:
    """Survival, log-rank p, the naive HR and the IPTW HR shown equal independent fits."""
    import numpy as np
    import statsmodels.api as sm
    from lifelines import CoxPHFitter, KaplanMeierFitter
    from lifelines.statistics import logrank_test

    df = built.rows.assign(outcome=(built.rows.event == 1).astype(int))
    km = tables(built.page, "km")
    for arm, label in built.labels.items():
        part = df[df.treatment == arm]
        kmf = KaplanMeierFitter().fit(part.duration, part.outcome)
        shown = row(km[0], label)
        for day, cell in zip([365, 730, 1095], shown[1:4], strict=True):
            assert cell.startswith(f"{float(kmf.survival_function_at_times(day).iloc[0]):.3f} (")
    a, b = df[df.treatment == 1], df[df.treatment == 0]
    p = logrank_test(a.duration, b.duration, a.outcome, b.outcome).p_value
    assert f"p = {p:.3g}" in section(built.page, "km")

    data = df[["duration", "outcome", "treatment", "site"]]
    naive = CoxPHFitter().fit(
        data, "duration", "outcome", strata=["site"], fit_options={"precision": 1e-12}
    )
    covs = ["baseline_edss", "prior_relapses", "age", "female"]
    sites = pd.get_dummies(df.site, drop_first=True, dtype=float)
    x = sm.add_constant(pd.concat([df[covs].astype(float), sites], axis=1))
    ps = sm.Logit(df.treatment, x).fit(disp=0, tol=1e-12).predict(x)
    share = df.treatment.mean()
    w = np.where(df.treatment == 1, share / ps, (1 - share) / (1 - ps))
    iptw = CoxPHFitter().fit(
        data.assign(w=w),
        "duration",
        "outcome",
        strata=["site"],
        weights_col="w",
        robust=True,
        fit_options={"precision": 1e-12},
    )
    cox = row(tables(built.page, "cox")[0], "treatment")
    for fit, cell in ((naive, cox[1]), (iptw, cox[3])):
        s = fit.summary.loc["treatment"]
        expected = ci(s["exp(coef)"], s["exp(coef) lower 95%"], s["exp(coef) upper 95%"])
        assert cell == expected
    assert float(cox[2]) == pytest.approx(naive.summary.loc["treatment", "p"], rel=2e-3)

    before = row(tables(built.page, "balance")[0], "baseline_edss")
    e1, e0 = df[df.treatment == 1].baseline_edss, df[df.treatment == 0].baseline_edss
    smd = (e1.mean() - e0.mean()) / math.sqrt((e1.var() + e0.var()) / 2)
    assert before[4] == f"{smd:.3g}"


@pytest.mark.browser
@pytest.mark.slow
def test_report_opens_offline_in_chromium_and_draws_every_plot(
    built: Built, tmp_path: Path
) -> None:
    """Network blocked: nothing but the file itself is requested, there are no console errors,
    and the two Kaplan-Meier plots (each a curve and a risk table), the forest plot and the
    love plot are drawn."""
    opened = open_offline(built.path, tmp_path / "report.png", plots=4)
    assert opened.blocked == []
    assert all(u.startswith(("file://", "data:")) for u in opened.requests), opened.requests
    assert opened.errors == []
    assert len(opened.plots) == 4 and all(drawn(p) for p in opened.plots)
    for km in opened.plots[:2]:  # curves above a risk table
        tops = sorted({b["y"] for b in km.canvases if b["height"] > 50})
        assert len(tops) == 2, km.canvases


# ---------------------------------------------------------------------- comparison and CLI


def test_comparison_preset_or_inline_spec_and_clear_errors(tmp_path: Path) -> None:
    from clinnova_explore.analysis.survival.presets import comparison
    from clinnova_explore.report.survival import resolve_comparison

    assert resolve_comparison(PRESET) == comparison(PRESET)
    inline = comparison(PRESET).to_dict()
    assert resolve_comparison(inline) == comparison(PRESET)
    where = tmp_path / "r.yaml"
    with pytest.raises(
        ReportConfigError,
        match=rf"{re.escape(str(where))}: key `comparison`: "
        r"no preset 'ms_nope'.*ms_high_efficacy_vs_platform",
    ):
        resolve_comparison("ms_nope", source=where)
    with pytest.raises(ReportConfigError, match=r"key `comparison`.*unknown key\(s\) outcom"):
        resolve_comparison({**inline, "outcom": "x"}, source=where)
    with pytest.raises(ReportConfigError, match="no `comparator`"):
        resolve_comparison({**inline, "comparator": None}, source=where)


runner = CliRunner()


def test_cli_bad_config_exits_2_naming_key_and_file(tmp_path: Path, catalog_file: Path) -> None:
    path = write_config(tmp_path, catalog=str(catalog_file), comparison=PRESET, colour="red")
    out = runner.invoke(
        app,
        ["report", "survival", "--config", str(path), "-o", str(tmp_path / "r.html")],
        env={"COLUMNS": "300"},
    )
    assert out.exit_code == 2, out.output
    assert "unknown key `colour`" in out.output and str(path) in out.output
    assert not (tmp_path / "r.html").exists()
    help_text = runner.invoke(app, ["report", "survival", "--help"], env={"COLUMNS": "200"})
    assert help_text.exit_code == 0 and "clinnova-explore report survival" in help_text.output


@pytest.mark.slow
def test_cli_writes_a_pooled_naive_report_under_the_default_policy(
    small_build: BuildResult, built: Built, tmp_path: Path
) -> None:
    """Each setting changes what it should: pooled mode has only an overall column, the naive
    adjustment has no adjusted model, curve or balance section, the times set the columns, and
    the default policy's suppressions are listed in the provenance."""
    config = write_config(
        tmp_path,
        catalog=str(small_build.catalog_path),
        comparison=PRESET,
        adjustment="naive",
        mode="pooled",
        times=[180, 540],
    )
    out = tmp_path / "out" / "naive.html"
    result = runner.invoke(
        app, ["report", "survival", "--config", str(config), "-o", str(out)], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    page = out.read_text(encoding="utf-8")
    assert external_references(page) == []
    assert '<section id="balance">' not in page and '<section id="balance">' in built.page
    tte = tables(page, "attrition")[-1]
    assert tte[0] == ["step", "overall"]
    federated = row(tables(built.page, "attrition")[-1], "At least one day at risk")
    assert row(tte, "At least one day at risk") == [federated[0], federated[-1]]
    km = tables(page, "km")
    assert len(km) == 1 and km[0][0][:3] == ["group", "day 180", "day 540"]
    cox = tables(page, "cox")[0]
    assert cox[0] == ["covariate", "naive / HR (95% CI)", "naive / p"]
    assert row(cox, "treatment")[1] == row(tables(built.page, "cox")[0], "treatment")[1]
    provenance = section(page, "provenance")
    assert "<td>pooled</td>" in provenance
    suppressed = re.search(r"<h3>Suppressed cells</h3><details>(.*?)</details>", provenance, re.S)
    assert suppressed and "merged" in suppressed.group(1)
    assert "<h3>Suppressed cells</h3><p>none</p>" in section(built.page, "provenance")


def test_covariates_key_sets_the_adjustment_covariates(tmp_path: Path, catalog_file: Path) -> None:
    from clinnova_explore.analysis.survival.presets import comparison
    from clinnova_explore.report.effects import adjustment_covariates

    spec = comparison(PRESET)
    default = load_report_config(
        write_config(tmp_path, catalog=str(catalog_file), comparison=PRESET)
    )
    assert adjustment_covariates(default, spec) == [
        *(c.name for c in spec.covariates),
        "age",
        "female",
    ]
    chosen = load_report_config(
        write_config(
            tmp_path, catalog=str(catalog_file), comparison=PRESET, covariates=["age", "female"]
        )
    )
    assert adjustment_covariates(chosen, spec) == ["age", "female"]


@pytest.mark.slow
def test_a_refused_model_is_reported_in_its_section(
    small_build: BuildResult, tmp_path: Path
) -> None:
    """Under the default policy (at most 0.1 parameters per person) every site refuses the
    9-parameter propensity model: the Cox section says so and names the rule, there is no
    balance section, and the rest of the report is still written."""
    config = write_config(tmp_path, catalog=str(small_build.catalog_path), comparison=PRESET)
    page = build_survival_report(config)
    assert external_references(page) == []
    cox = section(page, "cox")
    assert "Not available" in cox and "max_params_per_obs" in cox
    assert '<section id="balance">' not in page
    assert "Not available" not in section(page, "km") + section(page, "table1")
    assert len(tables(page, "km")) == 1  # the unadjusted curves only
