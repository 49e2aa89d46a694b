"""Logistic regression by Newton-Raphson, checked against statsmodels Logit and GLM."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from clinnova_explore.analysis.logistic import (
    LogisticResult,
    logistic,
    logistic_stats,
    newton_raphson,
)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(20261128)
    n = 600
    x = rng.normal(size=n)
    age = rng.uniform(20, 80, n)
    sex = rng.choice(["F", "M"], n)
    region = rng.choice(["north", "south", "west"], n)
    eta = -1.0 + 0.8 * x + 0.02 * (age - 50) + 0.5 * (sex == "M") - 0.7 * (region == "west")
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    w = rng.uniform(0.2, 3.0, n)
    return pd.DataFrame({"y": y, "x": x, "age": age, "sex": sex, "region": region, "w": w})


def _statsmodels_design(df: pd.DataFrame) -> pd.DataFrame:
    x = pd.DataFrame(
        {
            "const": 1.0,
            "x": df["x"],
            "age": df["age"],
            "sex[M]": (df["sex"] == "M").astype(float),
            "region[south]": (df["region"] == "south").astype(float),
            "region[west]": (df["region"] == "west").astype(float),
        }
    )
    return x


COVS = ["x", "age", "sex", "region"]


def test_matches_statsmodels_logit(data: pd.DataFrame) -> None:
    fit = logistic(data, outcome="y", covariates=COVS)
    ref = sm.Logit(data["y"], _statsmodels_design(data)).fit(disp=0, method="newton", tol=1e-14)
    assert list(fit.summary.index) == [
        "intercept",
        "x",
        "age",
        "sex[M]",
        "region[south]",
        "region[west]",
    ]
    np.testing.assert_allclose(fit.summary["coef"], ref.params, rtol=0, atol=1e-8)
    np.testing.assert_allclose(fit.summary["se"], ref.bse, rtol=0, atol=1e-8)
    np.testing.assert_allclose(fit.summary["p"], ref.pvalues, rtol=1e-6, atol=1e-12)
    ci = ref.conf_int()
    np.testing.assert_allclose(fit.summary["or_lower"], np.exp(ci[0]), rtol=1e-8)
    np.testing.assert_allclose(fit.summary["or_upper"], np.exp(ci[1]), rtol=1e-8)
    assert fit.loglik == pytest.approx(ref.llf, abs=1e-8)
    assert fit.n == len(data)
    np.testing.assert_allclose(fit.covariance.to_numpy(), ref.cov_params().to_numpy(), atol=1e-10)


def test_weights_match_statsmodels_glm_freq_weights(data: pd.DataFrame) -> None:
    fit = logistic(data, outcome="y", covariates=COVS, weights="w")
    ref = sm.GLM(
        data["y"], _statsmodels_design(data), family=sm.families.Binomial(), freq_weights=data["w"]
    ).fit(tol=1e-14)
    np.testing.assert_allclose(fit.summary["coef"], ref.params, rtol=0, atol=1e-8)
    np.testing.assert_allclose(fit.summary["se"], ref.bse, rtol=0, atol=1e-8)
    assert fit.loglik == pytest.approx(ref.llf, abs=1e-7)
    unweighted = logistic(data, outcome="y", covariates=COVS)
    assert not np.allclose(fit.summary["coef"], unweighted.summary["coef"], atol=1e-3)


def test_predict_matches_statsmodels(data: pd.DataFrame) -> None:
    fit = logistic(data, outcome="y", covariates=COVS)
    ref = sm.Logit(data["y"], _statsmodels_design(data)).fit(disp=0, method="newton", tol=1e-14)
    new = data.iloc[:25]
    np.testing.assert_allclose(
        fit.predict(new).to_numpy(), ref.predict(_statsmodels_design(new)), atol=1e-10
    )
    assert fit.predict(new).index.equals(new.index)


def test_alpha_widens_interval(data: pd.DataFrame) -> None:
    narrow = logistic(data, outcome="y", covariates=["x"], alpha=0.2).summary
    wide = logistic(data, outcome="y", covariates=["x"], alpha=0.01).summary
    assert (wide["or_lower"] < narrow["or_lower"]).all()
    assert (wide["or_upper"] > narrow["or_upper"]).all()
    np.testing.assert_allclose(wide["coef"], narrow["coef"])


def test_stats_are_derivatives_of_loglik(data: pd.DataFrame) -> None:
    x = np.column_stack([np.ones(len(data)), data["x"], data["age"] / 10])
    y = data["y"].to_numpy()
    w = data["w"].to_numpy()
    beta = np.array([0.3, -0.2, 0.1])
    ll, score, info = logistic_stats(beta, x, y, w)
    h = 1e-6
    for j in range(3):
        e = np.zeros(3)
        e[j] = h
        up, down = logistic_stats(beta + e, x, y, w), logistic_stats(beta - e, x, y, w)
        assert score[j] == pytest.approx((up[0] - down[0]) / (2 * h), rel=1e-6)
        np.testing.assert_allclose(-(up[1] - down[1]) / (2 * h), info[:, j], rtol=1e-5)
    # hand value of one term: y log(mu) + (1 - y) log(1 - mu)
    mu = 1 / (1 + np.exp(-(x @ beta)))
    assert ll == pytest.approx(float(np.sum(w * (y * np.log(mu) + (1 - y) * np.log1p(-mu)))))


def test_newton_raphson_reports_singular_design() -> None:
    x = np.column_stack([np.ones(6), np.arange(6.0), 2 * np.arange(6.0)])
    y = np.array([0, 1, 0, 1, 1, 0])
    with pytest.raises(RuntimeError, match="singular"):
        newton_raphson(lambda b: logistic_stats(b, x, y), 3)


def test_bad_inputs_speak_to_the_user(data: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="outcome column 'age' must hold only 0/1"):
        logistic(data, outcome="age", covariates=["x"])
    with pytest.raises(KeyError, match="covariate 'nope'"):
        logistic(data, outcome="y", covariates=["nope"])
    holes = data.assign(x=data["x"].where(data.index > 3))
    with pytest.raises(ValueError, match="covariate 'x' has missing values"):
        logistic(holes, outcome="y", covariates=["x"])
    with pytest.raises(ValueError, match="weights column 'x' must be finite and non-negative"):
        logistic(data, outcome="y", covariates=["age"], weights="x")


def test_result_shape(data: pd.DataFrame) -> None:
    fit = logistic(data, outcome="y", covariates=["x", "sex"])
    assert isinstance(fit, LogisticResult)
    assert list(fit.summary.columns) == ["coef", "se", "or", "or_lower", "or_upper", "z", "p"]
    assert fit.levels == {"sex": ("F", "M")}
    assert fit.provenance is None
    assert "Logistic regression" in fit._repr_html_()
