"""Kaplan-Meier, event tables and log-rank against lifelines and independent computations."""

from __future__ import annotations

import dataclasses

import ibis
import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.datasets import load_lung, load_rossi, load_waltons
from lifelines.statistics import logrank_test, multivariate_logrank_test
from lifelines.utils import median_survival_times
from scipy.stats import chi2, norm

from clinnova_explore.analysis.result import Provenance
from clinnova_explore.analysis.survival import (
    SurvivalInputError,
    combine_event_tables,
    event_table,
    kaplan_meier,
    kaplan_meier_from_event_table,
    logrank,
)

TOL = 1e-10


def _synthetic(n: int = 600, seed: int = 3) -> pd.DataFrame:
    """Integer times (heavy ties, events and censorings at the same time), 3 groups, 2 strata."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b", "c"], size=n)
    scale = np.select([group == "a", group == "b"], [20.0, 30.0], 40.0)
    t_event = rng.exponential(scale)
    t_cens = rng.uniform(0, 60, size=n)
    return pd.DataFrame(
        {
            "time": np.ceil(np.minimum(t_event, t_cens)),
            "event": (t_event <= t_cens).astype(int),
            "group": group,
            "stratum": rng.choice(["s1", "s2"], size=n),
        }
    )


DATASETS = {
    "waltons": (load_waltons, "T", "E", "group"),
    "rossi": (load_rossi, "week", "arrest", "fin"),
    "lung": (load_lung, "time", "status", "sex"),
    "synthetic": (_synthetic, "time", "event", "group"),
}


def _check_invariants(summary: pd.DataFrame) -> None:
    for _, part in summary.groupby("group"):
        s = part["survival"].to_numpy()
        assert np.all((s >= 0) & (s <= 1)) and np.all(np.diff(s) <= 0)
        assert np.all(part["lower"] <= s + 1e-15) and np.all(s <= part["upper"] + 1e-15)


@pytest.mark.parametrize("name", list(DATASETS))
def test_km_matches_lifelines(name: str) -> None:
    load, dur, ev, grp = DATASETS[name]
    df = load()
    res = kaplan_meier(df, duration=dur, event=ev, group=grp, conf_type="log-log")
    _check_invariants(res.summary)
    z = norm.ppf(0.975)
    for key, part in res.summary.groupby("group"):
        sub = df[df[grp] == key]
        kmf = KaplanMeierFitter().fit(sub[dur], sub[ev])
        ref = kmf.survival_function_.iloc[:, 0].reindex(part["time"].to_numpy())
        np.testing.assert_allclose(part["survival"], ref, rtol=0, atol=TOL)
        ci = kmf.confidence_interval_.reindex(part["time"].to_numpy())
        alive = part["survival"].to_numpy() > 0  # lifelines reports NaN-filled 1.0 at S = 0
        np.testing.assert_allclose(part["lower"][alive], ci.iloc[:, 0][alive], atol=TOL, rtol=0)
        np.testing.assert_allclose(part["upper"][alive], ci.iloc[:, 1][alive], atol=TOL, rtol=0)
        # Greenwood: var(S) = S^2 * sum d / (n (n - d)), lifelines' _cumulative_sq_
        g = kmf._cumulative_sq_.reindex(part["time"].to_numpy()).to_numpy()
        s = part["survival"].to_numpy()
        np.testing.assert_allclose(
            part["std_err"][alive], (s * np.sqrt(g))[alive], atol=TOL, rtol=0
        )
        # the plain log transform of S, computed from lifelines' Greenwood sum
        log_res = kaplan_meier(sub, duration=dur, event=ev, conf_type="log").summary
        np.testing.assert_allclose(log_res["lower"][alive], (s * np.exp(-z * np.sqrt(g)))[alive])
        up = np.minimum(s * np.exp(z * np.sqrt(g)), 1)
        np.testing.assert_allclose(log_res["upper"][alive], up[alive], atol=TOL, rtol=0)
        med = res.median.loc[key]
        assert med["median"] == kmf.median_survival_time_
        ref_ci = median_survival_times(kmf.confidence_interval_).iloc[0].to_numpy()
        assert med["lower"] == ref_ci[0] and med["upper"] == ref_ci[1]


def test_km_at_is_right_continuous_step() -> None:
    df = load_waltons()
    res = kaplan_meier(df, duration="T", event="E", conf_type="log-log")
    kmf = KaplanMeierFitter().fit(df["T"], df["E"])
    times = np.array([0.0, 5.5, 6.0, 6.5, 33.0, 58.9, 75.0, 200.0])
    got = res.at(times)
    np.testing.assert_allclose(got["survival"], kmf.survival_function_at_times(times), atol=TOL)
    assert got["survival"].iloc[0] == 1.0 and got["lower"].iloc[0] == 1.0
    first = res.summary["time"].iloc[0]
    at_first = res.at([first])["survival"].iloc[0]
    assert at_first == res.summary["survival"].iloc[0] < 1


def test_risk_table_counts_raw_rows() -> None:
    df = _synthetic()
    res = kaplan_meier(df, duration="time", event="event", group="group")
    times = [0.0, 10.0, 10.5, 30.0, 100.0]
    table = res.risk_table(times)
    for row in table.itertuples():
        sub = df[df["group"] == row.group]
        assert row.n_at_risk == (sub["time"] >= row.time).sum()
        assert row.n_events == ((sub["time"] <= row.time) & (sub["event"] == 1)).sum()
        assert row.n_censored == ((sub["time"] <= row.time) & (sub["event"] == 0)).sum()


def test_conf_type_and_alpha_change_bands() -> None:
    df = load_rossi()
    base = kaplan_meier(df, duration="week", event="arrest").summary
    loglog = kaplan_meier(df, duration="week", event="arrest", conf_type="log-log").summary
    plain = kaplan_meier(df, duration="week", event="arrest", conf_type="plain").summary
    wide = kaplan_meier(df, duration="week", event="arrest", alpha=0.01).summary
    assert not np.allclose(base["lower"], loglog["lower"])
    assert not np.allclose(base["lower"], plain["lower"])
    assert (wide["lower"] <= base["lower"]).all() and (wide["lower"] < base["lower"]).any()
    se = plain["std_err"]
    np.testing.assert_allclose(plain["lower"], (plain["survival"] - 1.959963984540054 * se))
    with pytest.raises(ValueError, match="conf_type"):
        kaplan_meier(df, duration="week", event="arrest", conf_type="logit")  # type: ignore[arg-type]


def test_ibis_input_equals_pandas(tmp_path: object) -> None:
    df = _synthetic()
    con = ibis.duckdb.connect()
    table = con.create_table("surv", df)
    for by in [(), ("group",), ("stratum", "group")]:
        pd.testing.assert_frame_equal(
            event_table(table, "time", "event", by), event_table(df, "time", "event", by)
        )
    a = kaplan_meier(table, duration="time", event="event", group="group").summary
    b = kaplan_meier(df, duration="time", event="event", group="group").summary
    pd.testing.assert_frame_equal(a, b)
    la = logrank(table, duration="time", event="event", group="group", strata="stratum")
    lb = logrank(df, duration="time", event="event", group="group", strata="stratum")
    assert la.statistic == lb.statistic
    boolean = df.assign(event=df["event"].astype(bool))
    pd.testing.assert_frame_equal(
        event_table(ibis.memtable(boolean), "time", "event"), event_table(df, "time", "event")
    )


def test_combined_site_tables_equal_pooled() -> None:
    df = _synthetic()
    sites = [part for _, part in df.groupby("stratum")]
    tables = [event_table(s, "time", "event", "group") for s in sites]
    pooled = event_table(df, "time", "event", "group")
    pd.testing.assert_frame_equal(combine_event_tables(tables, "group"), pooled)
    fed = kaplan_meier_from_event_table(combine_event_tables(tables, "group"), group="group")
    pd.testing.assert_frame_equal(
        fed, kaplan_meier(df, duration="time", event="event", group="group").summary
    )


def test_logrank_two_groups_matches_lifelines() -> None:
    for load, dur, ev, grp in DATASETS.values():
        df = load()
        if df[grp].nunique() != 2:
            continue
        a, b = (df[df[grp] == k] for k in sorted(df[grp].unique()))
        ref = logrank_test(a[dur], b[dur], a[ev], b[ev])
        got = logrank(df, duration=dur, event=ev, group=grp)
        assert got.df == 1
        assert abs(got.statistic - ref.test_statistic) < TOL
        assert abs(got.p_value - ref.p_value) < TOL
        assert got.summary["observed"].sum() == df[ev].sum()


def test_logrank_three_groups_matches_lifelines() -> None:
    df = _synthetic()
    ref = multivariate_logrank_test(df["time"], df["group"], df["event"])
    got = logrank(df, duration="time", event="event", group="group")
    assert got.df == 2
    assert abs(got.statistic - ref.test_statistic) < TOL
    assert abs(got.p_value - ref.p_value) < TOL
    np.testing.assert_allclose(got.summary["observed_minus_expected"].sum(), 0, atol=1e-9)


def _two_group_terms(df: pd.DataFrame) -> tuple[float, float]:
    """O - E and V of group 'a' vs the rest, by a plain loop over distinct event times."""
    o_minus_e, var = 0.0, 0.0
    for t in np.unique(df.loc[df["event"] == 1, "time"]):
        risk = df[df["time"] >= t]
        dead = risk[(risk["time"] == t) & (risk["event"] == 1)]
        n, d = len(risk), len(dead)
        n1, d1 = (risk["group"] == "a").sum(), (dead["group"] == "a").sum()
        o_minus_e += d1 - n1 * d / n
        if n > 1:
            var += d * (n - d) / (n - 1) * n1 / n * (1 - n1 / n)
    return o_minus_e, var


def test_stratified_logrank_equals_independent_sum() -> None:
    df = _synthetic()
    df["group"] = np.where(df["group"] == "a", "a", "b")
    terms = [_two_group_terms(part) for _, part in df.groupby("stratum")]
    stat = sum(t[0] for t in terms) ** 2 / sum(t[1] for t in terms)
    got = logrank(df, duration="time", event="event", group="group", strata="stratum")
    assert abs(got.statistic - stat) < TOL
    assert abs(got.p_value - chi2.sf(stat, 1)) < TOL
    unstratified = logrank(df, duration="time", event="event", group="group")
    assert unstratified.statistic != got.statistic
    assert "Log-rank" in got._repr_html_()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"t": [1.0, 2.0], "e": [1, 0]}), "'time'"),
        (pd.DataFrame({"time": [1.0, -2.0], "e": [1, 0]}), "negative"),
        (pd.DataFrame({"time": [1.0, 2.0], "e": [1, 2]}), "other than 0/1"),
        (pd.DataFrame({"time": [1.0, np.nan], "e": [1, 0]}), "missing"),
        (pd.DataFrame({"time": ["1", "2"], "e": [1, 0]}), "numeric"),
    ],
)
def test_invalid_input_names_the_column(frame: pd.DataFrame, message: str) -> None:
    for data in (frame, ibis.memtable(frame)):
        with pytest.raises(SurvivalInputError, match=message):
            kaplan_meier(data, duration="time", event="e")


def test_repr_html_and_median_never_reached() -> None:
    df = pd.DataFrame({"time": [1.0, 2.0, 3.0, 4.0], "event": [1, 0, 0, 0]})
    res = kaplan_meier(df, duration="time", event="event")
    assert res.median.loc["all", "median"] == np.inf
    assert "Kaplan-Meier" in res._repr_html_()
    with pytest.raises(TypeError, match="pandas DataFrame or an ibis table"):
        kaplan_meier([1, 2], duration="time", event="event")


def test_survival_reaching_zero_and_group_errors() -> None:
    df = pd.DataFrame({"time": [1.0, 2.0, 2.0, 3.0], "event": [1, 0, 1, 1]})
    summary = kaplan_meier(df, duration="time", event="event").summary
    np.testing.assert_allclose(summary["survival"], [0.75, 0.5, 0.0], atol=TOL)
    # Greenwood by hand: S^2 * sum d / (n (n - d)), at t=2: 0.25 * (1/12 + 1/6)
    np.testing.assert_allclose(summary["std_err"].iloc[1], np.sqrt(0.25 * (1 / 12 + 1 / 6)))
    last = summary.iloc[-1]
    assert np.isnan(last["std_err"]) and last["lower"] == 0 and last["upper"] == 0
    missing = df.assign(g=["a", None, "b", "b"])
    with pytest.raises(SurvivalInputError, match="'g'"):
        logrank(missing, duration="time", event="event", group="g")
    with pytest.raises(ValueError, match="at least 2 groups"):
        logrank(df.assign(g="a"), duration="time", event="event", group="g")
    late = pd.DataFrame({"time": [1.0, 2.0, 0.5], "event": [1, 1, 0], "g": ["a", "a", "b"]})
    with pytest.raises(ValueError, match="singular"):
        logrank(late, duration="time", event="event", group="g")


def test_results_take_provenance() -> None:
    df = _synthetic()
    prov = Provenance(analysis="survival", mode="federated", sites=("a", "b"))
    km = kaplan_meier(df, duration="time", event="event", group="group")
    lr = logrank(df, duration="time", event="event", group="group")
    assert km.provenance is None and lr.provenance is None
    km2 = dataclasses.replace(km, provenance=prov)
    lr2 = dataclasses.replace(lr, provenance=prov)
    assert km2.provenance is prov and lr2.provenance is prov
    pd.testing.assert_frame_equal(km2.summary, km.summary)
    assert lr2.statistic == lr.statistic
