"""Treatment effects over a Federation: federated == pooled == pandas, policy, ground truth.

The ground-truth check runs the MS preset (high-efficacy vs platform first DMT) on the
5,000-person demo federation and compares with ``truth.json``: the naive hazard ratio is biased
by confounding by indication, the covariate-adjusted (conditional) Cox model recovers the true
conditional hazard ratio, and the propensity-score methods recover the *marginal* hazard ratio,
which differs from the conditional one because hazard ratios are not collapsible. The marginal
truth is computed here independently by simulating both potential outcomes for every analysed
person from the true outcome model in ``truth.json``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clinnova_explore.analysis.effects import EffectResult, compare_treatments
from clinnova_explore.analysis.effects.federated import MomentsSpec, MomentsStep
from clinnova_explore.analysis.survival.cox import cox
from clinnova_explore.catalog import Catalog, DisclosurePolicy
from clinnova_explore.federated import Federation
from clinnova_explore.pipeline import BuildResult
from tests.test_effects import COVS, simulate

OPEN = DisclosurePolicy(min_cell_count=1, min_cohort_size=1)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return simulate(n=900, seed=11)


@pytest.fixture(scope="module")
def fed(data: pd.DataFrame) -> Federation:
    return Federation.from_tables(
        {s: g.drop(columns="site") for s, g in data.groupby("site")}, policy=OPEN
    )


def run(data: pd.DataFrame | Federation, method: str, **kwargs: object) -> EffectResult:
    return compare_treatments(
        data,
        treatment="treatment",
        duration="duration",
        event="event",
        covariates=COVS,
        method=method,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def assert_same(a: EffectResult, b: EffectResult, rtol: float = 1e-8) -> None:
    pd.testing.assert_frame_equal(a.summary, b.summary, rtol=rtol, check_dtype=False)
    pd.testing.assert_frame_equal(a.balance, b.balance, rtol=rtol, check_dtype=False)
    pd.testing.assert_series_equal(a.ps_model.coef, b.ps_model.coef, rtol=rtol, check_names=False)
    assert a.equipoise == pytest.approx(b.equipoise, rel=rtol)
    assert (a.n, a.n_adjusted, a.excluded_missing) == (b.n, b.n_adjusted, b.excluded_missing)


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("naive", {}),
        ("regression", {}),
        ("iptw", {}),
        ("iptw", {"trim": (0.1, 0.9)}),
        ("iptw", {"stabilized": False}),
        ("match", {}),
        ("match", {"caliper": 0.05}),
    ],
)
def test_federated_equals_pooled_and_pandas(
    fed: Federation, data: pd.DataFrame, method: str, options: dict[str, object]
) -> None:
    federated = run(fed, method, **options)
    pooled = run(fed.pooled(), method, **options)
    local = run(data, method, **options)
    assert_same(federated, pooled)
    assert_same(federated, local, rtol=1e-6)  # statsmodels fits the pandas propensity model
    assert federated.provenance is not None and federated.provenance.mode == "federated"
    assert pooled.provenance is not None and pooled.provenance.mode == "pooled"
    assert federated.ps_model.scores is None


def test_federated_missing_covariates_counted(data: pd.DataFrame) -> None:
    holes = data.copy()
    holes.loc[holes.index[::30], "x2"] = np.nan
    fed = Federation.from_tables(
        {s: g.drop(columns="site") for s, g in holes.groupby("site")}, policy=OPEN
    )
    result = run(fed, "naive")
    assert result.excluded_missing == int(holes["x2"].isna().sum())
    assert result.n == len(holes) - result.excluded_missing


def test_federated_needs_site_strata(fed: Federation) -> None:
    with pytest.raises(ValueError, match="stratified by site"):
        run(fed, "iptw", strata=None)
    assert run(fed.pooled(), "naive", strata=None).naive.strata is None


def test_moments_step_applies_policy(data: pd.DataFrame) -> None:
    # site "c" has a treated arm of 3 persons: below min_cell_count 5 it refuses
    small = data[data["site"] == "c"].copy()
    small = pd.concat([small[small["treatment"] == 0], small[small["treatment"] == 1].head(3)])
    tables = {"a": data[data["site"] == "a"], "c": small}
    fed = Federation.from_tables(
        tables, policy=DisclosurePolicy(min_cell_count=5, min_cohort_size=10)
    )
    payloads = fed.collect(MomentsStep(), MomentsSpec("treatment", ("x1",)))
    refused = {p.site: p.refused for p in payloads}
    assert refused == {"a": None, "c": "min_cell_count"}
    tiny = Federation.from_tables(
        {"a": data[data["site"] == "a"].head(8)}, policy=DisclosurePolicy(min_cohort_size=10)
    )
    assert tiny.collect(MomentsStep(), MomentsSpec("treatment", ("x1",)))[0].refused == (
        "min_cohort_size"
    )


# --- ground truth on the demo-size federation ---------------------------------------------

TRUE_HR = 0.449329
MS_COVS = ["baseline_edss", "prior_relapses", "age", "female"]


def true_marginal_hr(rows: pd.DataFrame, truth: dict, reps: int = 30, seed: int = 1) -> float:
    """Site-stratified marginal HR when everyone is treated vs when no one is (simulated).

    Each analysed person's outcome time under both arms is drawn from the true Weibull model of
    ``truth.json``; censoring keeps each person's observed censoring time (for persons with an
    event, a censoring time of their site beyond their event time is drawn).
    """
    rng = np.random.default_rng(seed)
    coef, scaling = truth["coefficients"], truth["covariate_scaling"]
    x = rows.assign(age_per_10y=rows["age"])
    lp = sum(coef[k] * (x[k].to_numpy(float) - scaling[k][0]) / scaling[k][1] for k in coef)
    base = truth["baseline_hazard"]
    site_h = rows["site"].map(truth["site_baseline_hazard_multiplier"]).to_numpy(float)
    censor = rows["duration"].to_numpy(float).copy()
    event = (rows["event"] == 1).to_numpy()
    for i in np.flatnonzero(event):
        pool = rows["duration"][(rows["site"] == rows["site"].iat[i]) & ~event].to_numpy(float)
        later = pool[pool > censor[i]]
        censor[i] = rng.choice(later) if len(later) else np.inf
    frames = []
    for _ in range(reps):
        for arm in (0, 1):
            h = site_h * base["scale_per_year"] * np.exp(lp + truth["log_hazard_ratio"] * arm)
            t = (rng.exponential(size=len(rows)) / h) ** (1 / base["shape"]) * 365.25
            frames.append(
                pd.DataFrame(
                    {
                        "site": rows["site"].to_numpy(),
                        "arm": arm,
                        "time": np.minimum(t, censor),
                        "event": (t <= censor).astype(int),
                    }
                )
            )
    sim = pd.concat(frames, ignore_index=True)
    fit = cox(sim, duration="time", event="event", covariates=["arm"], strata="site")
    return float(fit.summary.loc["arm", "hr"])


@pytest.mark.slow
def test_ground_truth_ms_demo(demo_size_build: BuildResult) -> None:
    from clinnova_explore.analysis.survival.presets import comparison

    catalog = Catalog.load(demo_size_build.catalog_path)
    truth = json.loads((demo_size_build.catalog_path.parent / "truth.json").read_text())
    ms = truth["effects"]["ms"]
    assert ms["hazard_ratio"] == TRUE_HR
    fed = Federation.from_cdm(catalog, comparison("ms_high_efficacy_vs_platform"))
    pooled = fed.pooled()
    kw: dict[str, Any] = {
        "treatment": "treatment",
        "duration": "duration",
        "event": "event",
        "covariates": MS_COVS,
    }
    iptw = compare_treatments(fed, method="iptw", **kw)
    assert_same(iptw, compare_treatments(pooled, method="iptw", **kw))
    matched = compare_treatments(pooled, method="match", **kw)
    adjusted = compare_treatments(pooled, method="regression", **kw)
    naive = iptw.summary.loc["naive"]
    # confounding by indication: the naive CI excludes the truth (it is above 1 here)
    assert not naive["hr_lower"] <= TRUE_HR <= naive["hr_upper"]
    # the conditional (covariate-adjusted) Cox model recovers the true conditional HR
    cond = adjusted.summary.loc["regression"]
    assert cond["hr_lower"] <= TRUE_HR <= cond["hr_upper"]
    # IPTW and matching estimate a marginal HR; non-collapsibility moves it toward 1
    marginal = true_marginal_hr(pooled.sites[0].frame(), ms)
    assert TRUE_HR < marginal < 1
    for result, label in ((iptw, "iptw"), (matched, "match")):
        row = result.summary.loc[label]
        assert row["hr_lower"] <= marginal <= row["hr_upper"], (label, row, marginal)
        assert row["hr_upper"] < naive["hr"]  # adjustment moves the estimate off the naive one
        assert result.balance["smd_after"].abs().max() < result.balance["smd_before"].abs().max()


def test_site_refusing_the_model_is_left_out_everywhere(data: pd.DataFrame) -> None:
    # site "c" keeps 40 rows: too few for 6 propensity coefficients at 10 rows each
    small = data[data["site"] == "c"].head(40)
    big = data[data["site"] != "c"]
    tables = {s: g.drop(columns="site") for s, g in pd.concat([big, small]).groupby("site")}
    policy = DisclosurePolicy(min_cell_count=1, min_cohort_size=1, max_params_per_obs=0.1)
    fed = Federation.from_tables(tables, policy=policy)
    result = run(fed, "iptw")
    assert_same(result, run(big, "iptw"), rtol=1e-6)
    assert result.provenance is not None
    assert "c" in result.provenance.refused  # its rows dropped, it refuses every later round
    assert "c: left out of the comparison (max_params_per_obs)" in result.provenance.suppressed
    strict = DisclosurePolicy(min_cell_count=1, min_cohort_size=1, max_params_per_obs=0.001)
    with pytest.raises(ValueError, match="every site was left out"):
        run(Federation.from_tables(tables, policy=strict), "iptw")
