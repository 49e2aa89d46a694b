"""The survival dashboard's state without a browser, on the 800-person federation: every number
equals an independent computation (lifelines on the time-to-event rows fetched site by site),
every control changes what it should, results are cached, and failures come back as messages.

The 800-person federation is too small for the default disclosure policy's propensity model
(``max_params_per_obs``), so most tests use a catalog copy with a relaxed policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test

from clinnova_explore.analysis.effects import EffectResult, compare_treatments
from clinnova_explore.analysis.survival.cox import CoxResult
from clinnova_explore.analysis.survival.km import KaplanMeierResult
from clinnova_explore.analysis.survival.logrank import LogrankResult
from clinnova_explore.analysis.survival.presets import comparison
from clinnova_explore.analysis.survival.tte import time_to_event
from clinnova_explore.catalog import Catalog
from clinnova_explore.pipeline import BuildResult
from clinnova_explore.viz.survival_state import Problem, SurvivalState, age_group, arm_labels
from tests.characterize_reference import catalog_copy

MS = "ms_high_efficacy_vs_platform"
RELAXED = {"min_cell_count": 1, "min_cohort_size": 1, "max_params_per_obs": 1.0}


@pytest.fixture(scope="module")
def catalog(
    small_build: BuildResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Catalog]:
    cat = Catalog.load(
        catalog_copy(small_build, tmp_path_factory.mktemp("relaxed"), {"*": RELAXED})
    )
    yield cat
    cat.close()


@pytest.fixture(scope="module")
def state(catalog: Catalog) -> SurvivalState:
    return SurvivalState(catalog)


@pytest.fixture(scope="module")
def rows(state: SurvivalState) -> pd.DataFrame:
    """The MS comparison's rows as the sites hold them, with the outcome and an age band
    recomputed here by hand."""
    state.comparison = MS
    fed = state.federation()
    assert not isinstance(fed, Problem)
    df = pd.concat([site.frame() for site in fed.sites], ignore_index=True)
    df = df.drop(columns=["outcome", "age_group"])
    df["outcome"] = (df["event"] == 1).astype(int)
    decade = np.clip(np.floor(df["age"] / 10) * 10, 20, 60).astype(int)
    df["age_band"] = decade.map({20: "<30", 30: "30-39", 40: "40-49", 50: "50-59", 60: "60+"})
    return df


def test_sites_hold_the_comparison_rows(catalog: Catalog, rows: pd.DataFrame) -> None:
    """The rows each site holds are its time-to-event table (one site queried here)."""
    site = catalog.site("basel")
    ref = time_to_event(site, comparison(MS)).to_pandas()
    held = rows[rows["site"] == "basel"].drop(columns=["outcome", "age_band"])
    pd.testing.assert_frame_equal(
        held.sort_values("person_id").reset_index(drop=True),
        ref.sort_values("person_id").reset_index(drop=True),
    )


def _ok(value: Any, kind: type) -> Any:
    assert not isinstance(value, Problem), value.message
    assert isinstance(value, kind)
    return value


COLUMN = {"treatment": "treatment", "site": "site", "sex": "sex", "age_group": "age_band"}


@pytest.mark.parametrize("by", list(COLUMN))
def test_km_and_logrank_match_lifelines(state: SurvivalState, rows: pd.DataFrame, by: str) -> None:
    state.param.update(comparison=MS, mode="federated", stratify_by=by)
    km = _ok(state.km(), KaplanMeierResult)
    col = COLUMN[by]
    assert sorted(map(str, km.groups)) == sorted(map(str, rows[col].unique()))
    for group, part in km.summary.groupby("group"):
        ref = rows[rows[col].astype(str) == str(group)]
        kmf = KaplanMeierFitter().fit(ref["duration"], ref["outcome"])
        expected = kmf.survival_function_at_times(part["time"]).to_numpy()
        assert np.allclose(part["survival"], expected, atol=1e-10)
    test = _ok(state.logrank(), LogrankResult)
    ref_test = multivariate_logrank_test(rows["duration"], rows[col], rows["outcome"])
    assert test.df == rows[col].nunique() - 1
    assert test.p_value == pytest.approx(ref_test.p_value, rel=1e-8)
    assert test.statistic == pytest.approx(ref_test.test_statistic, rel=1e-8)


def test_km_labels_name_the_arms(state: SurvivalState) -> None:
    state.param.update(comparison=MS, stratify_by="treatment")
    assert state.km_labels() == {1: "first DMT high-efficacy", 0: "first DMT platform"}
    assert state.km_labels() == arm_labels(comparison(MS))
    state.stratify_by = "site"
    assert state.km_labels() == {}


def test_naive_hazard_ratio_matches_lifelines(state: SurvivalState, rows: pd.DataFrame) -> None:
    state.param.update(comparison=MS, mode="federated")
    naive = _ok(state.naive(), CoxResult)
    ref = CoxPHFitter().fit(
        rows[["duration", "outcome", "treatment", "site"]],
        duration_col="duration",
        event_col="outcome",
        strata=["site"],
        fit_options={"precision": 1e-12},
    )
    assert naive.summary.loc["treatment", "coef"] == pytest.approx(
        ref.params_["treatment"], abs=1e-6
    )
    assert naive.summary.loc["treatment", "se"] == pytest.approx(
        ref.standard_errors_["treatment"], rel=1e-6
    )
    assert (naive.n, naive.events) == (len(rows), int(rows["outcome"].sum()))


def test_pooled_mode_equals_federated(state: SurvivalState) -> None:
    state.param.update(comparison=MS, stratify_by="treatment", adjustment="iptw")
    results = {}
    for mode in ("federated", "pooled"):
        state.mode = mode
        km = _ok(state.km(), KaplanMeierResult)
        fits = _ok(state.forest_fits(), dict)
        assert km.provenance is not None and km.provenance.mode == mode
        results[mode] = (km, fits)
    (fed_km, fed_fits), (pool_km, pool_fits) = results["federated"], results["pooled"]
    pd.testing.assert_frame_equal(fed_km.summary, pool_km.summary, rtol=1e-10)
    for name in ("naive", "IPTW"):
        assert fed_fits[name].summary.loc["treatment", "hr"] == pytest.approx(
            pool_fits[name].summary.loc["treatment", "hr"], rel=1e-8
        )
    state.mode = "federated"


@pytest.mark.parametrize(("method", "label"), [("iptw", "IPTW"), ("match", "Matching")])
def test_adjustment_matches_the_pandas_analysis(
    state: SurvivalState, rows: pd.DataFrame, method: str, label: str
) -> None:
    state.param.update(comparison=MS, mode="federated", adjustment=method)
    fits = _ok(state.forest_fits(), dict)
    assert list(fits) == ["naive", label]
    effect = _ok(state.effect(), EffectResult)
    assert fits[label] is effect.adjusted
    ref = compare_treatments(
        rows,
        treatment="treatment",
        duration="duration",
        event="outcome",
        covariates=["baseline_edss", "prior_relapses", "age", "female"],
        method=method,  # type: ignore[arg-type]
        strata="site",
    )
    got = effect.summary.loc[method, ["hr", "hr_lower", "hr_upper"]].to_numpy(dtype=float)
    want = ref.summary.loc[method, ["hr", "hr_lower", "hr_upper"]].to_numpy(dtype=float)
    assert np.allclose(got, want, rtol=1e-6)
    assert effect.n_adjusted == ref.n_adjusted
    pd.testing.assert_frame_equal(effect.balance, ref.balance, rtol=1e-6, check_dtype=False)


def test_adjusted_curves_come_from_the_adjusted_analysis(state: SurvivalState) -> None:
    state.param.update(comparison=MS, mode="federated", stratify_by="treatment", adjustment="iptw")
    plain = _ok(state.km(), KaplanMeierResult)
    state.adjusted_curves = True
    assert state.shows_adjusted_curves()
    effect = _ok(state.effect(), EffectResult)
    weighted = _ok(state.km(), KaplanMeierResult)
    assert weighted is effect.km
    assert not np.allclose(
        weighted.at([365, 730])["survival"], plain.at([365, 730])["survival"], atol=1e-3
    )
    assert isinstance(state.logrank(), Problem)
    state.adjustment = "match"
    matched = _ok(state.km(), KaplanMeierResult)
    assert matched is _ok(state.effect(), EffectResult).km and matched is not weighted
    state.stratify_by = "site"  # the flag applies to treatment curves only
    assert not state.shows_adjusted_curves()
    assert set(_ok(state.km(), KaplanMeierResult).groups) == set(state.catalog.site_ids)
    state.param.update(adjusted_curves=False, stratify_by="treatment", adjustment="iptw")
    assert state.km() is plain


def test_naive_adjustment_shows_one_fit(state: SurvivalState) -> None:
    state.param.update(comparison=MS, mode="federated", adjustment="naive")
    fits = _ok(state.forest_fits(), dict)
    assert list(fits) == ["naive"]
    assert fits["naive"] is state.naive()
    assert state.adjustment_label() == "Naive"


def test_disease_picks_its_comparisons(state: SurvivalState) -> None:
    state.disease = "ra"
    assert state.comparison == "ra_anti_tnf_vs_other_moa"
    assert list(state.param.comparison.objects) == ["ra_anti_tnf_vs_other_moa"]
    assert state.labels()[1] == "first advanced DMARD anti-TNF"
    assert state.covariates() == ["baseline_das28", "prior_flares", "age", "female"]
    state.disease = "ibd"
    assert state.comparison == "ibd_anti_tnf_vs_other_advanced"
    assert "crohns" in state.covariates()
    state.disease = "ms"
    assert state.comparison == MS
    assert state.spec() == comparison(MS)


def test_comparison_chosen_at_construction(catalog: Catalog) -> None:
    ibd = SurvivalState(catalog, comparison="ibd_anti_tnf_vs_other_advanced")
    assert (ibd.disease, ibd.computed()) == ("ibd", [])  # nothing runs before it is asked for
    with pytest.raises(ValueError, match="does not accept"):
        SurvivalState(catalog, disease="ms", comparison="ibd_anti_tnf_vs_other_advanced")
    with pytest.raises(ValueError, match="does not accept"):
        ibd.comparison = MS  # an MS comparison needs disease="ms" first


def test_results_are_cached_per_choice(state: SurvivalState) -> None:
    state.param.update(comparison=MS, mode="federated", stratify_by="sex")
    first = state.km()
    fed = state.federation()
    state.stratify_by = "site"
    by_site = state.km()
    assert by_site is not first
    state.stratify_by = "sex"
    assert state.km() is first  # flipping back reuses the result
    assert state.federation() is fed
    state.mode = "pooled"
    pooled = state.federation()
    assert pooled is not fed and state.federation() is pooled
    assert not isinstance(pooled, Problem) and not isinstance(fed, Problem)
    assert [s.id for s in pooled.sites] == ["pooled"]
    assert pooled.source_ids == fed.source_ids
    state.mode = "federated"
    assert state.km() is first
    assert {"federation", "km"} <= set(state.computed())


def test_age_group_bands() -> None:
    ages = pd.Series([18.0, 29.99, 30.0, 39.5, 40.0, 55.0, 60.0, 88.0, np.nan])
    assert age_group(ages).tolist() == [
        "<30",
        "<30",
        "30-39",
        "30-39",
        "40-49",
        "50-59",
        "60+",
        "60+",
        "unknown",
    ]


# ---------------------------------------------------------------------------- failures
@pytest.fixture(scope="module")
def strict_state(
    small_build: BuildResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SurvivalState]:
    """Two sites with the default policy: too few persons per site for the propensity model."""
    path = catalog_copy(
        small_build, tmp_path_factory.mktemp("strict"), {"*": {}}, ["basel", "freiburg"]
    )
    cat = Catalog.load(path)
    yield SurvivalState(cat)
    cat.close()


def test_refused_adjustment_is_a_message(strict_state: SurvivalState) -> None:
    strict_state.adjustment = "iptw"
    effect = strict_state.effect()
    assert isinstance(effect, Problem)
    assert "max_params_per_obs" in effect.message and "basel" in effect.message
    fits = _ok(strict_state.forest_fits(), dict)  # the naive fit is still shown
    assert list(fits) == ["naive"]
    strict_state.stratify_by = "age_group"
    _ok(strict_state.km(), KaplanMeierResult)


def test_refused_survival_is_a_message(small_build: BuildResult, tmp_path: Path) -> None:
    path = catalog_copy(small_build, tmp_path, {"*": {"allowed_analyses": ["cohort"]}}, ["basel"])
    cat = Catalog.load(path)
    refusing = SurvivalState(cat)
    for result in (refusing.km(), refusing.logrank(), refusing.naive(), refusing.effect()):
        assert isinstance(result, Problem)
        assert "refused" in result.message and "basel" in result.message
    cat.close()
    refusing.comparison = None
    assert refusing.km() == Problem("Pick a comparison.")
