"""The survival dashboard: its views show refusals as messages (no browser), and the served page
in headless Chromium draws the Kaplan-Meier plot and redraws it when the stratification changes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import panel as pn
import pytest

from clinnova_explore.analysis.survival.presets import comparison
from clinnova_explore.catalog import Catalog
from clinnova_explore.pipeline import BuildResult
from clinnova_explore.viz import survival_views as views
from clinnova_explore.viz.survival_state import SurvivalState, arm_labels
from tests.characterize_reference import catalog_copy
from tests.support import CHROMIUM, CHROMIUM_ARGS, need, served_dashboard

RELAXED = {"*": {"min_cell_count": 1, "min_cohort_size": 1, "max_params_per_obs": 1.0}}


def test_refusals_show_as_messages(small_build: BuildResult, tmp_path: Path) -> None:
    cat = Catalog.load(
        catalog_copy(small_build, tmp_path, {"*": {"allowed_analyses": ["x"]}}, ["basel"])
    )
    state = SurvivalState(cat)
    shown = [views.km_tab(state)(), views.effects_tab(state)(), views.balance_tab(state)()]
    cat.close()
    for pane in shown:
        assert isinstance(pane, pn.pane.Alert)
        assert "refused" in pane.object and "allowed_analyses" in pane.object
        assert "Traceback" not in pane.object


def test_title_names_the_arms(small_build: BuildResult) -> None:
    cat = Catalog.load(small_build.catalog_path)
    state = SurvivalState(cat, disease="ra")
    title = views.title_markdown(state)()
    cat.close()
    labels = arm_labels(comparison("ra_anti_tnf_vs_other_moa"))
    assert f"**Target:** {labels[1]}" in title.object
    assert f"**Comparator:** {labels[0]}" in title.object


@pytest.fixture(scope="module")
def served(small_build: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = catalog_copy(small_build, tmp_path_factory.mktemp("relaxed"), RELAXED)
    with served_dashboard("survival", path, tmp_path_factory.mktemp("panel-survival")) as url:
        yield url


_RISK_GROUPS = """() => {
  for (const doc of window.Bokeh ? window.Bokeh.documents : []) {
    for (const model of doc.all_models) {
      if (model.name === "risk-table") {
        const data = model.data_source.data;
        const groups = data instanceof Map ? data.get("group") : data.group;
        return Array.from(new Set(groups));
      }
    }
  }
  return null;
}"""


def _wait_for(page: Any, want: set[str], timeout: float) -> set[str]:
    deadline = time.monotonic() + timeout
    groups: set[str] = set()
    while time.monotonic() < deadline:
        groups = set(page.evaluate(_RISK_GROUPS) or [])
        if groups == want:
            break
        time.sleep(0.5)
    return groups


@pytest.mark.browser
@pytest.mark.slow
def test_km_plot_renders_and_follows_the_stratification(
    served: str, small_build: BuildResult, tmp_path: Path
) -> None:
    need(CHROMIUM.exists(), f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    arms = set(arm_labels(comparison("ms_high_efficacy_vs_platform")).values())
    sites = set(small_build.truth["sites"])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(served)
        page.locator(".km-plot canvas").first.wait_for(timeout=180_000)
        assert _wait_for(page, arms, 180) == arms  # generous: the first view is slow under load
        logrank = page.locator(".logrank p")
        first = logrank.inner_text()
        assert "treatment groups" in first and "1 df" in first
        page.locator(".stratify-by button", has_text="Site").click()
        assert _wait_for(page, sites, 120) == sites
        deadline = time.monotonic() + 30
        while "site groups" not in logrank.inner_text() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert f"{len(sites) - 1} df" in logrank.inner_text()
        page.screenshot(path=str(tmp_path / "survival.png"), full_page=True)
        browser.close()
    assert not errors, errors
