"""Treatment effects over a :class:`~clinnova_explore.federated.Federation`.

The same analysis as the pandas path of
:func:`~clinnova_explore.analysis.effects.compare.compare_treatments`, split into what sites do
and what the coordinator does:

1. each site keeps complete cases and derives the outcome indicator (``fed.transform``);
2. a moments round (:class:`MomentsStep`) releases per-arm covariate moments: balance before,
   persons per arm;
3. the propensity model is a federated logistic regression (``fed.logistic``) with the site as
   a categorical covariate (fixed effects), and each site scores its own rows with the
   released coefficients;
4. a second moments round gives the share in equipoise and the persons kept by trimming;
5. IPTW: each site computes its weights from the marginal share treated (over all sites), and
   the weighted Cox model with a robust variance runs by Newton rounds; matching: each site
   matches its own persons, and the Cox model clusters on the pair;
6. a last moments round gives balance after weighting or matching.

On ``fed.pooled()`` the same code runs on the concatenated rows, so federated and pooled
results agree to rounding error (matching within site, strata by site).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clinnova_explore.analysis.contract import refuse
from clinnova_explore.analysis.effects.balance import (
    arm_moments,
    balance_from_moments,
    combine_arm_moments,
)
from clinnova_explore.analysis.effects.compare import (
    EVENT,
    PS,
    WEIGHT,
    EffectResult,
    Method,
    outcome_indicator,
)
from clinnova_explore.analysis.effects.equipoise import in_equipoise, preference_from
from clinnova_explore.analysis.effects.matching import PAIR_ID, match
from clinnova_explore.analysis.effects.propensity import PropensityModel, check_treatment
from clinnova_explore.analysis.effects.weighting import stabilized_weights, trim_mask
from clinnova_explore.analysis.payload import Payload
from clinnova_explore.analysis.result import Provenance
from clinnova_explore.federated.site_transforms import site_transform
from clinnova_explore.federated.table_site import SITE_COLUMN

if TYPE_CHECKING:
    from clinnova_explore.analysis.logistic import LogisticResult
    from clinnova_explore.federated import Federation, TableSite

__all__ = ["MomentsSpec", "MomentsStep", "compare_federated", "federated_moments"]

EQUIPOISE = "_equipoise"
KEEP = "_kept"
ROWS = "_site_rows"


@dataclass(frozen=True)
class MomentsSpec:
    """Per-arm weighted moments of ``columns`` (weights: a column, or None for 1)."""

    treatment: str
    columns: tuple[str, ...]
    weights: str | None = None
    rows: str | None = None  # a constant column: the site's row count before exclusions
    levels: str | None = None  # a column whose distinct values the site releases


@dataclass(frozen=True)
class MomentsStep:
    """Site step: per-arm moments for balance tables (analysis ``"characterize"``).

    A site with fewer rows than ``min_cohort_size``, or an arm with fewer persons than
    ``min_cell_count`` (but more than none), refuses.
    """

    name: str = "characterize"

    def local(self, site: TableSite, spec: MomentsSpec) -> Payload:
        """Moments of the site's rows, after its policy checks."""
        extra = [c for c in (spec.weights, spec.rows, spec.levels) if c is not None]
        cols = [spec.treatment, *spec.columns, *extra]
        df = site.frame(list(dict.fromkeys(cols)))
        if len(df) < site.policy.min_cohort_size:
            return refuse(site, self.name, "min_cohort_size")
        t = check_treatment(df, spec.treatment, both=False)
        if spec.weights is not None:
            w = df[spec.weights].to_numpy(np.float64)
            n_arm = [int(((t == a) & (w > 0)).sum()) for a in (0.0, 1.0)]
        else:
            w = None
            n_arm = [int((t == a).sum()) for a in (0.0, 1.0)]
        if any(0 < n < site.policy.min_cell_count for n in n_arm):
            return refuse(site, self.name, "min_cell_count")
        table = arm_moments(df, treatment=spec.treatment, covariates=spec.columns, weights=w)
        values = {"rows": int(df[spec.rows].iloc[0])} if spec.rows is not None else {}
        tables = {"moments": table}
        if spec.levels is not None:
            levels = sorted(df[spec.levels].astype(str).unique())
            tables["levels"] = pd.DataFrame({"level": pd.Series(levels, dtype=object)})
        return Payload(analysis=self.name, site=site.id, tables=tables, values=values)

    def combine(
        self, payloads: Sequence[Payload], spec: MomentsSpec, provenance: Provenance
    ) -> pd.DataFrame:
        """The moments of all answering sites, merged exactly."""
        parts = [p.tables["moments"] for p in payloads if p.refused is None]
        if not parts:
            refused = {p.site: p.refused for p in payloads}
            raise ValueError(f"every site refused to release covariate moments: {refused}")
        return combine_arm_moments(parts)


def federated_moments(
    fed: Federation, spec: MomentsSpec, rounds: list[list[Payload]]
) -> pd.DataFrame:
    """One moments round over ``fed``; the payloads are appended to ``rounds``.

    With ``spec.rows``, ``.attrs["rows"]`` is the answering sites' total row count before
    exclusions; with ``spec.levels``, ``.attrs["levels"]`` the distinct values released.
    """
    step = MomentsStep()
    payloads = fed.collect(step, spec)
    rounds.append(payloads)
    out = step.combine(payloads, spec, fed.provenance(step.name, [payloads]))
    if spec.levels is not None:
        found = {lv for p in payloads if p.refused is None for lv in p.tables["levels"]["level"]}
        out.attrs["levels"] = tuple(sorted(found))
    if spec.rows is not None:
        rows = [p.values.get("rows") for p in payloads if p.refused is None]
        out.attrs["rows"] = sum(int(r or 0) for r in rows)
    return out


def _arm_total(moments: pd.DataFrame, column: str) -> dict[int, float]:
    """``{arm: sum of weights * mean of column}`` (persons with column = 1 for a 0/1 column)."""
    rows = moments[moments["covariate"] == column].set_index("arm")
    return {
        int(a): float(rows.loc[a, "sum_w"] * rows.loc[a, "mean"]) if a in rows.index else 0.0
        for a in (0, 1)
    }


def _persons(moments: pd.DataFrame) -> dict[int, float]:
    first = moments["covariate"].iloc[0]
    rows = moments[moments["covariate"] == first].set_index("arm")["sum_w"]
    return {a: float(rows.get(a, 0.0)) for a in (0, 1)}


def _share(counts: dict[int, float]) -> float:
    total = counts[0] + counts[1]
    if total == 0 or counts[1] in (0, total):
        raise ValueError("both arms need persons to compare treatments (after trimming)")
    return counts[1] / total


def compare_federated(
    fed: Federation,
    *,
    treatment: str,
    duration: str,
    event: str,
    covariates: Sequence[str],
    method: Method,
    strata: str | None,
    caliper: float | None,
    stabilized: bool,
    trim: tuple[float, float] | None,
    order_by: str | None,
    alpha: float,
) -> EffectResult:
    """:func:`~clinnova_explore.analysis.effects.compare.compare_treatments` for a federation.

    Parameters are as there; ``strata`` must be the site column for a federation of more than
    one site (risk sets and matched pairs cannot span sites).
    """
    covs = list(covariates)
    if not covs:
        raise ValueError("give at least one covariate for the propensity model")
    if strata is None and fed.mode == "federated" and len(fed.sites) > 1:
        raise ValueError(
            "a federated comparison must be stratified by site (strata='site'): risk sets and "
            "matched pairs cannot span sites; use fed.pooled() for an unstratified analysis"
        )
    needed = (treatment, duration, event, *covs)
    prepare = partial(_prepare, needed=needed, event=event, strata=strata)
    base = fed.transform(prepare, "effects: complete cases and outcome indicator")
    rounds: list[list[Payload]] = []
    ps_covs = [*covs, *([strata] if strata else [])]
    first = MomentsSpec(treatment, tuple(covs), rows=ROWS, levels=strata)
    before = federated_moments(base, first, rounds)
    n_params = 1 + len(covs) + max(len(before.attrs.get("levels", ())) - 1, 0)
    left_out = _left_out(base, rounds[-1], n_params)
    notes = [f"{site}: left out of the comparison ({rule})" for site, rule in left_out.items()]
    if len(left_out) == len(rounds[-1]):
        raise ValueError(
            f"every site was left out of the comparison: {left_out}. max_params_per_obs: a "
            f"site needs at least {n_params} / max_params_per_obs rows for the {n_params}-"
            "coefficient propensity model; use fewer covariates, or fed.pooled() where pooling "
            "is allowed"
        )
    if left_out:
        # a site that cannot release the balance table or fit the propensity model takes no
        # part in any step, so every model and table describes the same persons
        leave_out = partial(_leave_out, sites=tuple(sorted(left_out)))
        base = base.transform(leave_out, f"effects: leave out {sorted(left_out)}")
        before = federated_moments(base, first, rounds)
    model = base.logistic(outcome=treatment, covariates=ps_covs, alpha=alpha)
    arms = _persons(before)
    n = int(arms[0] + arms[1])
    p_all = _share(arms)
    ps_model = PropensityModel(None, model.summary, treatment, tuple(ps_covs), model.n)
    cox_args: dict[str, Any] = {"duration": duration, "event": EVENT, "alpha": alpha}
    cox_args["strata"] = strata
    km_args: dict[str, Any] = {
        "duration": duration,
        "event": EVENT,
        "group": treatment,
        "alpha": alpha,
    }
    naive = base.cox(covariates=[treatment], **cox_args)

    # without trimming, P(T = 1) among the persons kept is the one over everyone
    early = method == "iptw" and trim is None
    p_early = p_all if stabilized else None
    # each derived federation re-derives its rows at the sites, so derive as few as possible:
    # scores, equipoise and (without trimming) the weights in one step
    # the sites get the coefficients only (not the fit's provenance, which names other sites)
    score = partial(
        _score,
        model=dataclasses.replace(model, provenance=None),
        treatment=treatment,
        p_all=p_all,
        trim=trim,
        weights=early,
        p_weights=p_early,
    )
    scored = base.transform(score, "effects: propensity score")
    diag = federated_moments(scored, MomentsSpec(treatment, (EQUIPOISE, KEEP)), rounds)
    in_eq = _arm_total(diag, EQUIPOISE)
    equi = (in_eq[0] + in_eq[1]) / n
    after = None
    n_adjusted = n
    if method == "iptw":
        p_kept = None if not stabilized else _share(_arm_total(diag, KEEP))
        weigh = partial(_weigh, treatment=treatment, p_kept=p_kept, trimmed=trim is not None)
        weighted = (
            scored
            if early
            else scored.transform(weigh, "effects: inverse probability of treatment weights")
        )
        after = federated_moments(weighted, MomentsSpec(treatment, tuple(covs), WEIGHT), rounds)
        adjusted = weighted.cox(covariates=[treatment], weights=WEIGHT, robust=True, **cox_args)
        km = weighted.kaplan_meier(weights=WEIGHT, **km_args)
        n_adjusted = int(sum(_persons_n(after).values()))
    elif method == "match":
        pair = partial(
            _pair, treatment=treatment, caliper=caliper, strata=strata, order_by=order_by
        )
        matched = scored.transform(pair, "effects: 1:1 caliper matching within site")
        after = federated_moments(matched, MomentsSpec(treatment, tuple(covs)), rounds)
        adjusted = matched.cox(covariates=[treatment], cluster=PAIR_ID, **cox_args)
        km = matched.kaplan_meier(**km_args)
        n_adjusted = int(sum(_persons(after).values()))
    else:
        terms = [treatment] if method == "naive" else [treatment, *covs]
        adjusted = naive if method == "naive" else base.cox(covariates=terms, **cox_args)
        km = base.kaplan_meier(**km_args)
    table = balance_from_moments(before, after)
    excluded = int(before.attrs["rows"]) - n
    prov = fed.provenance("compare_treatments", rounds, notes)
    return EffectResult(
        method,
        treatment,
        naive,
        adjusted,
        km,
        table,
        float(equi),
        ps_model,
        n,
        n_adjusted,
        excluded,
        prov,
    )


# ---------------------------------------------------------------------- site transforms
# Module-level functions, bound with functools.partial, so that a site in another process
# receives them by reference (a pickle names the function; no code travels).


@site_transform
def _prepare(
    df: pd.DataFrame, *, needed: tuple[str, ...], event: str, strata: str | None
) -> pd.DataFrame:
    """Complete cases of ``needed``, the outcome indicator and the site's row count."""
    missing = [c for c in [*needed, *([strata] if strata else [])] if c not in df.columns]
    if missing:
        raise KeyError(f"column(s) {missing} not in the data; available: {list(df.columns)}")
    out = df[df[list(needed)].notna().all(axis=1)].copy()
    out[EVENT] = outcome_indicator(out[event])
    out[ROWS] = len(df)
    if strata is not None:
        out[strata] = out[strata].astype(str)
    return out


@site_transform
def _leave_out(df: pd.DataFrame, *, sites: tuple[str, ...]) -> pd.DataFrame:
    """The rows of sites not in ``sites`` (on the pooled site, only those sites' rows go)."""
    return df[~df[SITE_COLUMN].astype(str).isin(list(sites))]


@site_transform
def _score(
    df: pd.DataFrame,
    *,
    model: LogisticResult,
    treatment: str,
    p_all: float,
    trim: tuple[float, float] | None,
    weights: bool,
    p_weights: float | None,
) -> pd.DataFrame:
    """Propensity score, equipoise and trimming flags; with ``weights``, the IPT weights."""
    ps = model.predict(df).to_numpy(np.float64)
    out = df.assign(
        **{
            PS: ps,
            EQUIPOISE: in_equipoise(preference_from(ps, p_all)).astype(np.float64),
            KEEP: trim_mask(ps, trim).astype(np.float64),
        }
    )
    if weights:
        t = out[treatment].to_numpy(np.float64)
        out[WEIGHT] = stabilized_weights(ps, t, p_weights)
    return out


@site_transform
def _weigh(
    df: pd.DataFrame, *, treatment: str, p_kept: float | None, trimmed: bool
) -> pd.DataFrame:
    """Stabilized (or plain) weights among the persons kept; persons trimmed away dropped."""
    keep = df[KEEP].to_numpy() == 1.0
    t = df[treatment].to_numpy(np.float64)
    w = stabilized_weights(df[PS], t, p_kept, keep if trimmed else None)
    return df.assign(**{WEIGHT: w})[w > 0]


@site_transform
def _pair(
    df: pd.DataFrame,
    *,
    treatment: str,
    caliper: float | None,
    strata: str | None,
    order_by: str | None,
) -> pd.DataFrame:
    """1:1 caliper matching on the propensity score within each stratum."""
    by = order_by if order_by in df.columns else None
    return match(df, ps=PS, treatment=treatment, caliper=caliper, within=strata, order_by=by)


def _left_out(fed: Federation, payloads: Sequence[Payload], n_params: int) -> dict[str, str]:
    """``{site: rule}``: sites that refused, or hold too few rows for ``n_params`` coefficients.

    The second check anticipates the sites' own ``max_params_per_obs`` rule in the propensity
    model's rounds, from the row counts the sites released.
    """
    out = {p.site: str(p.refused) for p in payloads if p.refused is not None}
    policies = {site.id: site.policy for site in fed.sites}
    for p in payloads:
        if p.refused is not None:
            continue
        n = int(_persons_n(p.tables["moments"])[0] + _persons_n(p.tables["moments"])[1])
        if n == 0 or n_params / n > policies[p.site].max_params_per_obs:
            out[p.site] = "max_params_per_obs"
    return out


def _persons_n(moments: pd.DataFrame) -> dict[int, int]:
    """Persons with positive weight per arm (the ``n`` column of the moments)."""
    first = moments["covariate"].iloc[0]
    rows = moments[moments["covariate"] == first].set_index("arm")["n"]
    return {a: int(rows.get(a, 0)) for a in (0, 1)}
