"""Overview aggregates, dashboard state (no browser) and the served dashboard (Chromium)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from clinnova_explore import overview
from clinnova_explore.catalog import Catalog
from clinnova_explore.pipeline import BuildResult
from clinnova_explore.viz.overview_state import ALL, OverviewState
from tests.support import CHROMIUM, CHROMIUM_ARGS, need, served_dashboard


@pytest.fixture(scope="module")
def catalog(small_build: BuildResult) -> Catalog:
    return Catalog.load(small_build.catalog_path)


def _sql(cat: Catalog, site: str, query: str) -> list[tuple]:
    con = duckdb.connect(cat.site(site).resolved_location(), read_only=True)
    try:
        return con.sql(query).fetchall()
    finally:
        con.close()


def test_site_summary_matches_independent_sql(catalog: Catalog) -> None:
    df = overview.site_summary(catalog).set_index("site")
    for s in catalog.site_ids:
        ((persons, years),) = _sql(
            catalog,
            s,
            """
            select count(distinct person_id),
                   sum(observation_period_end_date - observation_period_start_date) / 365.25
            from observation_period""",
        )
        assert df.loc[s, "persons"] == persons
        assert df.loc[s, "person_years"] == pytest.approx(years, rel=1e-12)
        ((deaths,),) = _sql(catalog, s, "select count(distinct person_id) from death")
        if 0 < deaths < 5:
            assert pd.isna(df.loc[s, "deaths"]) and df.loc[s, "suppressed"]
        else:
            assert df.loc[s, "deaths"] == deaths


def test_persons_by_disease_counts_descendants(catalog: Catalog) -> None:
    df = overview.persons_by_disease(catalog)
    assert set(df.disease) == set(overview.DISEASES)
    site = catalog.site_ids[2]
    got = df[(df.site == site) & (df.disease == "Multiple sclerosis")].persons.iloc[0]
    ((expected,),) = _sql(
        catalog,
        site,
        f"""
        select count(distinct co.person_id) from condition_occurrence co
        join concept_ancestor ca on ca.descendant_concept_id = co.condition_concept_id
        where ca.ancestor_concept_id = {overview.DISEASES["Multiple sclerosis"]}""",
    )
    assert got == expected > 0


def test_followup_histogram_bins_sum_to_persons(catalog: Catalog) -> None:
    one = overview.followup_histogram(catalog, bin_years=1)
    two = overview.followup_histogram(catalog, bin_years=2)
    persons = overview.site_summary(catalog).set_index("site").persons
    for s in catalog.site_ids:
        fine = one[one.site == s]
        ((expected,),) = _sql(
            catalog,
            s,
            """
            select count(*) from (select person_id,
                sum(observation_period_end_date - observation_period_start_date) / 365.25 as y
                from observation_period group by person_id) where y < 1""",
        )
        first = fine[fine.years_from == 0].persons.iloc[0]
        if pd.isna(first):  # primary (small) or complementary suppression
            assert fine[fine.years_from == 0].suppressed.iloc[0]
        else:
            assert first == expected
        hidden = fine.persons.isna()
        # never exactly one hidden bin: total minus visible bins would reveal it
        assert hidden.sum() != 1
        if hidden.sum() == 0:
            assert fine.persons.sum() == persons[s]
        else:
            assert persons[s] - fine.persons.sum() >= 5
        coarse = two[two.site == s]
        assert len(coarse) < len(fine)
        for r in coarse.itertuples():
            parts = fine[(fine.years_from >= r.years_from) & (fine.years_from < r.years_to)]
            if parts.persons.isna().any():
                assert pd.isna(r.persons) and r.suppressed
            else:
                assert r.persons == parts.persons.sum()
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="bin_years"):
            overview.followup_histogram(catalog, bin_years=bad)


def test_strict_policy_hides_persons_and_what_they_imply(
    small_build: BuildResult, tmp_path: Path
) -> None:
    text = small_build.catalog_path.read_text(encoding="utf-8")
    cdm = small_build.catalog_path.parent / "cdm"
    strict = tmp_path / "data_catalog.yaml"
    strict.write_text(
        text.replace("location: cdm/", f"location: {cdm}/").replace(
            "min_cell_count: 5", "min_cell_count: 100000"
        ),
        encoding="utf-8",
    )
    cat = Catalog.load(strict)
    summ = overview.site_summary(cat)
    assert summ.persons.isna().all() and summ.suppressed.all()
    assert summ.person_years.isna().all() and summ.median_followup_years.isna().all()
    st = OverviewState(cat)
    assert st.totals() == {"sites": 5.0, "persons": 0.0, "person_years": 0.0}
    assert overview.persons_by_disease(cat).persons.isna().all()
    cat.close()


def test_state_site_filter_changes_totals(catalog: Catalog) -> None:
    st = OverviewState(catalog)
    full = st.totals()
    assert full["sites"] == 5
    st.sites = catalog.site_ids[:2]
    part = st.totals()
    assert part["sites"] == 2
    assert 0 < part["persons"] < full["persons"]
    expected = overview.site_summary(catalog, catalog.site_ids[:2]).persons.sum()
    assert part["persons"] == expected


def test_state_disease_filter_restricts_counts(catalog: Catalog) -> None:
    st = OverviewState(catalog)
    assert set(st.disease_counts().disease) == set(overview.DISEASES)
    st.disease = "Crohn's disease"
    assert set(st.disease_counts().disease) == {"Crohn's disease"}
    assert st.totals()["persons"] < OverviewState(catalog, disease=ALL).totals()["persons"]


def test_state_bin_width_and_drilldown(catalog: Catalog) -> None:
    st = OverviewState(catalog)
    n1 = len(st.followup())
    st.bin_years = 3
    assert len(st.followup()) < n1
    st.include_passed = True
    with_passed = st.checks()
    st.include_passed = False
    assert len(st.checks()) <= len(with_passed)
    assert len(with_passed) > 0  # injected faults are found below or above thresholds
    st.drill_site = catalog.site_ids[-1]
    st.include_passed = True
    other = st.checks()
    assert list(other.columns) == list(with_passed.columns)


def test_state_reconciliation_and_coverage(catalog: Catalog) -> None:
    st = OverviewState(catalog, sites=["basel"])
    rec = st.reconciliation()
    assert set(rec.site) == {"basel"}
    assert (rec.rows_in == rec.loaded + rec.quarantined).all()
    cov = st.coverage()
    assert ((cov.coverage > 0.9) & (cov.coverage <= 1.0)).all()


# ------------------------------------------------------------------ browser
@pytest.fixture(scope="module")
def served(
    small_build: BuildResult,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    with served_dashboard(
        "overview", small_build.catalog_path, tmp_path_factory.mktemp("panel")
    ) as url:
        yield url


def _persons(text: str) -> int:
    m = re.search(r"Persons:\s*([\d,]+)", text)
    assert m, text
    return int(m.group(1).replace(",", ""))


@pytest.mark.browser
@pytest.mark.slow
def test_dashboard_in_headless_chromium(served: str, catalog: Catalog, tmp_path: Path) -> None:
    need(CHROMIUM.exists(), f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(served)
        kpi = page.locator(".kpis p")
        kpi.wait_for(timeout=60_000)
        before = _persons(kpi.inner_text())
        assert before == overview.site_summary(catalog).persons.sum()
        page.locator(".site-picker button", has_text=catalog.site_ids[0]).click()
        deadline = time.monotonic() + 30
        while _persons(kpi.inner_text()) == before and time.monotonic() < deadline:
            time.sleep(0.2)
        after = _persons(kpi.inner_text())
        assert after == overview.site_summary(catalog, catalog.site_ids[1:]).persons.sum()
        page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
        browser.close()
    assert not errors, errors
