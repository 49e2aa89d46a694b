"""Compare two treatments on a time-to-event outcome: naive and propensity-adjusted Cox models.

:func:`compare_treatments` fits the propensity model, then

- ``"naive"``: Cox of the outcome on treatment alone (stratified by site);
- ``"iptw"``: the same Cox model weighted by stabilized inverse probability of treatment weights,
  with a robust (sandwich) standard error; the hazard ratio is *marginal* (population-averaged);
- ``"match"``: the Cox model on 1:1 caliper-matched pairs (matched within site), with a
  standard error clustered on the pair;
- ``"regression"``: the Cox model of treatment plus the covariates (a *conditional* hazard
  ratio; hazard ratios are not collapsible, so it differs from the marginal one even without
  confounding).

The outcome is cause-specific: ``event == 1`` is the outcome, anything else (0 censored, 2 a
competing event such as death) is censored. A :class:`~clinnova_explore.federated.Federation`
gives the same analysis federated (see :mod:`clinnova_explore.analysis.effects.federated`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from clinnova_explore.analysis.effects.balance import balance
from clinnova_explore.analysis.effects.equipoise import equipoise
from clinnova_explore.analysis.effects.matching import PAIR_ID, match
from clinnova_explore.analysis.effects.propensity import (
    PropensityModel,
    check_treatment,
    propensity,
    strata_indicators,
)
from clinnova_explore.analysis.effects.weighting import iptw
from clinnova_explore.analysis.result import Provenance
from clinnova_explore.analysis.survival.cox import CoxResult, cox
from clinnova_explore.analysis.survival.km import KaplanMeierResult, kaplan_meier

if TYPE_CHECKING:
    from clinnova_explore.federated import Federation

__all__ = ["METHODS", "EffectResult", "Method", "compare_treatments", "outcome_indicator"]

Method = Literal["naive", "iptw", "match", "regression"]
METHODS: tuple[Method, ...] = ("naive", "iptw", "match", "regression")

PS = "_ps"
WEIGHT = "_iptw"
EVENT = "_outcome"


@dataclass(frozen=True)
class EffectResult:
    """Naive and adjusted treatment effects, with the diagnostics behind them.

    Parameters
    ----------
    method
        The adjustment (``"naive"``, ``"iptw"``, ``"match"``, ``"regression"``).
    treatment
        Treatment column (1 = target arm).
    naive
        Cox model of the outcome on treatment alone.
    adjusted
        The adjusted Cox model (the naive one for ``method="naive"``).
    km
        Kaplan-Meier curves by treatment: weighted (IPTW), in the matched sample (matching)
        or unadjusted.
    balance
        Standardized mean differences before and after (see
        :func:`~clinnova_explore.analysis.effects.balance.balance`).
    equipoise
        Share of persons with a preference score in [0.3, 0.7].
    ps_model
        The propensity model (coefficient ``summary``; ``scores`` only for a pandas input).
    n
        Persons analysed (complete covariates).
    n_adjusted
        Persons in the adjusted analysis (matched, or with positive weight).
    excluded_missing
        Persons left out for missing covariates (in a federation: at the sites that took
        part).
    provenance
        How the numbers were made (federated results only).
    """

    method: Method
    treatment: str
    naive: CoxResult
    adjusted: CoxResult
    km: KaplanMeierResult | None
    balance: pd.DataFrame
    equipoise: float
    ps_model: PropensityModel
    n: int
    n_adjusted: int
    excluded_missing: int = 0
    provenance: Provenance | None = None

    @property
    def summary(self) -> pd.DataFrame:
        """Hazard ratio of treatment, naive and adjusted: ``hr, hr_lower, hr_upper, p, ...``."""
        rows = {}
        for label, fit in (("naive", self.naive), (self.method, self.adjusted)):
            row = fit.summary.loc[self.treatment, ["hr", "hr_lower", "hr_upper", "se", "p"]]
            rows[label] = {**row.to_dict(), "n": fit.n, "events": fit.events}
        out = pd.DataFrame.from_dict(rows, orient="index")
        out.index.name = "model"
        return out

    def love_plot(self, **kwargs: Any) -> Any:
        """Absolute SMDs before and after (:func:`clinnova_explore.viz.balance.love_plot`)."""
        from clinnova_explore.viz.balance import love_plot

        return love_plot(self.balance, **kwargs)

    def _repr_html_(self) -> str:
        table = self.summary.to_html(float_format=lambda v: f"{v:.4g}")
        foot = (
            f"<p>{html.escape(self.treatment)}: {html.escape(self.method)}; n={self.n}, "
            f"adjusted n={self.n_adjusted}, equipoise={self.equipoise:.3f}</p>"
        )
        return table + foot


def outcome_indicator(event: pd.Series) -> pd.Series:
    """1 where ``event == 1`` (the outcome), else 0 (censored or competing event)."""
    values = pd.to_numeric(event, errors="coerce")
    if values.isna().any():
        raise ValueError(
            f"event column {event.name!r} must be numeric: 0 censored, 1 outcome, 2 competing"
        )
    return (values == 1).astype(np.int64)


def check_method(method: str) -> Method:
    """``method`` if it is one of :data:`METHODS`, else a clear error."""
    for known in METHODS:
        if method == known:
            return known
    raise ValueError(f"method must be one of {list(METHODS)}, not {method!r}")


def _complete(
    data: pd.DataFrame, columns: Sequence[str], strata: str | None
) -> tuple[pd.DataFrame, int]:
    need = [*columns, *([strata] if strata else [])]
    missing = [c for c in need if c not in data.columns]
    if missing:
        raise KeyError(f"column(s) {missing} not in data; available: {list(data.columns)}")
    keep = data[list(columns)].notna().all(axis=1)
    return data[keep], int((~keep).sum())


def _ps_covariates(
    data: pd.DataFrame, covariates: Sequence[str], strata: str | None
) -> tuple[pd.DataFrame, list[str]]:
    if strata is None:
        return data, list(covariates)
    levels = sorted(map(str, data[strata].unique()))
    dummies = strata_indicators(data, strata, levels)
    return pd.concat([data, dummies], axis=1), [*covariates, *dummies.columns]


def compare_treatments(
    data: pd.DataFrame | Federation,
    *,
    treatment: str,
    duration: str,
    event: str,
    covariates: Sequence[str],
    method: Method = "iptw",
    strata: str | None = "site",
    caliper: float | None = 0.2,
    stabilized: bool = True,
    trim: tuple[float, float] | None = None,
    order_by: str | None = "person_id",
    alpha: float = 0.05,
) -> EffectResult:
    """Estimate the effect of ``treatment`` on the hazard of the outcome.

    Parameters
    ----------
    data
        One row per person (pandas), or a
        :class:`~clinnova_explore.federated.Federation` (analysed federated).
    treatment
        0/1 column (1 = target arm, 0 = comparator).
    duration
        Follow-up time column.
    event
        Event column: 1 outcome; 0 censored; any other value (e.g. 2, a competing death) is
        censored too (cause-specific hazard).
    covariates
        Numeric baseline confounders for the propensity model (and ``"regression"``). Persons
        with a missing covariate are left out (counted in ``excluded_missing``).
    method
        ``"naive"``, ``"iptw"`` (default), ``"match"`` or ``"regression"``.
    strata
        Column with a separate baseline hazard per value (default ``"site"``); its levels also
        enter the propensity model as indicators, and matching happens within it. ``None``
        for neither.
    caliper
        Matching caliper in SDs of the logit propensity score (``None``: no caliper).
    stabilized
        Stabilized IPT weights.
    trim
        Optional propensity score bounds ``(low, high)``; persons outside get weight 0.
    order_by
        Column breaking ties in matching, if present in the data (default ``"person_id"``).
    alpha
        Confidence intervals are ``1 - alpha``.

    Returns
    -------
    EffectResult
        ``.summary`` compares the naive and adjusted hazard ratios.
    """
    method = check_method(method)
    if not isinstance(data, pd.DataFrame):
        from clinnova_explore.analysis.effects.federated import compare_federated

        return compare_federated(
            data,
            treatment=treatment,
            duration=duration,
            event=event,
            covariates=covariates,
            method=method,
            strata=strata,
            caliper=caliper,
            stabilized=stabilized,
            trim=trim,
            order_by=order_by,
            alpha=alpha,
        )
    df, dropped = _complete(data, [treatment, duration, event, *covariates], strata)
    df = df.reset_index(drop=True)
    t = check_treatment(df, treatment)
    df = df.assign(**{EVENT: outcome_indicator(df[event])})
    ps_data, ps_covs = _ps_covariates(df, covariates, strata)
    model = propensity(ps_data, treatment=treatment, covariates=ps_covs)
    df = df.assign(**{PS: model.scores})
    cox_args: dict[str, Any] = {
        "duration": duration,
        "event": EVENT,
        "strata": strata,
        "alpha": alpha,
    }
    naive = cox(df, covariates=[treatment], **cox_args)
    equi = equipoise(df[PS], t)
    km_args: dict[str, Any] = {
        "duration": duration,
        "event": EVENT,
        "group": treatment,
        "alpha": alpha,
    }
    n_adjusted = len(df)
    if method == "iptw":
        w = iptw(df[PS], t, stabilized=stabilized, trim=trim)
        kept = df.assign(**{WEIGHT: w})[w > 0]
        adjusted = cox(kept, covariates=[treatment], weights=WEIGHT, robust=True, **cox_args)
        km = kaplan_meier(kept, weights=WEIGHT, **km_args)
        table = balance(df, treatment=treatment, covariates=covariates, weights=w)
        n_adjusted = len(kept)
    elif method == "match":
        by = order_by if order_by in df.columns else None
        matched = match(df, ps=PS, treatment=treatment, caliper=caliper, within=strata, order_by=by)
        if matched.empty:
            raise ValueError("no pairs could be matched within the caliper; widen the caliper")
        adjusted = cox(matched, covariates=[treatment], cluster=PAIR_ID, **cox_args)
        km = kaplan_meier(matched, **km_args)
        chosen = df.index.isin(matched.index).astype(np.float64)
        table = balance(df, treatment=treatment, covariates=covariates, weights=chosen)
        n_adjusted = len(matched)
    else:
        terms = [treatment] if method == "naive" else [treatment, *covariates]
        adjusted = naive if method == "naive" else cox(df, covariates=terms, **cox_args)
        km = kaplan_meier(df, **km_args)
        table = balance(df, treatment=treatment, covariates=covariates)
    return EffectResult(
        method, treatment, naive, adjusted, km, table, equi, model, len(df), n_adjusted, dropped
    )
