"""Survival estimators against results published for R's ``survival`` package.

The data sets ship with lifelines (``load_rossi``, ``load_lung``, status coded 1 = event).
Published values, printed by R to the digits compared here:

- Rossi recidivism, ``coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio)``
  (Efron ties): J. Fox and S. Weisberg, *Cox Proportional-Hazards Regression for Survival Data
  in R*, appendix to *An R Companion to Applied Regression*, 2nd ed. (2011).
- NCCTG lung cancer: ``survfit(Surv(time, status) ~ 1)`` median 310 days (95% CI 285-363);
  by sex 270 (212-310) and 426 (348-550); ``survdiff(... ~ sex)`` chi-squared 10.3 on 1 df,
  p = 0.00131; ``coxph(Surv(time, status) ~ age + sex)`` coefficients 0.017045 (se 0.009223)
  and -0.513219 (se 0.167458). These are the outputs of the ``survival`` package's examples
  (T. Therneau, LGPL-2 or later), reproduced in its vignettes and in many tutorials.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_lung, load_rossi

from clinnova_explore import cox, kaplan_meier, logrank

ROSSI = pd.DataFrame(
    {
        "coef": [-0.37942, -0.05744, 0.31390, -0.14980, -0.43370, -0.08487, 0.09150],
        "se": [0.19138, 0.02200, 0.30799, 0.21222, 0.38187, 0.19576, 0.02865],
    },
    index=["fin", "age", "race", "wexp", "mar", "paro", "prio"],
)


def test_rossi_cox_equals_published_r_fit() -> None:
    fit = cox(load_rossi(), duration="week", event="arrest", covariates=list(ROSSI.index))
    got = fit.summary.loc[ROSSI.index, ["coef", "se"]]
    # R prints five decimals: agreement to half a unit in the last digit
    np.testing.assert_allclose(got.to_numpy(), ROSSI.to_numpy(), atol=5e-6)
    assert fit.loglik == pytest.approx(-658.748, abs=5e-4)


def test_rossi_breslow_is_not_the_published_efron_fit() -> None:
    """The published digits are tight enough to tell the tie methods apart."""
    fit = cox(
        load_rossi(), duration="week", event="arrest", covariates=list(ROSSI.index), ties="breslow"
    )
    diff = (fit.summary.loc[ROSSI.index, "coef"] - ROSSI["coef"]).abs().max()
    assert diff > 1e-3


def test_lung_kaplan_meier_medians_equal_published() -> None:
    lung = load_lung()
    overall = kaplan_meier(lung, duration="time", event="status").median
    assert tuple(overall.loc["all", ["median", "lower", "upper"]]) == (310.0, 285.0, 363.0)
    by_sex = kaplan_meier(lung, duration="time", event="status", group="sex").median
    assert tuple(by_sex.loc[1, ["median", "lower", "upper"]]) == (270.0, 212.0, 310.0)
    assert tuple(by_sex.loc[2, ["median", "lower", "upper"]]) == (426.0, 348.0, 550.0)


def test_lung_logrank_equals_published() -> None:
    res = logrank(load_lung(), duration="time", event="status", group="sex")
    assert res.df == 1
    assert round(res.statistic, 1) == 10.3
    assert res.p_value == pytest.approx(0.00131, abs=5e-6)


def test_lung_cox_equals_published() -> None:
    fit = cox(load_lung(), duration="time", event="status", covariates=["age", "sex"])
    np.testing.assert_allclose(
        fit.summary.loc[["age", "sex"], ["coef", "se"]].to_numpy(),
        [[0.017045, 0.009223], [-0.513219, 0.167458]],
        atol=5e-7,
    )
