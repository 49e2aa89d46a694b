"""RMST and Aalen-Johansen cumulative incidence against lifelines and hand computations.

Variance of the RMST: lifelines' ``restricted_mean_survival_time(..., return_variance=True)``
returns the variance of ``min(T, tau)`` under the estimated distribution (``2 * int t S(t) dt
- rmst ** 2``), not the sampling variance of the estimate, so it does not match survRM2. The
variance is therefore checked against an independent numpy implementation of the
Greenwood-type formula of survRM2 (built from raw rows, not from our event table).
"""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pytest
from lifelines import AalenJohansenFitter, KaplanMeierFitter
from lifelines.datasets import load_rossi, load_waltons
from lifelines.utils import restricted_mean_survival_time
from scipy.stats import norm

from clinnova_explore.analysis.survival.competing import aalen_johansen
from clinnova_explore.analysis.survival.rmst import rmst


def _lifelines_rmst(df: pd.DataFrame, duration: str, event: str, tau: float) -> float:
    kmf = KaplanMeierFitter().fit(df[duration], df[event])
    return float(restricted_mean_survival_time(kmf, t=tau))


def _survrm2_variance(durations: np.ndarray, events: np.ndarray, tau: float) -> float:
    """survRM2's variance, written directly from the raw rows (independent reference)."""
    times = np.unique(durations[(events == 1) & (durations <= tau)])
    n = np.array([(durations >= t).sum() for t in times], dtype=float)
    d = np.array([((durations == t) & (events == 1)).sum() for t in times], dtype=float)
    s = np.cumprod(1 - d / n)
    knots = np.append(times, tau)
    areas = np.array([np.sum(s[j:] * np.diff(knots[j:])) for j in range(len(times))])
    w = np.where(n > d, d / np.where(n > d, n * (n - d), 1.0), 0.0)
    return float(np.sum(areas**2 * w))


@pytest.mark.parametrize("tau", [10.0, 30.0, 55.0, 75.0])
def test_rmst_waltons_matches_lifelines(tau: float) -> None:
    df = load_waltons()
    res = rmst(df, duration="T", event="E", tau=tau, group="group")
    for g in ("control", "miR-137"):
        part = df[df["group"] == g]
        row = res.summary.loc[g]
        assert row["rmst"] == pytest.approx(_lifelines_rmst(part, "T", "E", tau), abs=1e-10)
        ref_var = _survrm2_variance(part["T"].to_numpy(float), part["E"].to_numpy(), tau)
        assert row["variance"] == pytest.approx(ref_var, rel=1e-10, abs=1e-12)
        assert row["se"] == pytest.approx(np.sqrt(ref_var), rel=1e-10)
        z = norm.ppf(0.975)
        assert row["lower"] == pytest.approx(row["rmst"] - z * row["se"], rel=1e-12)


@pytest.mark.parametrize("tau", [20.0, 52.0])
def test_rmst_rossi_matches_lifelines_and_differences(tau: float) -> None:
    df = load_rossi()
    res = rmst(df, duration="week", event="arrest", tau=tau, group="fin")
    for g in (0, 1):
        part = df[df["fin"] == g]
        row = res.summary.loc[g]
        assert row["rmst"] == pytest.approx(_lifelines_rmst(part, "week", "arrest", tau), abs=1e-10)
        ref_var = _survrm2_variance(part["week"].to_numpy(float), part["arrest"].to_numpy(), tau)
        assert row["variance"] == pytest.approx(ref_var, rel=1e-10)
    diff = res.difference(1, 0)
    expected = res.summary.loc[1, "rmst"] - res.summary.loc[0, "rmst"]
    se = np.sqrt(res.summary.loc[1, "variance"] + res.summary.loc[0, "variance"])
    assert diff["difference"] == pytest.approx(expected, rel=1e-12)
    assert diff["se"] == pytest.approx(se, rel=1e-12)
    assert diff["p"] == pytest.approx(2 * norm.sf(abs(expected / se)), rel=1e-10)
    assert diff["lower"] < diff["difference"] < diff["upper"]
    assert res.difference(0, 1)["difference"] == pytest.approx(-expected, rel=1e-12)
    with pytest.raises(KeyError):
        res.difference(1, 7)


def test_rmst_tau_changes_result_and_single_group() -> None:
    df = load_rossi()
    small = rmst(df, duration="week", event="arrest", tau=10.0).summary.loc["all", "rmst"]
    large = rmst(df, duration="week", event="arrest", tau=40.0).summary.loc["all", "rmst"]
    assert small < large <= 40.0
    assert small == pytest.approx(_lifelines_rmst(df, "week", "arrest", 10.0), abs=1e-10)
    # tau before any event: RMST is tau with zero variance
    early = rmst(df, duration="week", event="arrest", tau=0.5).summary.loc["all"]
    assert early["rmst"] == pytest.approx(0.5) and early["variance"] == 0.0
    with pytest.raises(ValueError, match="tau"):
        rmst(df, duration="week", event="arrest", tau=0.0)


def test_rmst_hand_example_with_ties() -> None:
    df = pd.DataFrame({"t": [1, 2, 2, 3], "e": [1, 0, 1, 1]})
    row = rmst(df, duration="t", event="e", tau=2.5).summary.loc["all"]
    assert row["rmst"] == pytest.approx(1 + 0.75 + 0.5 * 0.5, abs=1e-14)
    # A_1 = 0.75 + 0.25 = 1.0 (d/(n(n-d)) = 1/12), A_2 = 0.25 (1/(3*2) = 1/6)
    assert row["variance"] == pytest.approx(1.0 / 12 + 0.25**2 / 6, abs=1e-14)


def test_rmst_ibis_equals_pandas() -> None:
    df = load_waltons()
    a = rmst(df, duration="T", event="E", tau=50.0, group="group").summary
    b = rmst(ibis.memtable(df), duration="T", event="E", tau=50.0, group="group").summary
    pd.testing.assert_frame_equal(a.sort_index(), b.sort_index(), rtol=1e-12)


def _competing_data(n: int = 300, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t1 = rng.exponential(10.0, n)
    t2 = rng.exponential(15.0, n)
    c = rng.exponential(25.0, n)
    time = np.minimum(np.minimum(t1, t2), c)
    code = np.where(time == c, 0, np.where(time == t1, 1, 2))
    return pd.DataFrame({"time": time, "cause": code, "arm": rng.integers(0, 2, n)})


@pytest.mark.parametrize("cause", [1, 2])
def test_aalen_johansen_matches_lifelines_without_ties(cause: int) -> None:
    df = _competing_data()
    assert df["time"].is_unique  # lifelines jitters tied times: compare on untied data
    res = aalen_johansen(df, duration="time", event="cause", event_of_interest=cause)
    ajf = AalenJohansenFitter(calculate_variance=False)
    ajf.fit(df["time"], df["cause"], event_of_interest=cause)
    ref = ajf.cumulative_density_.iloc[:, 0]
    ours = res.at(ref.index.to_numpy())["cumulative_incidence"].to_numpy()
    np.testing.assert_allclose(ours, ref.to_numpy(), rtol=0, atol=1e-10)
    summ = res.summary
    np.testing.assert_allclose(
        summ["cumulative_incidence"].to_numpy(),
        ref.reindex(summ["time"].to_numpy()).to_numpy(),
        rtol=0,
        atol=1e-10,
    )


def test_aalen_johansen_by_group_matches_lifelines() -> None:
    df = _competing_data(400, seed=7)
    res = aalen_johansen(df, duration="time", event="cause", event_of_interest=1, group="arm")
    for g in (0, 1):
        part = df[df["arm"] == g]
        ajf = AalenJohansenFitter(calculate_variance=False)
        ajf.fit(part["time"], part["cause"], event_of_interest=1)
        ref = ajf.cumulative_density_.iloc[:, 0]
        ours = res.summary[res.summary["group"] == g]
        np.testing.assert_allclose(
            ours["cumulative_incidence"].to_numpy(),
            ref.reindex(ours["time"].to_numpy()).to_numpy(),
            rtol=0,
            atol=1e-10,
        )


def test_aalen_johansen_hand_example_with_ties() -> None:
    # t=1: causes 1, 2 and a censoring; t=2: causes 1, 1; t=3: cause 2; t=4: censored
    df = pd.DataFrame({"t": [1, 1, 1, 2, 2, 3, 4, 4], "e": [1, 2, 0, 1, 1, 2, 0, 0]})
    s = aalen_johansen(df, duration="t", event="e", event_of_interest=1).summary
    # n = 8, 5, 3, 2; S(1) = 6/8, S(2) = 6/8 * 3/5 = 0.45, S(3) = 0.45 * 2/3 = 0.3
    f1 = 1 / 8
    f2 = f1 + 0.75 * 2 / 5
    np.testing.assert_allclose(s["n_at_risk"], [8, 5, 3, 2])
    np.testing.assert_allclose(s["cumulative_incidence"], [f1, f2, f2, f2], atol=1e-15)
    np.testing.assert_allclose(s["survival"], [0.75, 0.45, 0.3, 0.3], atol=1e-15)
    s2 = aalen_johansen(df, duration="t", event="e", event_of_interest=2).summary
    g1 = 1 / 8
    g3 = g1 + 0.45 * 1 / 3
    np.testing.assert_allclose(s2["cumulative_incidence"], [g1, g1, g3, g3], atol=1e-15)
    # CIFs of all causes add up to 1 - S
    np.testing.assert_allclose(
        s["cumulative_incidence"] + s2["cumulative_incidence"], 1 - s["survival"], atol=1e-15
    )


def test_aalen_johansen_ibis_equals_pandas() -> None:
    df = _competing_data(200, seed=3)
    df["time"] = np.ceil(df["time"])  # heavy ties
    a = aalen_johansen(df, duration="time", event="cause", event_of_interest=1, group="arm")
    b = aalen_johansen(
        ibis.memtable(df), duration="time", event="cause", event_of_interest=1, group="arm"
    )
    pd.testing.assert_frame_equal(a.summary, b.summary, rtol=1e-12)


def test_aalen_johansen_input_errors() -> None:
    df = pd.DataFrame({"t": [1.0, 2.0], "e": [1, 0]})
    with pytest.raises(ValueError, match="event_of_interest"):
        aalen_johansen(df, duration="t", event="e", event_of_interest=0)
    bad = pd.DataFrame({"t": [1.0, 2.0], "e": [1.5, 0]})
    with pytest.raises(ValueError, match="integer codes"):
        aalen_johansen(bad, duration="t", event="e", event_of_interest=1)
    with pytest.raises(ValueError, match="integer codes"):
        aalen_johansen(ibis.memtable(bad), duration="t", event="e", event_of_interest=1)
