"""State of the survival dashboard: which comparison, how to stratify and adjust, and the
results derived from those choices.

No Panel import here: the class is plain ``param`` so that it can be tested without a browser.
Every number comes from a library call: the time-to-event rows of a shipped comparison
(:func:`~clinnova_explore.analysis.survival.presets.comparison`) stay at the sites inside a
:class:`~clinnova_explore.federated.Federation`; Kaplan-Meier curves and the log-rank test come
from its ``kaplan_meier``/``logrank``, hazard ratios, balance and the love plot from
:func:`~clinnova_explore.analysis.effects.compare_treatments`. The federation is built once per
(comparison, mode) and every result is cached, so flipping a control back is instant.

A result that cannot be computed (a site policy refuses, a cohort is too small, a model does
not converge) comes back as a :class:`Problem` whose message the dashboard shows in the page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
import param

from clinnova_explore.analysis.effects import EffectResult, compare_treatments
from clinnova_explore.analysis.survival.cox import CoxResult
from clinnova_explore.analysis.survival.km import KaplanMeierResult
from clinnova_explore.analysis.survival.logrank import LogrankResult
from clinnova_explore.analysis.survival.presets import (
    PRESETS_BY_DISEASE,
    comparison,
    disease_of,
)
from clinnova_explore.analysis.survival.tte import TimeToEventSpec
from clinnova_explore.catalog import Catalog
from clinnova_explore.cohort import CohortDefinition, builtin_definition
from clinnova_explore.cohort.sqlcache import LruCache
from clinnova_explore.federated import Federation, TableSite

if TYPE_CHECKING:
    from clinnova_explore.federated.preview import Preview

__all__ = [
    "AGE_BREAKS",
    "DISEASE_NAMES",
    "STRATA",
    "Problem",
    "SurvivalState",
    "age_group",
    "arm_labels",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_ROWS: LruCache[Hashable, Federation] = LruCache(8)
"""(catalog file, its modification time, comparison) -> the comparison's rows at each site.

Shared by every dashboard session of the process, so only the first visitor of a comparison
waits for the sites' queries."""

DISEASE_NAMES: dict[str, str] = {
    "ms": "Multiple sclerosis",
    "ra": "Rheumatoid arthritis",
    "ibd": "Inflammatory bowel disease",
}
"""Display name per disease code of :data:`~.presets.PRESETS_BY_DISEASE`."""

STRATA: dict[str, str] = {
    "treatment": "Treatment",
    "site": "Site",
    "sex": "Sex",
    "age_group": "Age group",
}
"""Columns the Kaplan-Meier curves can be drawn by, with display names."""

AGE_BREAKS: tuple[int, ...] = (30, 40, 50, 60)
"""Upper-exclusive age bounds of :func:`age_group` (years at index)."""

DURATION, EVENT, OUTCOME = "duration", "event", "outcome"
BASE_COVARIATES: tuple[str, ...] = ("age", "female")
"""Demographic confounders added to each comparison's own baseline covariates."""


@dataclass(frozen=True)
class Problem:
    """Why a result could not be shown: a message for the user (never a traceback)."""

    message: str

    def __str__(self) -> str:
        return self.message


def age_group(age: pd.Series) -> pd.Series:
    """Age at index in bands of :data:`AGE_BREAKS` (``"<30"``, ``"30-39"``, ..., ``"60+"``).

    Examples
    --------
    >>> age_group(pd.Series([18.5, 30.0, 49.9, 75.0])).tolist()
    ['<30', '30-39', '40-49', '60+']
    """
    bounds = (-np.inf, *AGE_BREAKS, np.inf)
    labels = [f"<{AGE_BREAKS[0]}"]
    labels += [f"{lo}-{hi - 1}" for lo, hi in pairwise(AGE_BREAKS)]
    labels.append(f"{AGE_BREAKS[-1]}+")
    cut = pd.cut(age.astype("float64"), bounds, right=False, labels=labels)
    return cut.astype("string").fillna("unknown").astype(object)


def _cohort_name(ref: CohortDefinition | str) -> str:
    defn = builtin_definition(ref) if isinstance(ref, str) else ref
    name = defn.name or (ref if isinstance(ref, str) else "cohort")
    return name.split(", ", 1)[1] if ", " in name else name


def arm_labels(spec: TimeToEventSpec) -> dict[int, str]:
    """Display names of the two arms, ``{1: target, 0: comparator}``, from the cohort names."""
    if spec.comparator is None:
        raise ValueError(f"comparison {spec.name!r} has no comparator arm to compare with")
    return {1: _cohort_name(spec.target), 0: _cohort_name(spec.comparator)}


def _derived_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Site-local columns for the dashboard: the outcome indicator and the age band."""
    return df.assign(
        **{OUTCOME: (df[EVENT] == 1).astype("int64"), "age_group": age_group(df["age"])}
    )


def _message(exc: Exception) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, ValueError | LookupError | RuntimeError | PermissionError):
        return text
    return f"unexpected {type(exc).__name__}: {text}"


class SurvivalState(param.Parameterized):
    """The survival dashboard's choices and the results derived from them.

    Parameters
    ----------
    catalog
        The federation the comparisons run in.
    """

    disease = param.Selector[str](
        default="ms",
        objects={DISEASE_NAMES.get(d, d.upper()): d for d in PRESETS_BY_DISEASE},
        doc="Disease whose shipped treatment comparisons are offered.",
    )
    comparison = param.Selector[str](
        default=None,
        objects=[],
        allow_None=True,
        check_on_set=True,
        doc="Shipped comparison (target vs comparator) of the chosen disease.",
    )
    stratify_by = param.Selector[str](
        default="treatment",
        objects={v: k for k, v in STRATA.items()},
        doc="Draw one Kaplan-Meier curve per treatment arm, site, sex or age group.",
    )
    adjustment = param.Selector[str](
        default="iptw",
        objects={"Naive": "naive", "IPTW": "iptw", "Matching": "match", "Covariates": "regression"},
        doc="Confounding adjustment of the hazard ratio: none, inverse probability of treatment "
        "weighting, 1:1 propensity-score matching, or the confounders as Cox covariates.",
    )
    adjusted_curves = param.Boolean(
        default=False,
        doc="With curves by treatment and an adjustment: IPTW-weighted curves, or the curves "
        "of the matched sample.",
    )
    mode = param.Selector[str](
        default="federated",
        objects=["federated", "pooled"],
        doc="Federated: each site computes, only aggregates leave it; pooled: all sites as one.",
    )

    def __init__(self, catalog: Catalog, **params: Any) -> None:
        self.catalog = catalog
        self._cache: dict[tuple[str, Hashable], Any] = {}
        chosen = params.pop("comparison", None)
        if chosen is not None:
            params.setdefault("disease", disease_of(chosen))
        super().__init__(**params)
        self._pick_disease()
        if chosen is not None:
            self.comparison = chosen

    @classmethod
    def from_path(cls, path: str | Path | None = None) -> SurvivalState:
        """Build the state for a catalog file (default: ``$CLINNOVA_CATALOG`` or the project's)."""
        return cls(Catalog.load(path))

    @param.depends("disease", watch=True)
    def _pick_disease(self) -> None:
        names = PRESETS_BY_DISEASE.get(self.disease, [])
        self.param.comparison.objects = {comparison(n).name or n: n for n in names}
        if self.comparison not in names:
            self.comparison = names[0] if names else None

    # ------------------------------------------------------------------ caching
    def computed(self) -> list[str]:
        """Which kinds of results have been computed so far (``"federation"``, ``"km"``, ...)."""
        return sorted({kind for kind, _ in self._cache})

    def _cached(
        self, kind: str, key: Hashable, compute: Callable[[], T], *, per_mode: bool = True
    ) -> T | Problem:
        full = (kind, (self.comparison, self.mode if per_mode else None, key))
        if full not in self._cache:
            try:
                self._cache[full] = compute()
            except Exception as exc:  # shown in the page; the log keeps the traceback
                log.info("survival dashboard: %s failed", kind, exc_info=True)
                self._cache[full] = Problem(_message(exc))
        value: T | Problem = self._cache[full]
        return value

    # ------------------------------------------------------------------ inputs
    @param.depends("comparison")
    def spec(self) -> TimeToEventSpec | None:
        """The time-to-event spec of the chosen comparison (None when none is chosen)."""
        return None if self.comparison is None else comparison(self.comparison)

    @param.depends("comparison")
    def labels(self) -> dict[int, str]:
        """Display names of the treatment arms (``{1: target, 0: comparator}``)."""
        spec = self.spec()
        return {} if spec is None else arm_labels(spec)

    @param.depends("comparison")
    def covariates(self) -> list[str]:
        """Confounders of the propensity model: the comparison's covariates, age and female."""
        spec = self.spec()
        own = [] if spec is None else [c.name for c in spec.covariates]
        return [*own, *BASE_COVARIATES]

    @param.depends("comparison", "mode")
    def federation(self) -> Federation | Problem:
        """The comparison's time-to-event rows at each site, with ``outcome`` (event 1) and
        ``age_group`` added at the sites; in pooled mode its ``pooled()`` copy.

        The sites' rows are queried once per comparison and kept at each site, so the pooled
        copy and every later analysis reuse them.
        """
        sites = self._site_rows()
        if isinstance(sites, Problem) or self.mode == "federated":
            return sites
        return self._cached("federation", None, sites.pooled)

    def _site_rows(self) -> Federation | Problem:
        """The federated federation of the chosen comparison (rows kept at the sites)."""
        spec = self.spec()
        if spec is None:
            return Problem("Pick a comparison.")

        def build() -> Federation:
            path = self.catalog.path
            key = (
                str(path) if path else id(self.catalog),
                path.stat().st_mtime_ns if path and path.exists() else None,
                self.comparison,
            )
            kept = _ROWS.get(key)
            if kept is not None:
                return kept
            with Federation.from_cdm(self.catalog, spec) as fed:
                # each site fetches its rows once and keeps them, so toggles do not re-query;
                # the kept rows still belong to their catalog site (its audit log and guard)
                sites = [
                    TableSite(s.id, s.policy, _derived_columns(s.frame()), origin=s.origin)
                    for s in fed.sites
                ]
            built = Federation(
                sites,
                source_ids=fed.source_ids,
                catalog=fed.catalog,
                definition_hashes=fed.definition_hashes,
            )
            _ROWS.put(key, built)
            return built

        return self._cached("federation", None, build, per_mode=False)

    @param.depends("comparison", "stratify_by")
    def release_preview(self) -> dict[str, Preview | Problem]:
        """What each site would release for the comparison's Kaplan-Meier curves (by
        :attr:`stratify_by`) and its naive Cox model, without releasing anything.

        Always the federated run (in pooled mode no payload leaves a site); each site records
        the preview in its audit log.
        """
        fed = self._site_rows()
        if isinstance(fed, Problem):
            return {"Kaplan-Meier": fed, "Cox": fed}
        group = self.stratify_by
        km = self._cached(
            "preview",
            ("km", group),
            lambda: fed.preview("kaplan_meier", duration=DURATION, event=OUTCOME, group=group),
            per_mode=False,
        )
        cox = self._cached(
            "preview",
            "cox",
            lambda: fed.preview(
                "cox", duration=DURATION, event=OUTCOME, covariates=["treatment"], strata="site"
            ),
            per_mode=False,
        )
        return {"Kaplan-Meier": km, "Cox": cox}

    # ------------------------------------------------------------------ results
    @param.depends("stratify_by", "adjustment", "adjusted_curves")
    def shows_adjusted_curves(self) -> bool:
        """True when the curves are by treatment and weighted or matched (see
        :attr:`adjusted_curves`)."""
        return (
            self.adjusted_curves
            and self.stratify_by == "treatment"
            and self.adjustment not in ("naive", "regression")
        )

    @param.depends("comparison", "mode", "stratify_by", "adjustment", "adjusted_curves")
    def km(self) -> KaplanMeierResult | Problem:
        """Kaplan-Meier curves of the outcome by :attr:`stratify_by` (log CI); by treatment
        with :attr:`adjusted_curves`, the adjusted analysis' weighted or matched curves."""
        if self.shows_adjusted_curves():
            effect = self.effect()
            if isinstance(effect, Problem):
                return effect
            if effect.km is None:
                return Problem(f"{self.adjustment_label()} gave no adjusted curves.")
            return effect.km
        fed = self.federation()
        if isinstance(fed, Problem):
            return fed
        group = self.stratify_by
        return self._cached(
            "km",
            group,
            lambda: fed.kaplan_meier(duration=DURATION, event=OUTCOME, group=group),
        )

    @param.depends("comparison", "mode", "stratify_by", "adjustment", "adjusted_curves")
    def logrank(self) -> LogrankResult | Problem:
        """Log-rank test of equal survival across the Kaplan-Meier groups (unadjusted curves
        only)."""
        if self.shows_adjusted_curves():
            return Problem(
                "the log-rank test compares unadjusted curves; the adjusted comparison is the "
                "hazard ratio tab"
            )
        fed = self.federation()
        if isinstance(fed, Problem):
            return fed
        group = self.stratify_by
        return self._cached(
            "logrank", group, lambda: fed.logrank(duration=DURATION, event=OUTCOME, group=group)
        )

    @param.depends("comparison", "mode")
    def naive(self) -> CoxResult | Problem:
        """Cox model of the outcome on treatment alone, stratified by site (no propensity
        model, so it is available where an adjusted model is refused)."""
        fed = self.federation()
        if isinstance(fed, Problem):
            return fed
        return self._cached(
            "naive",
            None,
            lambda: fed.cox(
                duration=DURATION, event=OUTCOME, covariates=["treatment"], strata="site"
            ),
        )

    @param.depends("comparison", "mode", "adjustment")
    def effect(self) -> EffectResult | Problem:
        """Naive and adjusted hazard ratios of treatment, balance and propensity diagnostics
        (Cox stratified by site)."""
        fed = self.federation()
        if isinstance(fed, Problem):
            return fed
        method = self.adjustment
        covariates = self.covariates()
        return self._cached(
            "effect",
            method,
            lambda: compare_treatments(
                fed,
                treatment="treatment",
                duration=DURATION,
                event=OUTCOME,
                covariates=covariates,
                method=method,
                strata="site",
            ),
        )

    @param.depends("adjustment")
    def adjustment_label(self) -> str:
        """Display name of the chosen adjustment (``"IPTW"``, ``"Matching"``, ...)."""
        names = {v: k for k, v in self.param.adjustment.names.items()}
        return names.get(self.adjustment, self.adjustment)

    @param.depends("comparison", "stratify_by")
    def km_labels(self) -> dict[Any, str]:
        """Display names of the Kaplan-Meier groups: the arm names when stratified by
        treatment, else the values themselves."""
        return dict(self.labels()) if self.stratify_by == "treatment" else {}

    @param.depends("comparison", "mode", "adjustment")
    def forest_fits(self) -> dict[str, CoxResult] | Problem:
        """The Cox fits of the forest plot: naive, and the adjusted one unless naive.

        The naive fit is shown even when the adjusted one cannot be computed (see
        :meth:`effect` for why).
        """
        naive = self.naive()
        if isinstance(naive, Problem):
            return naive
        fits = {"naive": naive}
        effect = self.effect() if self.adjustment != "naive" else None
        if isinstance(effect, EffectResult):
            fits[self.adjustment_label()] = effect.adjusted
        return fits

    def provenance_rows(self, result: Any) -> pd.DataFrame:
        """``item, value`` rows describing how ``result`` was made (mode, sites, refusals,
        suppressed cells), from its provenance; empty when it has none."""
        prov = getattr(result, "provenance", None)
        if prov is None:
            return pd.DataFrame(columns=["item", "value"])
        rows = [
            ("mode", prov.mode),
            ("sites", ", ".join(prov.sites)),
            ("refused", "; ".join(f"{s}: {r}" for s, r in prov.refused.items()) or "none"),
            ("suppressed cells", str(len(prov.suppressed))),
            ("library version", prov.library_version),
            ("created", prov.created),
        ]
        return pd.DataFrame(rows, columns=["item", "value"])
