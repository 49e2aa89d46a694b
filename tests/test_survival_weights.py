"""Case weights and robust (sandwich) variances in event tables, Kaplan-Meier and Cox.

References: lifelines (``KaplanMeierFitter(weights=)``, ``CoxPHFitter(weights_col=, robust=,
cluster_col=)``), statsmodels ``PHReg`` (Breslow ties, ``groups=`` robust covariance), row
replication for integer weights, and a literal loop over event times for Efron score residuals.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from lifelines import CoxPHFitter, KaplanMeierFitter

from clinnova_explore.analysis.survival import SurvivalInputError, event_table, kaplan_meier
from clinnova_explore.analysis.survival.cox import cox
from clinnova_explore.analysis.survival.cox_stats import block_meat, make_block

TIGHT = {"precision": 1e-12, "r_precision": 0.0}
COLS = ["x1", "x2", "x3"]


def _data(n: int = 900, seed: int = 11, day: bool = True) -> pd.DataFrame:
    """Three covariates, three sites, 150 clusters, non-integer weights; day times = ties."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.binomial(1, 0.4, n).astype(float),
            "x3": rng.uniform(-1, 1, n),
            "site": rng.choice(["a", "b", "c"], n),
            "cl": rng.integers(0, 150, n),
            "w": rng.uniform(0.2, 3.0, n),
            "iw": rng.integers(1, 4, n),
        }
    )
    rate = 0.04 * np.exp(0.5 * df["x1"] - 0.6 * df["x2"] + 0.3 * df["x3"])
    t_event = rng.exponential(1 / rate)
    t_cens = rng.uniform(0, 40, n)
    time = np.minimum(t_event, t_cens)
    df["time"] = np.ceil(time) if day else time
    df["event"] = (t_event <= t_cens).astype(int)
    return df


def _lifelines(df: pd.DataFrame, cols: list[str], **kw: object) -> CoxPHFitter:
    extra = [str(v) for k, v in kw.items() if k in ("weights_col", "cluster_col")]
    extra += list(kw.get("strata", []))  # type: ignore[call-overload]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CoxPHFitter().fit(
            df[["time", "event", *cols, *extra]], "time", "event", fit_options=TIGHT, **kw
        )


# --- event tables and Kaplan-Meier -------------------------------------------------------


def test_weighted_event_table_pandas_equals_duckdb_and_hand_sums(tmp_path: Path) -> None:
    df = _data()
    ours = event_table(df, "time", "event", by="site", weights="w")
    con = ibis.duckdb.connect(str(tmp_path / "w.duckdb"))
    in_db = event_table(con.create_table("d", df), "time", "event", by="site", weights="w")
    pd.testing.assert_frame_equal(ours, in_db, check_exact=False, rtol=1e-12)
    assert ours["n_at_risk"].dtype == np.float64
    hand = df.assign(ev=df["w"] * df["event"], ce=df["w"] * (1 - df["event"]))
    hand = hand.groupby(["site", "time"])[["ev", "ce"]].sum().reset_index()
    np.testing.assert_allclose(ours["n_events"], hand["ev"], rtol=1e-12)
    np.testing.assert_allclose(ours["n_censored"], hand["ce"], rtol=1e-12)
    a = df[df["site"] == "a"]
    first = ours[ours["site"] == "a"].iloc[0]
    assert first["n_at_risk"] == pytest.approx(a.loc[a["time"] >= first["time"], "w"].sum())
    # weights change the counts; unweighted stays integer
    plain = event_table(df, "time", "event", by="site")
    assert plain["n_at_risk"].dtype == np.int64
    assert not np.allclose(plain["n_events"], ours["n_events"])


def test_weighted_km_matches_lifelines() -> None:
    df = _data()
    ours = kaplan_meier(df, duration="time", event="event", weights="w", conf_type="log-log")
    kmf = KaplanMeierFitter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kmf.fit(df["time"], df["event"], weights=df["w"])
    ref = kmf.survival_function_["KM_estimate"]
    s = ours.summary
    np.testing.assert_allclose(s["survival"], ref.loc[s["time"]].to_numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(
        s["n_at_risk"], kmf.event_table.loc[s["time"], "at_risk"].to_numpy(), rtol=1e-12
    )
    assert ours.weights == "w"
    unweighted = kaplan_meier(df, duration="time", event="event")
    assert np.abs(unweighted.summary["survival"] - s["survival"]).max() > 1e-3


def test_integer_weights_equal_replicated_rows_and_lifelines_bands() -> None:
    df = _data(400)
    weighted = kaplan_meier(df, duration="time", event="event", group="site", weights="iw")
    copies = df.loc[df.index.repeat(df["iw"])]
    replicated = kaplan_meier(copies, duration="time", event="event", group="site")
    pd.testing.assert_frame_equal(
        weighted.summary, replicated.summary, check_dtype=False, atol=1e-10, rtol=0
    )
    # lifelines' bands (log-log) with integer weights, one group
    part = df[df["site"] == "b"]
    ours = kaplan_meier(part, duration="time", event="event", weights="iw", conf_type="log-log")
    kmf = KaplanMeierFitter().fit(part["time"], part["event"], weights=part["iw"])
    ci = kmf.confidence_interval_.loc[ours.summary["time"]]
    alive = ours.summary["survival"].to_numpy() > 0
    np.testing.assert_allclose(ours.summary["lower"][alive], ci.iloc[:, 0][alive], atol=1e-10)
    np.testing.assert_allclose(ours.summary["upper"][alive], ci.iloc[:, 1][alive], atol=1e-10)


@pytest.mark.parametrize("bad", [-1.0, 0.0, np.nan, np.inf])
def test_invalid_weights_name_the_column(bad: float) -> None:
    df = _data(50)
    df.loc[4, "w"] = bad
    for data in (df, ibis.memtable(df)):
        with pytest.raises(SurvivalInputError, match="weights column 'w'"):
            event_table(data, "time", "event", weights="w")
    with pytest.raises(SurvivalInputError, match="'nope'"):
        event_table(df, "time", "event", weights="nope")
    with pytest.raises(ValueError, match="weights column 'w'"):
        cox(df, duration="time", event="event", covariates=COLS, weights="w")


# --- weighted Cox ------------------------------------------------------------------------


@pytest.mark.parametrize("day", [True, False])
def test_weighted_efron_matches_lifelines(day: bool) -> None:
    df = _data(day=day)
    ours = cox(df, duration="time", event="event", covariates=COLS, weights="w", strata="site")
    ref = _lifelines(df, COLS, weights_col="w", strata=["site"])
    np.testing.assert_allclose(ours.summary["coef"], ref.params_[COLS], atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours.summary["se"], ref.standard_errors_[COLS], atol=1e-6)
    assert ours.loglik == pytest.approx(ref.log_likelihood_, abs=1e-6)
    plain = cox(df, duration="time", event="event", covariates=COLS, strata="site")
    assert np.abs(plain.summary["coef"] - ours.summary["coef"]).max() > 1e-3


def test_integer_weighted_breslow_equals_replicated_rows() -> None:
    df = _data(500)
    ours = cox(df, duration="time", event="event", covariates=COLS, weights="iw", ties="breslow")
    copies = df.loc[df.index.repeat(df["iw"])]
    ref = sm.PHReg(
        copies["time"].to_numpy(),
        copies[COLS].to_numpy(),
        status=copies["event"].to_numpy(),
        ties="breslow",
    ).fit(tol=1e-12)
    np.testing.assert_allclose(ours.summary["coef"], ref.params, atol=1e-8, rtol=0)
    np.testing.assert_allclose(ours.summary["se"], ref.bse, atol=1e-8, rtol=0)
    assert ours.loglik == pytest.approx(ref.llf, abs=1e-7)


# --- robust and clustered variances ------------------------------------------------------


@pytest.mark.parametrize(
    ("ours_kw", "ref_kw"),
    [
        ({"robust": True}, {"robust": True}),
        ({"robust": True, "weights": "w"}, {"robust": True, "weights_col": "w"}),
        ({"cluster": "cl"}, {"cluster_col": "cl"}),
        (
            {"cluster": "cl", "weights": "w", "strata": "site"},
            {"cluster_col": "cl", "weights_col": "w", "strata": ["site"]},
        ),
    ],
)
def test_sandwich_matches_lifelines(ours_kw: dict[str, object], ref_kw: dict[str, object]) -> None:
    # continuous times: lifelines' score residuals assume no tied times
    df = _data(day=False)
    ours = cox(df, duration="time", event="event", covariates=COLS, **ours_kw)  # type: ignore[arg-type]
    ref = _lifelines(df, COLS, **ref_kw)
    assert ours.robust
    np.testing.assert_allclose(ours.summary["coef"], ref.params_[COLS], atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours.summary["se"], ref.standard_errors_[COLS], atol=1e-8, rtol=0)
    np.testing.assert_allclose(ours.summary["p"], ref.summary["p"][COLS], atol=1e-8)
    naive = cox(df, duration="time", event="event", covariates=COLS, weights=ours_kw.get("weights"))  # type: ignore[arg-type]
    assert not naive.robust
    assert np.abs(naive.summary["se"] - ours.summary["se"]).max() > 1e-4
    np.testing.assert_allclose(np.sqrt(np.diag(ours.covariance)), ours.summary["se"], rtol=1e-14)


@pytest.mark.parametrize("clustered", [False, True])
def test_breslow_sandwich_with_ties_matches_statsmodels(clustered: bool) -> None:
    df = _data()
    groups = df["cl"].to_numpy() if clustered else np.arange(len(df))
    ours = cox(
        df,
        duration="time",
        event="event",
        covariates=COLS,
        ties="breslow",
        robust=True,
        cluster="cl" if clustered else None,
    )
    model = sm.PHReg(
        df["time"].to_numpy(), df[COLS].to_numpy(), status=df["event"].to_numpy(), ties="breslow"
    )
    ref = model.fit(groups=groups, tol=1e-12)
    np.testing.assert_allclose(ours.summary["se"], ref.bse, atol=1e-10, rtol=0)
    np.testing.assert_allclose(ours.covariance.to_numpy(), ref.cov_params(), atol=1e-12)


def _efron_score_residuals_loop(df: pd.DataFrame, beta: np.ndarray, weights: str) -> np.ndarray:
    """Score residuals by a literal loop over event times and Efron terms (R's coxscore)."""
    x = df[COLS].to_numpy()
    x = x - x.mean(axis=0)
    t, e, cw = df["time"].to_numpy(), df["event"].to_numpy(), df[weights].to_numpy()
    phi = np.exp(x @ beta)
    resid = np.zeros_like(x)
    for time in np.unique(t[e == 1]):
        risk = t >= time
        dead = (t == time) & (e == 1)
        d = dead.sum()
        mean_w = cw[dead].mean()
        for ell in range(d):
            f = ell / d
            at_risk = cw * phi * (risk - f * dead)
            denom = at_risk.sum()
            xbar = at_risk @ x / denom
            resid -= (mean_w * phi * (risk - f * dead) / denom)[:, None] * (x - xbar)
            resid[dead] += (x[dead] - xbar) / d
    return resid


def test_efron_sandwich_with_ties_equals_loop_reference() -> None:
    df = _data(300)
    fit = cox(df, duration="time", event="event", covariates=COLS, weights="w", cluster="cl")
    naive = cox(df, duration="time", event="event", covariates=COLS, weights="w")
    beta = fit.summary["coef"].to_numpy()
    u = _efron_score_residuals_loop(df, beta, "w") * df[["w"]].to_numpy()
    per_cluster = pd.DataFrame(u).groupby(df["cl"].to_numpy()).sum().to_numpy()
    bread = naive.covariance.to_numpy()
    expected = bread @ (per_cluster.T @ per_cluster) @ bread
    np.testing.assert_allclose(fit.covariance.to_numpy(), expected, rtol=1e-9, atol=1e-14)
    # residuals summed give the score: zero at the estimate, so the loop agrees with the fit
    np.testing.assert_allclose(u.sum(axis=0), 0.0, atol=1e-8)


def test_block_meats_add_up_to_pooled_meat() -> None:
    df = _data()
    df["cl"] = df["site"] + df["cl"].astype(str)  # clusters nested in sites
    fit = cox(df, duration="time", event="event", covariates=COLS, strata="site", cluster="cl")
    beta = fit.summary["coef"].to_numpy()
    pooled = make_block(df["time"], df["event"], df[COLS], df["site"], df["w"], df["cl"])
    parts = [
        make_block(p["time"], p["event"], p[COLS], p["site"], p["w"], p["cl"])
        for _, p in df.groupby("site")
    ]
    total = sum(block_meat(beta, b, "efron") for b in parts)
    np.testing.assert_allclose(total, block_meat(beta, pooled, "efron"), rtol=1e-10)
    unclustered = make_block(df["time"], df["event"], df[COLS], df["site"], df["w"])
    assert np.abs(block_meat(beta, unclustered, "efron") - total).max() > 1e-3


def test_weighted_clustered_cox_on_duckdb_equals_pandas(tmp_path: Path) -> None:
    df = _data(400)
    con = ibis.duckdb.connect(str(tmp_path / "c.duckdb"))
    kw = {
        "duration": "time",
        "event": "event",
        "covariates": COLS,
        "weights": "w",
        "cluster": "cl",
        "strata": ["site"],
    }
    ours = cox(con.create_table("d", df), **kw)  # type: ignore[arg-type]
    ref = cox(df, **kw)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(ours.summary, ref.summary, atol=1e-12, rtol=0)
    assert ours.robust and ours.n == len(df)
    df.loc[7, "cl"] = None
    with pytest.raises(ValueError, match="cluster column 'cl' has missing values"):
        cox(df, **kw)  # type: ignore[arg-type]
