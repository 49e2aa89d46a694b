"""The served cohort dashboard in headless Chromium: editing a criterion changes the site counts
to what the library computes for the edited definition."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from clinnova_explore.analysis.counts import count_cohort
from clinnova_explore.catalog import Catalog
from clinnova_explore.cohort import builtin_definition
from clinnova_explore.pipeline import BuildResult
from clinnova_explore.viz.cohort_edits import with_prior_days
from tests.support import CHROMIUM, CHROMIUM_ARGS, need, served_dashboard


@pytest.fixture(scope="module")
def served(small_build: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served_dashboard(
        "cohorts", small_build.catalog_path, tmp_path_factory.mktemp("panel-cohorts")
    ) as url:
        yield url


def _shown(text: str) -> dict[str, int | None]:
    """``{site: persons}`` from the counts line; a suppressed or refused count is ``None``.

    Empty while the page re-renders the line.
    """
    found = re.findall(r"(\w+): ([\d,]+|suppressed|refused)", text)
    return {site: int(n.replace(",", "")) if n[0].isdigit() else None for site, n in found}


def _expected(summary: pd.DataFrame) -> dict[str, int | None]:
    return {r.site: None if pd.isna(r.persons) else int(r.persons) for r in summary.itertuples()}


@pytest.mark.browser
@pytest.mark.slow
def test_editing_prior_observation_updates_site_counts(
    served: str, small_build: BuildResult, tmp_path: Path
) -> None:
    need(CHROMIUM.exists(), f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    catalog = Catalog.load(small_build.catalog_path)
    start = builtin_definition("ms_high_efficacy_start")
    before = _expected(count_cohort(start, catalog).summary)
    after = _expected(count_cohort(with_prior_days(start, 0), catalog).summary)
    assert after["overall"] is not None and before["overall"] is not None
    assert after["overall"] > before["overall"]  # dropping the requirement admits persons

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(served)
        counts = page.locator(".cohort-counts p")
        counts.wait_for(timeout=120_000)
        deadline = time.monotonic() + 60
        while not _shown(counts.inner_text()) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _shown(counts.inner_text()) == before
        prior = page.locator(".prior-days input")
        assert prior.input_value() == "365"
        prior.fill("0")
        prior.press("Enter")
        deadline = time.monotonic() + 60
        while _shown(counts.inner_text()) in (before, {}) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _shown(counts.inner_text()) == after
        page.screenshot(path=str(tmp_path / "cohorts.png"), full_page=True)
        browser.close()
    catalog.close()
    assert not errors, errors
