"""Cox regression against lifelines and statsmodels, and pooled vs per-site-block fits."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import cast

import ibis
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from lifelines import CoxPHFitter
from lifelines.datasets import load_rossi
from lifelines.utils import concordance_index as lifelines_concordance

from clinnova_explore.analysis.result import Provenance
from clinnova_explore.analysis.survival.counts import SurvivalInputError
from clinnova_explore.analysis.survival.cox import (
    WARM_START_ROWS,
    concordance_index,
    cox,
    cox_result,
    design_matrix,
    fit_blocks,
)
from clinnova_explore.analysis.survival.cox_stats import block_stats, make_block, newton

ROSSI_COVARIATES = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
TIGHT = {"precision": 1e-12, "r_precision": 0.0}


def _lifelines(df: pd.DataFrame, **kwargs: object) -> CoxPHFitter:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return CoxPHFitter().fit(df, "week", "arrest", fit_options=TIGHT, **kwargs)


def _synthetic(n: int = 2000, seed: int = 1) -> pd.DataFrame:
    """Day-resolution times (heavy ties), three covariates, four sites."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.binomial(1, 0.4, size=n)
    x3 = rng.uniform(-1, 1, size=n)
    site = rng.choice(["a", "b", "c", "d"], size=n)
    base = {"a": 0.02, "b": 0.03, "c": 0.05, "d": 0.01}
    rate = np.array([base[s] for s in site]) * np.exp(0.5 * x1 - 0.7 * x2 + 0.3 * x3)
    t_event = rng.exponential(1 / rate)
    t_cens = rng.uniform(0, 120, size=n)
    time = np.ceil(np.minimum(t_event, t_cens))
    return pd.DataFrame(
        {
            "time": time,
            "event": (t_event <= t_cens).astype(int),
            "x1": x1,
            "x2": x2,
            "x3": x3,
            "site": site,
        }
    )


def test_rossi_matches_lifelines_efron() -> None:
    df = load_rossi()
    ours = cox(df, duration="week", event="arrest", covariates=ROSSI_COVARIATES)
    ref = _lifelines(df)
    s = ours.summary
    np.testing.assert_allclose(s["coef"], ref.params_[ROSSI_COVARIATES], atol=1e-6, rtol=0)
    np.testing.assert_allclose(s["se"], ref.standard_errors_[ROSSI_COVARIATES], atol=1e-6)
    np.testing.assert_allclose(s["p"], ref.summary["p"][ROSSI_COVARIATES], atol=1e-6)
    np.testing.assert_allclose(
        s["hr_lower"], ref.summary["exp(coef) lower 95%"][ROSSI_COVARIATES], rtol=1e-6
    )
    np.testing.assert_allclose(
        s["hr_upper"], ref.summary["exp(coef) upper 95%"][ROSSI_COVARIATES], rtol=1e-6
    )
    assert ours.loglik == pytest.approx(ref.log_likelihood_, abs=1e-8)
    assert ours.concordance == pytest.approx(ref.concordance_index_, abs=1e-12)
    assert (ours.n, ours.events) == (432, 114)
    assert ours.ties == "efron"
    html = ours._repr_html_()
    assert "prio" in html and "concordance" in html


def test_rossi_stratified_matches_lifelines() -> None:
    df = load_rossi()
    cols = ["fin", "age", "prio", "paro"]
    ours = cox(df, duration="week", event="arrest", covariates=cols, strata="wexp")
    ref = _lifelines(df[["week", "arrest", *cols, "wexp"]], strata=["wexp"])
    np.testing.assert_allclose(ours.summary["coef"], ref.params_[cols], atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours.summary["se"], ref.standard_errors_[cols], atol=1e-6)
    assert ours.loglik == pytest.approx(ref.log_likelihood_, abs=1e-8)
    assert ours.concordance == pytest.approx(ref.concordance_index_, abs=1e-12)
    # stratification changes the fit
    plain = cox(df, duration="week", event="arrest", covariates=cols)
    assert abs(plain.summary.loc["age", "coef"] - ours.summary.loc["age", "coef"]) > 1e-4


@pytest.mark.parametrize("ties", ["breslow", "efron"])
@pytest.mark.parametrize("stratified", [False, True])
@pytest.mark.parametrize("tied", [True, False])
def test_matches_statsmodels(ties: str, stratified: bool, tied: bool) -> None:
    df = _synthetic()
    if tied:
        assert df["time"].nunique() < len(df) / 10  # heavy ties (day resolution)
    else:
        df["time"] = df["time"] - np.random.default_rng(5).uniform(0, 1, len(df))
        assert df["time"].nunique() == len(df)
    cols = ["x1", "x2", "x3"]
    strata = "site" if stratified else None
    ours = cox(df, duration="time", event="event", covariates=cols, strata=strata, ties=ties)  # type: ignore[arg-type]
    model = sm.PHReg(
        df["time"].to_numpy(),
        df[cols].to_numpy(),
        status=df["event"].to_numpy(),
        strata=df["site"].to_numpy() if stratified else None,
        ties=ties,
    )
    ref = model.fit(tol=1e-12)
    np.testing.assert_allclose(ours.summary["coef"], ref.params, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours.summary["se"], ref.bse, atol=1e-6, rtol=0)
    assert ours.loglik == pytest.approx(ref.llf, abs=1e-6)


def test_efron_and_breslow_differ_on_ties() -> None:
    df = _synthetic()
    kw = {"duration": "time", "event": "event", "covariates": ["x1", "x2", "x3"]}
    efron = cox(df, ties="efron", **kw).summary["coef"]  # type: ignore[arg-type]
    breslow = cox(df, ties="breslow", **kw).summary["coef"]  # type: ignore[arg-type]
    assert np.abs(efron - breslow).max() > 1e-3


def test_no_ties_efron_equals_breslow() -> None:
    df = _synthetic()
    df["time"] = df["time"] + np.random.default_rng(3).uniform(0, 0.5, len(df))
    kw = {"duration": "time", "event": "event", "covariates": ["x1", "x2"]}
    efron = cox(df, ties="efron", **kw).summary  # type: ignore[arg-type]
    breslow = cox(df, ties="breslow", **kw).summary  # type: ignore[arg-type]
    np.testing.assert_allclose(efron, breslow, atol=1e-12)


def test_site_blocks_equal_pooled_stratified_fit() -> None:
    df = _synthetic()
    cols = ["x1", "x2", "x3"]
    pooled = cox(df, duration="time", event="event", covariates=cols, strata="site")
    blocks = [
        make_block(part["time"], part["event"], part[cols].to_numpy(), part["site"])
        for _, part in df.groupby("site")
    ]
    beta, cov, ll, _ = fit_blocks(blocks, len(cols))
    np.testing.assert_allclose(beta, pooled.summary["coef"], atol=1e-10, rtol=0)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), pooled.summary["se"], atol=1e-10)
    assert ll == pytest.approx(pooled.loglik, abs=1e-9)


def test_stratum_split_across_blocks_is_refused() -> None:
    df = _synthetic(200)
    halves = [df.iloc[:100], df.iloc[100:]]
    blocks = [make_block(h["time"], h["event"], h[["x1"]].to_numpy(), h["site"]) for h in halves]
    with pytest.raises(ValueError, match="more than one block"):
        fit_blocks(blocks, 1)


def test_categorical_covariate_expansion() -> None:
    df = _synthetic()
    df["arm"] = np.random.default_rng(7).choice(["placebo", "drug_a", "drug_b"], len(df))
    ours = cox(df, duration="time", event="event", covariates=["x1", "arm"])
    assert list(ours.summary.index) == ["x1", "arm[drug_b]", "arm[placebo]"]
    dummies = pd.get_dummies(df["arm"], prefix="arm", drop_first=True, dtype=float)
    manual = pd.concat([df[["time", "event", "x1"]], dummies], axis=1)
    ref = cox(manual, duration="time", event="event", covariates=["x1", *dummies.columns]).summary
    np.testing.assert_allclose(ours.summary.to_numpy(), ref.to_numpy(), atol=1e-12)
    # category order (not alphabetical) decides the reference level
    df["arm"] = pd.Categorical(df["arm"], categories=["placebo", "drug_a", "drug_b"])
    x = design_matrix(df, ["arm"])
    assert list(x.columns) == ["arm[drug_a]", "arm[drug_b]"]


def test_concordance_matches_lifelines_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        t = rng.integers(0, 15, 400)
        e = rng.integers(0, 2, 400)
        score = rng.integers(0, 6, 400).astype(float)
        ours = concordance_index(t, e, -score)
        assert ours == pytest.approx(lifelines_concordance(t, score, e), abs=1e-14)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": "x2"}, "x2"),
        ({"set": ("time", -1.0)}, "'time'.*negative"),
        ({"set": ("event", 2)}, "'event'"),
        ({"set": ("x1", np.nan)}, "'x1'.*missing"),
        ({"set": ("time", np.nan)}, "'time'"),
    ],
)
def test_invalid_input_names_the_column(change: dict[str, object], message: str) -> None:
    df = _synthetic(50)
    if "drop" in change:
        df = df.drop(columns=[str(change["drop"])])
    else:
        col, value = cast(tuple[str, float], change["set"])
        df[col] = df[col].astype(float)
        df.loc[3, col] = value
    with pytest.raises((KeyError, ValueError), match=message):
        cox(df, duration="time", event="event", covariates=["x1", "x2"])


def test_alpha_and_max_iter_take_effect() -> None:
    df = _synthetic(300)
    kw = {"duration": "time", "event": "event", "covariates": ["x1", "x2"]}
    wide = cox(df, alpha=0.01, **kw).summary  # type: ignore[arg-type]
    fit = cox(df, **kw)  # type: ignore[arg-type]
    narrow = fit.summary
    np.testing.assert_allclose(wide["coef"], narrow["coef"], atol=1e-14)
    assert (wide["hr_lower"] < narrow["hr_lower"]).all()
    assert (wide["hr_upper"] > narrow["hr_upper"]).all()
    with pytest.raises(RuntimeError, match="did not converge in 1 iterations"):
        cox(df, max_iter=1, **kw)  # type: ignore[arg-type]
    loose = cox(df, tol=1e-2, **kw)  # type: ignore[arg-type]
    assert loose.iterations < fit.iterations


def test_invalid_ties_and_single_level_categorical() -> None:
    df = _synthetic(50)
    with pytest.raises(ValueError, match="ties"):
        cox(df, duration="time", event="event", covariates=["x1"], ties="exact")  # type: ignore[arg-type]
    df["one"] = "only"
    with pytest.raises(ValueError, match="'one'"):
        cox(df, duration="time", event="event", covariates=["one"])
    df["const"] = 2.0
    with pytest.raises(ValueError, match="'const' is constant"):
        cox(df, duration="time", event="event", covariates=["x1", "const"])


def test_newton_and_cox_result_rebuild_the_fit() -> None:
    df = _synthetic()
    cols = ["x1", "x2", "x3"]
    fit = cox(df, duration="time", event="event", covariates=cols, strata="site")
    blocks = [
        make_block(p["time"], p["event"], p[cols].to_numpy(), p["site"])
        for _, p in df.groupby("site")
    ]

    def total(beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        parts = [s for b in blocks for s in block_stats(beta, b, "efron").values()]
        return (
            sum(s.loglik for s in parts),
            np.sum([s.score for s in parts], axis=0),
            np.sum([s.information for s in parts], axis=0),
        )

    beta, cov, ll, its = newton(total, len(cols), tol=1e-12, max_iter=50)
    assert its == fit.iterations
    rebuilt = cox_result(
        beta,
        cov,
        cols,
        loglik=ll,
        n=len(df),
        events=fit.events,
        strata="site",
        iterations=its,
    )
    pd.testing.assert_frame_equal(rebuilt.summary, fit.summary, atol=1e-10, rtol=0)
    pd.testing.assert_frame_equal(rebuilt.covariance, fit.covariance, atol=1e-12, rtol=0)
    assert rebuilt.inputs is None and np.isnan(rebuilt.concordance)
    assert not rebuilt.robust and rebuilt.strata == "site"
    with pytest.raises(ValueError, match="3 names for 2"):
        cox_result(beta[:2], cov[:2, :2], cols, loglik=ll, n=1, events=1)


def test_covariance_is_inverse_information_and_matches_lifelines() -> None:
    df = load_rossi()
    ours = cox(df, duration="week", event="arrest", covariates=ROSSI_COVARIATES)
    ref = _lifelines(df)
    assert list(ours.covariance.index) == ROSSI_COVARIATES
    np.testing.assert_allclose(
        ours.covariance.to_numpy(),
        ref.variance_matrix_.loc[ROSSI_COVARIATES, ROSSI_COVARIATES].to_numpy(),
        atol=1e-9,
    )


def test_provenance_can_be_attached() -> None:
    df = _synthetic(300)
    fit = cox(df, duration="time", event="event", covariates=["x1"])
    assert fit.provenance is None
    prov = Provenance(analysis="cox", mode="pooled", sites=("a", "b"))
    tagged = dataclasses.replace(fit, provenance=prov)
    assert tagged.provenance is prov
    pd.testing.assert_frame_equal(tagged.summary, fit.summary)
    assert tagged.concordance == fit.concordance


def test_ibis_table_equals_pandas(tmp_path: Path) -> None:
    df = _synthetic()
    df["unused"] = "not fetched"
    con = ibis.duckdb.connect(str(tmp_path / "cox.duckdb"))
    table = con.create_table("d", df)
    kw = {"duration": "time", "event": "event", "covariates": ["x1", "x2"], "strata": "site"}
    ours = cox(table, **kw)  # type: ignore[arg-type]
    ref = cox(df, **kw)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(ours.summary, ref.summary, atol=1e-12, rtol=0)
    with pytest.raises(SurvivalInputError, match="'x9'"):
        cox(table, duration="time", event="event", covariates=["x9"])
    with pytest.raises(TypeError, match="pandas DataFrame or an ibis table"):
        cox(df.to_numpy(), duration="time", event="event", covariates=["x1"])


def test_strata_list_matches_lifelines() -> None:
    df = load_rossi()
    cols = ["fin", "age", "prio"]
    ours = cox(df, duration="week", event="arrest", covariates=cols, strata=["wexp", "mar"])
    ref = _lifelines(df[["week", "arrest", *cols, "wexp", "mar"]], strata=["wexp", "mar"])
    np.testing.assert_allclose(ours.summary["coef"], ref.params_[cols], atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours.summary["se"], ref.standard_errors_[cols], atol=1e-6)
    assert ours.loglik == pytest.approx(ref.log_likelihood_, abs=1e-8)
    assert ours.concordance == pytest.approx(ref.concordance_index_, abs=1e-12)
    assert ours.strata == ("wexp", "mar")
    assert "wexp, mar" in ours._repr_html_()
    one = cox(df, duration="week", event="arrest", covariates=cols, strata=["wexp"])
    assert abs(one.loglik - ours.loglik) > 1e-3


def test_stratum_without_events_adds_nothing() -> None:
    df = _synthetic(600)
    quiet = df[df["site"] == "a"].assign(site="z", event=0)
    cols = ["x1", "x2"]
    both = cox(
        pd.concat([df, quiet]), duration="time", event="event", covariates=cols, strata="site"
    )
    alone = cox(df, duration="time", event="event", covariates=cols, strata="site")
    np.testing.assert_allclose(both.summary["coef"], alone.summary["coef"], atol=1e-10)
    assert both.loglik == pytest.approx(alone.loglik, abs=1e-9)
    assert both.n == alone.n + len(quiet)


def test_warm_start_on_large_data_reaches_the_same_maximum() -> None:
    n = WARM_START_ROWS + 1000
    rng = np.random.default_rng(8)
    x = rng.normal(size=(n, 2))
    site = rng.integers(0, 3, n)
    t_event = rng.exponential(1 / (0.01 * np.exp(x @ [0.4, -0.3])))
    time = np.ceil(np.minimum(t_event, rng.uniform(0, 200, n)))
    df = pd.DataFrame({"t": time, "e": (t_event <= time).astype(int), "site": site})
    df[["a", "b"]] = x
    fit = cox(df, duration="t", event="e", covariates=["a", "b"], strata="site")
    block = make_block(df["t"], df["e"], x, site)
    beta, cov, ll, its = fit_blocks([block], 2)  # from zero, no subsample
    np.testing.assert_allclose(fit.summary["coef"], beta, atol=1e-12, rtol=0)
    np.testing.assert_allclose(fit.covariance.to_numpy(), cov, rtol=1e-10)
    assert fit.loglik == pytest.approx(ll, abs=1e-8)
    assert fit.iterations < its  # the subsample's estimate saved full-data iterations


def test_missing_strata_label_names_the_column() -> None:
    df = _synthetic(200)
    df.loc[5, "site"] = None
    with pytest.raises(ValueError, match="strata column 'site' has missing values"):
        cox(df, duration="time", event="event", covariates=["x1"], strata="site")
    df["region"] = "r1"
    with pytest.raises(ValueError, match="strata column 'site' has missing values"):
        cox(df, duration="time", event="event", covariates=["x1"], strata=["region", "site"])
