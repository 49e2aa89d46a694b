"""The coordinator side of federated Cox and logistic models: Newton rounds over sites.

Each model first runs a *design* round (rows, events and the levels of categorical covariates
at each site; a site below ``min_cohort_size`` refuses here), then a *probe* round at
``beta = 0`` in which a site whose rows are too few for the number of coefficients refuses
(``max_params_per_obs``). The remaining sites answer every Newton round with their summed
log-likelihood, score and information (per stratum for Cox); the coordinator adds them and
steps with :func:`~clinnova_explore.analysis.survival.cox_stats.newton`. For a robust Cox
variance one more round returns each site's sandwich meat at the estimate:
``cov = I^-1 (sum of meats) I^-1``. Refused sites are left out and named in the provenance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from clinnova_explore.analysis.logistic import INTERCEPT, LogisticResult, logistic_result
from clinnova_explore.analysis.payload import Payload
from clinnova_explore.analysis.survival.cox_result import CoxResult, cox_result
from clinnova_explore.analysis.survival.cox_stats import newton
from clinnova_explore.federated.steps import (
    CoxRound,
    CoxStep,
    DesignSpec,
    DesignStep,
    LogisticRound,
    LogisticStep,
)
from clinnova_explore.federated.table_site import SITE_COLUMN

if TYPE_CHECKING:
    from clinnova_explore.federated.federation import Federation

__all__ = ["design_names", "federated_cox", "federated_logistic"]

Levels = tuple[tuple[str, tuple[str, ...]], ...]


def design_names(covariates: Sequence[str], levels: Levels) -> list[str]:
    """Coefficient names: numeric covariates as is, ``"col[level]"`` per non-first level."""
    lv = dict(levels)
    names: list[str] = []
    for cov in covariates:
        if cov in lv:
            names.extend(f"{cov}[{level}]" for level in lv[cov][1:])
        else:
            names.append(cov)
    return names


def _strata(strata: str | Sequence[str] | None) -> tuple[str, ...]:
    if strata is None:
        return ()
    return (strata,) if isinstance(strata, str) else tuple(strata)


class _Rounds:
    """Runs rounds over the sites that have not refused; remembers every payload."""

    def __init__(self, fed: Federation, analysis: str) -> None:
        self.fed = fed
        self.analysis = analysis
        self.history: list[list[Payload]] = []
        self.active = fed

    def run(self, step: Any, spec: Any, *, allow_refusal: bool) -> list[Payload]:
        payloads = self.active.collect(step, spec)
        self.history.append(payloads)
        refused = {p.site: str(p.refused) for p in payloads if p.refused is not None}
        if refused and not allow_refusal:
            raise fed_error(
                f"{self.analysis}: site(s) {refused} stopped answering in the middle of the fit "
                "(after the first round); the model cannot be fitted without them. Run again, "
                "or leave those sites out of the federation."
            )
        answered = [p for p in payloads if p.refused is None]
        if not answered:
            every = {
                p.site: str(p.refused) for ps in self.history for p in ps if p.refused is not None
            }
            raise fed_error(
                f"{self.analysis}: every site refused ({every}); the model cannot be fitted"
            )
        if refused:
            keep = [s for s in self.active.sites if s.id not in refused]
            self.active = self.fed._copy(keep, runner=self.fed.runner)
        return answered


def _probe_and_fit(
    rounds: _Rounds,
    answered: Sequence[Payload],
    levels_of: Callable[[Sequence[Payload]], Levels],
    names_of: Callable[[Levels], list[str]],
    step: Any,
    spec_of: Callable[[Levels, np.ndarray], Any],
    *,
    model: str,
    tol: float,
    max_iter: int,
) -> tuple[Levels, list[str], set[str], np.ndarray, np.ndarray, float, int]:
    """Probe at ``beta = 0``, then Newton rounds over the sites that answered the probe.

    Categorical levels are the union over the sites taking part: when a site refuses the
    probe, the levels (and so the coefficients) are rebuilt without it and the probe repeats.

    Returns
    -------
    tuple
        ``(levels, names, sites, beta, covariance, loglik, iterations)``.
    """
    sites = {p.site for p in answered}
    while True:
        levels = levels_of([p for p in answered if p.site in sites])
        names = names_of(levels)
        zero = np.zeros(len(names))
        probe = rounds.run(step, spec_of(levels, zero), allow_refusal=True)
        if {p.site for p in probe} == sites:
            break
        sites = {p.site for p in probe}
    start = step.combine(probe, spec_of(levels, zero), rounds.fed.provenance(model.lower(), []))
    cache: dict[tuple[float, ...], tuple[float, np.ndarray, np.ndarray]] = {
        tuple(0.0 for _ in names): start[:3]
    }

    def total(beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        key = tuple(float(b) for b in beta)
        if key not in cache:
            payloads = rounds.run(step, spec_of(levels, beta), allow_refusal=False)
            cache.clear()
            prov = rounds.fed.provenance(model.lower(), [])
            cache[key] = step.combine(payloads, spec_of(levels, beta), prov)[:3]
        return cache[key]

    try:
        beta, cov, ll, its = newton(total, len(names), tol=tol, max_iter=max_iter)
    except np.linalg.LinAlgError:
        raise fed_error(
            f"{model} model {names}: the information matrix is singular; a covariate is "
            "constant or collinear with others over the answering sites"
        ) from None
    return levels, names, sites, beta, cov, ll, its


def federated_cox(
    fed: Federation,
    *,
    duration: str,
    event: str,
    covariates: Sequence[str],
    strata: str | Sequence[str] | None = SITE_COLUMN,
    ties: Literal["efron", "breslow"] = "efron",
    weights: str | None = None,
    robust: bool = False,
    cluster: str | None = None,
    tol: float = 1e-12,
    max_iter: int = 50,
    alpha: float = 0.05,
) -> CoxResult:
    """Stratified Cox model by Newton rounds over the federation's sites.

    Parameters are as :func:`~clinnova_explore.analysis.survival.cox.cox`. In federated mode
    ``strata`` must include ``"site"`` (a baseline hazard per site is what lets each site
    compute its own risk sets); ``cluster`` groups are taken within sites.

    Returns
    -------
    CoxResult
        With provenance; concordance is NaN (the rows never reach the coordinator).
        ``events`` adds the sites' released event counts: a site whose count is below its
        ``min_cell_count`` releases none (its events still enter the fit) and is named in
        ``provenance.suppressed``.
    """
    keys = _strata(strata)
    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow', not {ties!r}")
    if not covariates:
        raise ValueError("give at least one covariate")
    if fed.mode == "federated" and SITE_COLUMN not in keys:
        raise fed_error(
            f"a federated Cox model must be stratified by site (strata={strata!r}): risk sets "
            "cannot span sites. Use strata='site' (or a list including 'site'), or "
            "fed.pooled().cox(...) for an unstratified pooled fit"
        )
    covs = tuple(covariates)
    rounds = _Rounds(fed, "cox")
    extra = [c for c in (weights, cluster) if c is not None]
    design = DesignSpec((duration, event, *covs, *keys, *extra), covs, event, weights)
    step = DesignStep("cox")
    answered = rounds.run(step, design, allow_refusal=True)

    def spec(levels: Levels, beta: np.ndarray, meat: bool = False) -> CoxRound:
        return CoxRound(
            duration,
            event,
            covs,
            levels,
            keys,
            tuple(float(b) for b in beta),
            ties,
            weights,
            cluster,
            meat,
        )

    cox_step = CoxStep()
    levels, names, active, beta, cov, ll, its = _probe_and_fit(
        rounds,
        answered,
        lambda part: step.combine(part, design, fed.provenance("cox", [])),
        lambda levels: design_names(covs, levels),
        cox_step,
        spec,
        model="Cox",
        tol=tol,
        max_iter=max_iter,
    )
    if robust or cluster is not None:
        payloads = rounds.run(cox_step, spec(levels, beta, meat=True), allow_refusal=False)
        meat = cox_step.combine(payloads, spec(levels, beta), fed.provenance("cox", []))[3]
        cov = cov @ meat @ cov
    used = [p for p in answered if p.site in active]
    n, events = _totals(used)
    notes = [f"{p.site}: cox events (min_cell_count)" for p in used if p.values["events"] is None]
    label: str | tuple[str, ...] | None = None if not keys else keys[0] if len(keys) == 1 else keys
    return cox_result(
        beta,
        cov,
        names,
        loglik=ll,
        n=n,
        events=events,
        ties=ties,
        strata=label,
        iterations=its,
        alpha=alpha,
        robust=robust or cluster is not None,
        provenance=fed.provenance("cox", rounds.history, notes),
    )


def _totals(design: Sequence[Payload]) -> tuple[int, int]:
    """Rows and released events of the answering sites (suppressed event counts add 0)."""
    n = sum(int(p.values["n"] or 0) for p in design)
    events = sum(int(p.values.get("events") or 0) for p in design)
    return n, events


def fed_error(message: str) -> Exception:
    """A :class:`~clinnova_explore.federated.federation.FederationError` (lazy import)."""
    from clinnova_explore.federated.federation import FederationError

    return FederationError(message)


def federated_logistic(
    fed: Federation,
    *,
    outcome: str,
    covariates: Sequence[str],
    weights: str | None = None,
    tol: float = 1e-12,
    max_iter: int = 50,
    alpha: float = 0.05,
) -> LogisticResult:
    """Logistic regression (with intercept) by Newton rounds over the sites.

    Parameters are as :func:`~clinnova_explore.analysis.logistic.logistic`; categorical
    levels are the union over the answering sites.
    """
    covs = tuple(covariates)
    rounds = _Rounds(fed, "logistic")
    design = DesignSpec((outcome, *covs, *([weights] if weights else [])), covs, outcome, weights)
    step = DesignStep("logistic")
    answered = rounds.run(step, design, allow_refusal=True)

    def spec(levels: Levels, beta: np.ndarray) -> LogisticRound:
        return LogisticRound(outcome, covs, levels, tuple(float(b) for b in beta), weights)

    levels, names, active, beta, cov, ll, its = _probe_and_fit(
        rounds,
        answered,
        lambda part: step.combine(part, design, fed.provenance("logistic", [])),
        lambda levels: [INTERCEPT, *design_names(covs, levels)],
        LogisticStep(),
        spec,
        model="logistic",
        tol=tol,
        max_iter=max_iter,
    )
    n, _ = _totals([p for p in answered if p.site in active])
    return logistic_result(
        beta,
        cov,
        names,
        loglik=ll,
        n=n,
        iterations=its,
        levels=dict(levels),
        alpha=alpha,
        provenance=fed.provenance("logistic", rounds.history),
    )
