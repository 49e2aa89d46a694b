"""Treatment effects on pandas: propensity, IPTW, matching, balance, equipoise, compare.

References are independent of the code under test: statsmodels GLM (not Logit) for the
propensity model, numpy weighted averages and ``np.cov(aweights=...)`` for balance, a brute-force
O(n^2) greedy matcher, hand formulas for weights and preference scores, lifelines for the Cox
models (weighted with robust SE, clustered on pairs).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from clinnova_explore.analysis.effects import (
    EffectResult,
    balance,
    compare_treatments,
    equipoise,
    iptw,
    match,
    preference_score,
    propensity,
)
from clinnova_explore.analysis.effects.balance import arm_moments, combine_arm_moments
from clinnova_explore.analysis.effects.matching import greedy_pairs
from clinnova_explore.analysis.effects.propensity import logit


def simulate(n: int = 1500, seed: int = 3, log_hr: float = -0.7) -> pd.DataFrame:
    """Confounded data: sicker persons (x1, x2) get treated more and have more events."""
    rng = np.random.default_rng(seed)
    site = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    offset = pd.Series({"a": 0.0, "b": 0.5, "c": -0.4})[site].to_numpy()
    x1 = rng.normal(size=n)
    x2 = rng.binomial(1, 0.4, size=n)
    count = rng.poisson(1.0, size=n).astype(float)
    ps = 1 / (1 + np.exp(-(-0.3 + 0.9 * x1 + 0.6 * x2 + offset)))
    t = rng.binomial(1, ps)
    hazard = 0.2 * np.exp(log_hr * t + 0.5 * x1 + 0.4 * x2 + 0.1 * count)
    hazard *= pd.Series({"a": 1.0, "b": 1.5, "c": 0.7})[site].to_numpy()
    time = rng.exponential(1 / hazard)
    cens = rng.uniform(0.5, 6.0, size=n)
    competing = rng.exponential(1 / 0.02, size=n)
    end = np.minimum(np.minimum(time, cens), competing)
    event = np.where(end == time, 1, np.where(end == competing, 2, 0))
    return pd.DataFrame(
        {
            "person_id": rng.permutation(n) + 1,
            "site": site,
            "treatment": t,
            "x1": x1,
            "x2": x2,
            "count": count,
            "duration": end * 365.0,  # continuous: no tied times
            "event": event,
        }
    )


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return simulate()


# --- propensity ---------------------------------------------------------------------------


def test_propensity_matches_statsmodels_glm(data: pd.DataFrame) -> None:
    model = propensity(data, treatment="treatment", covariates=["x1", "x2", "count"])
    x = sm.add_constant(data[["x1", "x2", "count"]].to_numpy(float))
    ref = sm.GLM(data["treatment"].to_numpy(), x, family=sm.families.Binomial()).fit(tol=1e-14)
    assert model.scores is not None
    np.testing.assert_allclose(model.coef.to_numpy(), ref.params, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.summary["se"].to_numpy(), ref.bse, rtol=1e-6)
    np.testing.assert_allclose(model.scores.to_numpy(), ref.fittedvalues, rtol=1e-8)
    assert list(model.summary.index) == ["intercept", "x1", "x2", "count"]
    np.testing.assert_allclose(model.summary["or"], np.exp(ref.params), rtol=1e-8)
    assert model.scores.index.equals(data.index)


def test_propensity_errors_speak(data: pd.DataFrame) -> None:
    with pytest.raises(KeyError, match="nope"):
        propensity(data, treatment="nope", covariates=["x1"])
    with pytest.raises(ValueError, match="0/1"):
        propensity(data.assign(treatment=2), treatment="treatment", covariates=["x1"])
    with pytest.raises(ValueError, match="not numeric"):
        propensity(data, treatment="treatment", covariates=["site"])
    with pytest.raises(ValueError, match="missing"):
        propensity(data.assign(x1=np.nan), treatment="treatment", covariates=["x1"])
    separated = data.assign(x1=data["treatment"] * 2.0 - 1.0)
    with pytest.raises(ValueError, match="perfectly"):
        propensity(separated, treatment="treatment", covariates=["x1"])
    with pytest.raises(ValueError, match="max_iter"):
        propensity(data, treatment="treatment", covariates=["x1"], max_iter=1)


# --- weights ------------------------------------------------------------------------------


def test_iptw_hand_computed() -> None:
    ps = np.array([0.2, 0.6, 0.9, 0.3, 0.5])
    t = np.array([1, 1, 0, 0, 0])
    np.testing.assert_allclose(
        iptw(ps, t, stabilized=False), [1 / 0.2, 1 / 0.6, 1 / 0.1, 1 / 0.7, 1 / 0.5]
    )
    np.testing.assert_allclose(iptw(ps, t), [0.4 / 0.2, 0.4 / 0.6, 0.6 / 0.1, 0.6 / 0.7, 0.6 / 0.5])
    # trimming to [0.25, 0.8] drops persons 1 and 3; P(T=1) among the rest is 1/3
    trimmed = iptw(ps, t, trim=(0.25, 0.8))
    np.testing.assert_allclose(trimmed, [0, (1 / 3) / 0.6, 0, (2 / 3) / 0.7, (2 / 3) / 0.5])
    with pytest.raises(ValueError, match="positivity"):
        iptw([0.0, 0.5], [1, 0])
    with pytest.raises(ValueError, match="trim"):
        iptw(ps, t, trim=(0.8, 0.2))


# --- matching -----------------------------------------------------------------------------


def brute_force_greedy(
    vt: np.ndarray, vc: np.ndarray, width: float, kt: np.ndarray, kc: np.ndarray
) -> list[tuple[int, int]]:
    """The greedy rule by exhaustive search: treated by (-score, key), nearest (distance, key)."""
    used: set[int] = set()
    pairs = []
    for i in sorted(range(len(vt)), key=lambda i: (-vt[i], kt[i])):
        best = None
        for j in range(len(vc)):
            if j in used:
                continue
            cand = (abs(vt[i] - vc[j]), kc[j], j)
            if best is None or cand < best:
                best = cand
        if best is not None and best[0] <= width:
            used.add(best[2])
            pairs.append((i, best[2]))
    return pairs


@pytest.mark.parametrize("seed", range(12))
def test_greedy_pairs_equal_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    nt, nc = rng.integers(1, 25), rng.integers(1, 40)
    # coarse values make many exact ties (equal scores and equal distances)
    vt = rng.integers(0, 12, nt) / 4.0
    vc = rng.integers(0, 12, nc) / 4.0
    kt, kc = rng.permutation(nt), rng.permutation(nc)
    for width in (np.inf, 0.5, 0.25, 0.0):
        ours = greedy_pairs(vt, vc, width=width, key_treated=kt, key_control=kc)
        assert ours == brute_force_greedy(vt, vc, width, kt, kc)


def test_match_pairs_caliper_and_within(data: pd.DataFrame) -> None:
    model = propensity(data, treatment="treatment", covariates=["x1", "x2"])
    df = data.assign(ps=model.scores)
    lp = logit(df["ps"])
    m = match(df, ps="ps", treatment="treatment", order_by="person_id")
    assert m["pair_id"].value_counts().eq(2).all()
    assert m.index.is_unique
    pairs = m.groupby("pair_id")
    assert (pairs["treatment"].agg(list).map(tuple) == (1, 0)).all()
    lp_m = pd.Series(logit(m["ps"]), index=m.index).groupby(m["pair_id"])
    dist = (lp_m.first() - lp_m.last()).abs()
    width = 0.2 * np.std(lp, ddof=1)
    assert dist.max() <= width
    # a tighter caliper matches fewer; no caliper matches min(n_treated, n_control)
    tight = match(df, ps="ps", treatment="treatment", caliper=0.01)
    free = match(df, ps="ps", treatment="treatment", caliper=None)
    assert len(tight) < len(m) <= len(free)
    assert len(free) == 2 * min(df["treatment"].sum(), (1 - df["treatment"]).sum())
    # within site: no pair crosses a site; ids name the site
    w = match(df, ps="ps", treatment="treatment", within="site", order_by="person_id")
    assert (w.groupby("pair_id")["site"].nunique() == 1).all()
    assert all(pid.split(":")[0] == s for pid, s in zip(w["pair_id"], w["site"], strict=True))
    assert not m.equals(w)


def test_match_does_not_depend_on_row_order() -> None:
    rng = np.random.default_rng(5)
    df = pd.DataFrame(
        {
            "person_id": np.arange(200),
            "treatment": rng.binomial(1, 0.4, 200),
            "ps": rng.integers(1, 9, 200) / 10.0,  # heavy ties
        }
    )
    a = match(df, ps="ps", treatment="treatment", order_by="person_id", caliper=None)
    shuffled = df.sample(frac=1.0, random_state=1)
    b = match(shuffled, ps="ps", treatment="treatment", order_by="person_id", caliper=None)
    assert a.index.tolist() == b.index.tolist()
    # without order_by, ties fall to row position, so the shuffled order changes the pairs
    c = match(shuffled, ps="ps", treatment="treatment", caliper=None)
    assert c.index.tolist() != a.index.tolist()


# --- balance ------------------------------------------------------------------------------


def reference_smd(x: np.ndarray, t: np.ndarray, w: np.ndarray, binary: bool) -> float:
    m1 = np.average(x[t == 1], weights=w[t == 1])
    m0 = np.average(x[t == 0], weights=w[t == 0])
    if binary:
        v1, v0 = m1 * (1 - m1), m0 * (1 - m0)
    else:
        v1 = float(np.cov(x[t == 1], aweights=w[t == 1], ddof=1))
        v0 = float(np.cov(x[t == 0], aweights=w[t == 0], ddof=1))
    return float((m1 - m0) / np.sqrt((v1 + v0) / 2))


def test_balance_equals_hand_computation(data: pd.DataFrame) -> None:
    model = propensity(data, treatment="treatment", covariates=["x1", "x2"])
    assert model.scores is not None
    w = iptw(model.scores, data["treatment"])
    table = balance(data, treatment="treatment", covariates=["x1", "x2", "count"], weights=w)
    t = data["treatment"].to_numpy()
    for col, binary in (("x1", False), ("x2", True), ("count", False)):
        x = data[col].to_numpy(float)
        assert table.loc[col, "kind"] == ("binary" if binary else "continuous")
        before = reference_smd(x, t, np.ones(len(x)), binary)
        after = reference_smd(x, t, w, binary)
        assert table.loc[col, "smd_before"] == pytest.approx(before, rel=1e-10)
        assert table.loc[col, "smd_after"] == pytest.approx(after, rel=1e-10)
        assert table.loc[col, "treated_after"] == pytest.approx(
            np.average(x[t == 1], weights=w[t == 1]), rel=1e-12
        )
    # confounders are imbalanced before and balanced after weighting; count is no confounder
    assert abs(table.loc["x1", "smd_before"]) > 0.3
    assert abs(table.loc["x1", "smd_after"]) < 0.05
    assert "smd_after" not in balance(data, treatment="treatment", covariates=["x1"])


def test_balance_moments_combine_exactly(data: pd.DataFrame) -> None:
    w = np.random.default_rng(1).uniform(0.2, 3.0, len(data))
    covs = ["x1", "x2", "count"]
    whole = arm_moments(data, treatment="treatment", covariates=covs, weights=w)
    parts = [
        arm_moments(data[sel], treatment="treatment", covariates=covs, weights=w[sel])
        for sel in (data["site"] == s for s in ("a", "b", "c"))
        for sel in [sel.to_numpy()]
    ]
    merged = combine_arm_moments(parts)
    pd.testing.assert_frame_equal(
        merged.drop(columns="binary"), whole.drop(columns="binary"), rtol=1e-12, check_dtype=False
    )
    assert merged["binary"].tolist() == whole["binary"].tolist()


# --- equipoise ----------------------------------------------------------------------------


def test_preference_score_and_equipoise_hand() -> None:
    ps = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    t = np.array([1, 0, 0, 0, 1])  # P = 0.4
    expected = np.exp(logit(ps) - np.log(0.4 / 0.6))
    expected = expected / (1 + expected)
    np.testing.assert_allclose(preference_score(ps, t), expected, rtol=1e-12)
    # the preference score maps the share treated to 0.5
    assert preference_score(np.array([0.4, 0.4, 0.4, 0.4, 0.4]), t)[0] == pytest.approx(0.5)
    inside = ((expected >= 0.3) & (expected <= 0.7)).mean()
    assert equipoise(ps, t) == pytest.approx(inside)
    assert equipoise(ps, t, bounds=(0.0, 1.0)) == 1.0
    assert equipoise(ps, t, bounds=(0.45, 0.55)) < equipoise(ps, t)


# --- compare_treatments (pandas) ------------------------------------------------------------

COVS = ["x1", "x2", "count"]


def lifelines_cox(df: pd.DataFrame, covariates: list[str], **kwargs: object) -> pd.DataFrame:
    from lifelines import CoxPHFitter

    cols = ["duration", "outcome", "site", *covariates]
    extra = [c for c in (kwargs.get("weights_col"), kwargs.get("cluster_col")) if c]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = CoxPHFitter().fit(
            df[cols + extra],
            duration_col="duration",
            event_col="outcome",
            strata=["site"],
            fit_options={"precision": 1e-12},
            **kwargs,
        )
    return fit.summary


def reference_ps(df: pd.DataFrame) -> np.ndarray:
    x = pd.concat([df[COVS], pd.get_dummies(df["site"], drop_first=True, dtype=float)], axis=1)
    glm = sm.GLM(df["treatment"], sm.add_constant(x.to_numpy(float)), family=sm.families.Binomial())
    return np.asarray(glm.fit(tol=1e-14).fittedvalues)


@pytest.fixture(scope="module")
def prepared(data: pd.DataFrame) -> pd.DataFrame:
    return data.assign(outcome=(data["event"] == 1).astype(int), ps=reference_ps(data))


def compare(data: pd.DataFrame, method: str, **kwargs: object) -> EffectResult:
    return compare_treatments(
        data,
        treatment="treatment",
        duration="duration",
        event="event",
        covariates=COVS,
        method=method,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def assert_same_fit(ours: pd.DataFrame, ref: pd.DataFrame, rows: list[str]) -> None:
    np.testing.assert_allclose(ours.loc[rows, "coef"], ref.loc[rows, "coef"], rtol=1e-6)
    np.testing.assert_allclose(ours.loc[rows, "se"], ref.loc[rows, "se(coef)"], rtol=1e-6)


def test_compare_naive_and_regression_equal_lifelines(
    data: pd.DataFrame, prepared: pd.DataFrame
) -> None:
    naive = compare(data, "naive")
    assert_same_fit(naive.naive.summary, lifelines_cox(prepared, ["treatment"]), ["treatment"])
    assert naive.adjusted is naive.naive
    assert "smd_after" not in naive.balance
    reg = compare(data, "regression")
    ref = lifelines_cox(prepared, ["treatment", *COVS])
    assert_same_fit(reg.adjusted.summary, ref, ["treatment", *COVS])
    assert list(reg.summary.index) == ["naive", "regression"]
    # competing events (event == 2) are censored, not outcomes
    assert naive.naive.events == int((data["event"] == 1).sum())


def test_compare_iptw_equals_lifelines_weighted_robust(
    data: pd.DataFrame, prepared: pd.DataFrame
) -> None:
    result = compare(data, "iptw")
    assert result.ps_model.scores is not None
    np.testing.assert_allclose(result.ps_model.scores, prepared["ps"], rtol=1e-7)
    t = prepared["treatment"].to_numpy()
    share = t.mean()
    w = np.where(t == 1, share / prepared["ps"], (1 - share) / (1 - prepared["ps"]))
    ref = lifelines_cox(prepared.assign(w=w), ["treatment"], weights_col="w", robust=True)
    assert_same_fit(result.adjusted.summary, ref, ["treatment"])
    hr = result.summary.loc["iptw"]
    assert hr["hr"] == pytest.approx(np.exp(ref.loc["treatment", "coef"]), rel=1e-6)
    # the KM is weighted: it equals lifelines' KM with the same weights, arm by arm
    from lifelines import KaplanMeierFitter

    assert result.km is not None
    km = result.km.summary
    for arm in (0, 1):
        sel = t == arm
        with warnings.catch_warnings():  # lifelines warns that the weights are not integers
            warnings.simplefilter("ignore")
            ref_km = KaplanMeierFitter().fit(
                prepared["duration"][sel], prepared["outcome"][sel], weights=w[sel]
            )
        part = km[km["group"] == arm]
        times = part["time"].to_numpy()[::50]
        expected = ref_km.survival_function_at_times(times).to_numpy()
        np.testing.assert_allclose(part["survival"].to_numpy()[::50], expected, rtol=1e-9)
    # unstabilized weights change the estimate; trimming keeps fewer persons
    unstab = compare(data, "iptw", stabilized=False)
    assert unstab.adjusted.summary.loc["treatment", "coef"] != pytest.approx(
        result.adjusted.summary.loc["treatment", "coef"], rel=1e-9
    )
    trimmed = compare(data, "iptw", trim=(0.1, 0.9))
    assert trimmed.n_adjusted < result.n_adjusted == len(data)
    assert (
        abs(result.balance.loc["x1", "smd_after"])
        < 0.1
        < abs(result.balance.loc["x1", "smd_before"])
    )


def test_compare_match_equals_lifelines_clustered(
    data: pd.DataFrame, prepared: pd.DataFrame
) -> None:
    result = compare(data, "match")
    matched = match(prepared, ps="ps", treatment="treatment", within="site", order_by="person_id")
    assert result.n_adjusted == len(matched)
    ref = lifelines_cox(
        matched.assign(pair=matched["pair_id"].astype(str)),
        ["treatment"],
        cluster_col="pair",
        robust=True,
    )
    assert_same_fit(result.adjusted.summary, ref, ["treatment"])
    chosen = prepared.index.isin(matched.index).astype(float)
    table = balance(prepared, treatment="treatment", covariates=COVS, weights=chosen)
    pd.testing.assert_frame_equal(result.balance, table, rtol=1e-6)
    # the caliper is passed through: a tighter one matches fewer persons
    assert compare(data, "match", caliper=0.02).n_adjusted < result.n_adjusted


def test_compare_missing_covariates_and_strata(data: pd.DataFrame) -> None:
    holes = data.copy()
    holes.loc[holes.index[:40], "x1"] = np.nan
    result = compare(holes, "naive")
    assert result.excluded_missing == 40
    assert result.n == len(data) - 40
    unstratified = compare(data, "naive", strata=None)
    assert unstratified.naive.strata is None
    assert "site[b]" not in unstratified.ps_model.summary.index
    assert "site[b]" in compare(data, "naive").ps_model.summary.index
    wide = compare(data, "naive", alpha=0.01).summary.loc["naive"]
    usual = compare(data, "naive").summary.loc["naive"]
    assert wide["hr_lower"] < usual["hr_lower"] < usual["hr_upper"] < wide["hr_upper"]
    with pytest.raises(ValueError, match="method"):
        compare(data, "bogus")
    with pytest.raises(KeyError, match="nope"):
        compare(data.rename(columns={"x1": "nope"}), "naive")


# --- love plot ------------------------------------------------------------------------------


def test_love_plot_draws_the_balance_table(data: pd.DataFrame) -> None:
    import holoviews as hv

    from clinnova_explore.viz.balance import love_figure, love_plot, love_points

    result = compare(data, "iptw")
    plot = result.love_plot(threshold=0.2, title="x")
    points = [el for el in plot if isinstance(el, hv.Points)]
    assert [p.label for p in points] == ["before", "after"]
    for p, col in zip(points, ["smd_before", "smd_after"], strict=True):
        drawn = p.data.set_index("covariate")["abs_smd"]
        expected = result.balance[col].abs()
        np.testing.assert_allclose(drawn.loc[expected.index], expected, rtol=1e-12)
    lines = [el for el in plot if isinstance(el, hv.VLine)]
    assert 0.2 in [line.data for line in lines]
    from bokeh.models.renderers import GlyphRenderer
    from bokeh.plotting import figure

    fig = love_figure(result.balance)
    assert isinstance(fig, figure)
    assert len(fig.select(type=GlyphRenderer)) >= 2
    # before only: one layer of points; infinite SMDs are left out
    naive_table = compare(data, "naive").balance
    assert len([el for el in love_plot(naive_table) if isinstance(el, hv.Points)]) == 1
    table = naive_table.assign(smd_before=[np.inf, 0.5, 0.1])
    assert list(love_points(table)["covariate"]) == ["x2", "count"]
    with pytest.raises(ValueError, match="smd_before"):
        love_plot(pd.DataFrame({"x": [1.0]}))
