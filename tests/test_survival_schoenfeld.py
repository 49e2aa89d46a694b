"""Proportional-hazards test (scaled Schoenfeld residuals) against lifelines.

Reference: lifelines ``proportional_hazard_test`` (Grambsch-Therneau approximation, as R's
``cox.zph`` before survival 3.0) on the Rossi recidivism data (lifelines.datasets, from Rossi,
Berk & Lenihan 1980, as distributed with lifelines, MIT licence) and synthetic data.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.datasets import load_rossi
from lifelines.statistics import proportional_hazard_test
from scipy.stats import chi2

from clinnova_explore.analysis.survival.cox import cox, cox_result
from clinnova_explore.analysis.survival.schoenfeld import TRANSFORMS, proportional_hazards_test

ROSSI = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
TIGHT = {"precision": 1e-12, "r_precision": 0.0}


def _lifelines_stats(df: pd.DataFrame, cols: list[str], transform: str, **kw: object) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = CoxPHFitter().fit(df, "week", "arrest", fit_options=TIGHT, **kw)
        out = proportional_hazard_test(ref, df, time_transform=transform)
    return out.summary["test_statistic"][cols]


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_rossi_matches_lifelines(transform: str) -> None:
    df = load_rossi()
    fit = cox(df, duration="week", event="arrest", covariates=ROSSI)
    ours = proportional_hazards_test(fit, transform)  # type: ignore[arg-type]
    ref = _lifelines_stats(df, ROSSI, transform)
    np.testing.assert_allclose(ours.summary["test_statistic"], ref, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ours.summary["p"], chi2.sf(ref, 1), atol=1e-7)
    assert (ours.summary["df"] == 1).all()
    assert ours.global_df == len(ROSSI)
    assert len(ours.residuals) == fit.events
    pd.testing.assert_frame_equal(fit.check_ph(transform).summary, ours.summary)


@pytest.mark.parametrize("transform", ["km", "identity", "log"])
def test_stratified_matches_lifelines(transform: str) -> None:
    df = load_rossi()[["week", "arrest", "fin", "age", "prio", "wexp"]]
    cols = ["fin", "age", "prio"]
    fit = cox(df, duration="week", event="arrest", covariates=cols, strata="wexp")
    ours = proportional_hazards_test(fit, transform)  # type: ignore[arg-type]
    ref = _lifelines_stats(df, cols, transform, strata=["wexp"])
    np.testing.assert_allclose(ours.summary["test_statistic"], ref, rtol=1e-6, atol=1e-8)


def _synthetic(n: int, *, varying: bool, seed: int = 4) -> pd.DataFrame:
    """x1 has a constant effect; with ``varying`` x2's effect flips sign at t = 5."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.binomial(1, 0.5, n).astype(float)
    early = rng.exponential(1 / (0.1 * np.exp(0.5 * x1 + (1.2 if varying else 0.0) * x2)))
    late = 5 + rng.exponential(1 / (0.1 * np.exp(0.5 * x1 - (1.2 if varying else 0.0) * x2)))
    t_event = np.where(early < 5, early, late)
    t_cens = rng.uniform(0, 25, n)
    return pd.DataFrame(
        {
            "week": np.round(np.minimum(t_event, t_cens), 1),
            "arrest": (t_event <= t_cens).astype(int),
            "x1": x1,
            "x2": x2,
        }
    )


def test_non_proportional_effect_is_detected() -> None:
    cols = ["x1", "x2"]
    bad = _synthetic(1500, varying=True)
    fit = cox(bad, duration="week", event="arrest", covariates=cols)
    ours = proportional_hazards_test(fit, "km")
    ref = _lifelines_stats(bad, cols, "km")
    np.testing.assert_allclose(ours.summary["test_statistic"], ref, rtol=1e-6)
    assert ours.summary.loc["x2", "p"] < 1e-6 < ours.summary.loc["x1", "p"]
    assert ours.global_p < 1e-6
    good = cox(_synthetic(1500, varying=False), duration="week", event="arrest", covariates=cols)
    assert good.check_ph("km").summary.loc["x2", "p"] > 1e-3


def test_global_statistic_with_one_covariate_equals_the_covariate_test() -> None:
    df = load_rossi()
    fit = cox(df, duration="week", event="arrest", covariates=["age"])
    ours = proportional_hazards_test(fit, "identity")
    assert ours.global_statistic == pytest.approx(ours.summary.loc["age", "test_statistic"])
    assert ours.global_p == pytest.approx(ours.summary.loc["age", "p"])
    assert "Proportional hazards" in ours._repr_html_()


def test_transform_changes_result_and_errors() -> None:
    df = load_rossi()
    fit = cox(df, duration="week", event="arrest", covariates=["age", "prio"])
    stats = {t: fit.check_ph(t).summary["test_statistic"].to_numpy() for t in TRANSFORMS}
    assert len({tuple(np.round(v, 8)) for v in stats.values()}) == len(TRANSFORMS)
    with pytest.raises(ValueError, match="transform must be one of"):
        fit.check_ph("square")
    assert (
        dataclasses.replace(fit, provenance=None).check_ph().summary.equals(fit.check_ph().summary)
    )
    bare = cox_result(
        fit.summary["coef"], fit.covariance, ["age", "prio"], loglik=fit.loglik, n=1, events=1
    )
    with pytest.raises(ValueError, match="carries no data"):
        bare.check_ph()
