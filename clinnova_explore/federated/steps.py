"""Site-local steps of the federated analyses, following the analysis contract.

Each class here is an :class:`~clinnova_explore.analysis.contract.Analysis`: ``local(site,
spec)`` runs at a :class:`~clinnova_explore.federated.table_site.TableSite`, applies the site's
policy and returns a :class:`~clinnova_explore.analysis.payload.Payload`; ``combine`` sees only
decoded payloads. Iterative models (Cox, logistic) run one round per coefficient vector: the
spec carries ``beta`` and each site returns its summed log-likelihood, score and information.

Policy rules applied before anything is released (a refusal names the rule):

- ``min_cohort_size``: a site with fewer rows refuses (``count`` answers zeros instead).
- ``max_params_per_obs``: a model with more coefficients per row than allowed is refused.
- ``km_time_bin_days`` (event tables): times are rounded *up* to the end of their bin,
  ``ceil(t / b) * b``.
- ``min_cell_count`` (event tables): runs of times are merged; see
  :mod:`~clinnova_explore.federated.bins`. Event counts of a model's design round below it
  are not released.
- ``allowed_analyses`` is checked by the contract's ``release`` before a local step runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from clinnova_explore.analysis.contract import refuse, suppress
from clinnova_explore.analysis.logistic import (
    categorical_levels,
    check_outcome,
    check_weights,
    logistic_design,
    logistic_stats,
)
from clinnova_explore.analysis.payload import Payload
from clinnova_explore.analysis.result import Provenance
from clinnova_explore.federated.bins import binned_event_table, combine_released
from clinnova_explore.federated.cox_site import CoxRound, cox_round_payload
from clinnova_explore.federated.table_site import TableSite

__all__ = [
    "CountSpec",
    "CountStep",
    "CoxRound",
    "CoxStep",
    "DesignSpec",
    "DesignStep",
    "EventTableSpec",
    "EventTableStep",
    "LogisticRound",
    "LogisticStep",
    "stats_table",
    "sum_stats",
]

Levels = tuple[tuple[str, tuple[str, ...]], ...]


def _refusal(site: TableSite, name: str, n: int, p: int | None = None) -> Payload | None:
    policy = site.policy
    if n < policy.min_cohort_size:
        return refuse(site, name, "min_cohort_size")
    if p is not None and p / n > policy.max_params_per_obs:
        return refuse(site, name, "max_params_per_obs")
    return None


# ---------------------------------------------------------------------- event tables


@dataclass(frozen=True)
class EventTableSpec:
    """An event table by ``by`` columns, binned and suppressed per site policy."""

    duration: str
    event: str
    by: tuple[str, ...] = ()
    weights: str | None = None


@dataclass(frozen=True)
class EventTableStep:
    """Kaplan-Meier and log-rank sufficient statistics (analysis ``"survival"``)."""

    name: str = "survival"

    def local(self, site: TableSite, spec: EventTableSpec) -> Payload:
        """Binned, small-cell-merged event table of one site."""
        data = site.relation()
        refusal = _refusal(site, self.name, site.n_rows())
        if refusal is not None:
            return refusal
        table, merged, dropped = binned_event_table(
            data,
            duration=spec.duration,
            event=spec.event,
            by=spec.by,
            weights=spec.weights,
            bin_days=site.policy.km_time_bin_days,
            min_cell_count=site.policy.km_min_count,
        )
        for col in spec.by:
            if isinstance(table[col].dtype, pd.CategoricalDtype):
                table[col] = table[col].astype(str)
            elif pd.api.types.is_integer_dtype(table[col].dtype) and not pd.api.types.is_bool_dtype(
                table[col].dtype
            ):  # int8/uint16 group columns travel as the payload's integer type
                table[col] = table[col].astype(
                    "Int64" if pd.api.types.is_extension_array_dtype(table[col].dtype) else "int64"
                )
        values: dict[str, Any] = {"merged_bins": merged, "dropped_cells": "; ".join(dropped)}
        return Payload(analysis=self.name, site=site.id, tables={"events": table}, values=values)

    def combine(
        self, payloads: Sequence[Payload], spec: EventTableSpec, provenance: Provenance
    ) -> pd.DataFrame:
        """The pooled event table of the answering sites."""
        return combine_released(payloads, spec.by)


# ---------------------------------------------------------------------- design round


@dataclass(frozen=True)
class DesignSpec:
    """What a model needs from every site before the first Newton round."""

    columns: tuple[str, ...]
    covariates: tuple[str, ...]
    event: str | None = None
    weights: str | None = None


@dataclass(frozen=True)
class DesignStep:
    """Rows, events and categorical levels of a site (analysis ``"cox"`` or ``"logistic"``)."""

    ANALYSIS_NAMES: ClassVar[tuple[str, ...]] = ("cox", "logistic")
    name: str

    def local(self, site: TableSite, spec: DesignSpec) -> Payload:
        """Rows, events (suppressed when small) and categorical levels."""
        df = site.frame(list(dict.fromkeys(spec.columns)))
        n = len(df)
        refusal = _refusal(site, self.name, n)
        if refusal is not None:
            return refusal
        if spec.weights is not None:
            check_weights(df, spec.weights)
        levels = categorical_levels(df, spec.covariates)
        table = pd.DataFrame(
            {
                "covariate": [c for c, lv in levels.items() for _ in lv],
                "level": [v for lv in levels.values() for v in lv],
            }
        )
        values: dict[str, Any] = {"n": n}
        if spec.event is not None:
            ev = df[spec.event]
            if ev.isna().any() or not ev.isin([0, 1, True, False]).all():
                what = "outcome" if self.name == "logistic" else "event"
                raise ValueError(f"{what} column {spec.event!r} must hold only 0/1 (or booleans)")
            events = int(df[spec.event].astype("int64").sum())
            k = site.policy.min_cell_count
            values["events"] = None if 0 < events < k else events
        return Payload(analysis=self.name, site=site.id, tables={"levels": table}, values=values)

    def combine(
        self, payloads: Sequence[Payload], spec: DesignSpec, provenance: Provenance
    ) -> Levels:
        """Sorted union of the sites' levels per categorical covariate."""
        found: dict[str, set[str]] = {}
        for p in payloads:
            if p.refused is None:
                for cov, level in p.tables["levels"].itertuples(index=False):
                    found.setdefault(str(cov), set()).add(str(level))
        return tuple((c, tuple(sorted(found[c]))) for c in spec.covariates if c in found)


# ---------------------------------------------------------------------- statistics tables


def stats_table(
    rows: Sequence[tuple[str, float, np.ndarray, np.ndarray]],
    meat: np.ndarray | None = None,
) -> pd.DataFrame:
    """Long table ``stratum, term, i, j, value`` of per-stratum loglik, score, information.

    Parameters
    ----------
    rows
        ``(stratum label, loglik, score, information)`` per stratum.
    meat
        Optional robust-variance middle matrix of the whole site (stratum ``"*"``).
    """
    parts: list[pd.DataFrame] = []

    def add(stratum: str, term: str, values: np.ndarray) -> None:
        arr = np.atleast_2d(np.asarray(values, dtype=np.float64))
        i, j = np.indices(arr.shape)
        parts.append(
            pd.DataFrame(
                {
                    "stratum": stratum,
                    "term": term,
                    "i": i.ravel().astype("int64"),
                    "j": j.ravel().astype("int64"),
                    "value": arr.ravel(),
                }
            )
        )

    for stratum, ll, score, info in rows:
        add(stratum, "loglik", np.array([[ll]]))
        add(stratum, "score", np.asarray(score)[None, :])
        add(stratum, "information", info)
    if meat is not None:
        add("*", "meat", meat)
    if not parts:
        return pd.DataFrame(
            {
                "stratum": pd.Series(dtype=object),
                "term": pd.Series(dtype=object),
                "i": pd.Series(dtype="int64"),
                "j": pd.Series(dtype="int64"),
                "value": pd.Series(dtype="float64"),
            }
        )
    return pd.concat(parts, ignore_index=True)


def sum_stats(
    payloads: Sequence[Payload], p: int, *, distinct_strata: bool = False
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Sum ``loglik, score, information, meat`` over the strata of answering sites.

    Raises
    ------
    ValueError
        With ``distinct_strata``, when one stratum label comes from two sites (Cox strata
        must not cross sites).
    """
    ll, score, info, meat = 0.0, np.zeros(p), np.zeros((p, p)), np.zeros((p, p))
    owner: dict[str, str] = {}
    for payload in payloads if distinct_strata else ():
        if payload.refused is None:
            for stratum in pd.unique(payload.tables["stats"]["stratum"]):
                if stratum == "*":
                    continue
                first = owner.setdefault(str(stratum), payload.site)
                if first != payload.site:
                    raise ValueError(
                        f"stratum {stratum!r} comes from sites {first!r} and {payload.site!r}: "
                        "strata must not cross sites (stratify by a column that differs "
                        "between sites, such as 'site')"
                    )
    for payload in payloads:
        if payload.refused is not None:
            continue
        df = payload.tables["stats"]
        for term, part in df.groupby("term", sort=False):
            i = part["i"].to_numpy()
            j = part["j"].to_numpy()
            v = part["value"].to_numpy(dtype=np.float64)
            if term == "loglik":
                ll += float(v.sum())
            elif term == "score":
                np.add.at(score, j, v)
            elif term == "information":
                np.add.at(info, (i, j), v)
            elif term == "meat":
                np.add.at(meat, (i, j), v)
    return ll, score, info, meat


# ---------------------------------------------------------------------- Cox


@dataclass(frozen=True)
class CoxStep:
    """One Newton round of a stratified Cox model (analysis ``"cox"``)."""

    name: str = "cox"

    def local(self, site: TableSite, spec: CoxRound) -> Payload:
        """Per-stratum statistics at ``spec.beta`` (and the robust meat when asked)."""
        return cox_round_payload(self.name, site, spec, _refusal)

    def combine(
        self, payloads: Sequence[Payload], spec: CoxRound, provenance: Provenance
    ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """Summed statistics at ``spec.beta``."""
        return sum_stats(payloads, len(spec.beta), distinct_strata=True)


# ---------------------------------------------------------------------- logistic


@dataclass(frozen=True)
class LogisticRound:
    """One Newton round of a logistic model at ``beta``."""

    outcome: str
    covariates: tuple[str, ...]
    levels: Levels
    beta: tuple[float, ...]
    weights: str | None = None

    def design_key(self) -> tuple[Any, ...]:
        """Everything but ``beta`` (the site caches its design matrix under this key)."""
        return ("logistic", self.outcome, self.covariates, self.levels, self.weights)


@dataclass(frozen=True)
class LogisticStep:
    """One Newton round of a logistic model (analysis ``"logistic"``)."""

    name: str = "logistic"

    def local(self, site: TableSite, spec: LogisticRound) -> Payload:
        """Summed log-likelihood, score and information at ``spec.beta``."""

        def prepare() -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
            cols = [spec.outcome, *spec.covariates, *([spec.weights] if spec.weights else [])]
            df = site.frame(list(dict.fromkeys(cols)))
            check_outcome(df, spec.outcome)
            x = logistic_design(df, spec.covariates, dict(spec.levels)).to_numpy()
            y = df[spec.outcome].to_numpy().astype(np.float64)
            w = None if spec.weights is None else check_weights(df, spec.weights)
            return x, y, w

        x, y, w = site.cached(spec.design_key(), prepare)
        refusal = _refusal(site, self.name, len(y), len(spec.beta))
        if refusal is not None:
            return refusal
        ll, score, info = logistic_stats(np.asarray(spec.beta), x, y, w)
        table = stats_table([("", ll, score, info)])
        return Payload(analysis=self.name, site=site.id, tables={"stats": table})

    def combine(
        self, payloads: Sequence[Payload], spec: LogisticRound, provenance: Provenance
    ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """Summed statistics at ``spec.beta``."""
        return sum_stats(payloads, len(spec.beta))


# ---------------------------------------------------------------------- counts


@dataclass(frozen=True)
class CountSpec:
    """Persons (and events) per cell of ``by``."""

    by: tuple[str, ...] = ()
    event: str | None = None


@dataclass(frozen=True)
class CountStep:
    """Suppressed person (and event) counts per cell (analysis ``"cohort"``)."""

    name: str = "cohort"

    def local(self, site: TableSite, spec: CountSpec) -> Payload:
        """Counts per cell, small cells suppressed (complementary within the site)."""
        cols = [*spec.by, *([spec.event] if spec.event else [])]
        df = site.frame(list(dict.fromkeys(cols))) if cols else site.frame()
        n = len(df)
        if 0 < n < site.policy.min_cohort_size:
            return refuse(site, self.name, "min_cohort_size")
        work = pd.DataFrame({c: df[c] for c in spec.by}, index=df.index)
        work["persons"] = 1
        counted = ["persons"]
        if spec.event is not None:
            work["events"] = df[spec.event].astype("int64")
            counted.append("events")
        if spec.by:
            out = work.groupby(list(spec.by), sort=True, dropna=False)[counted].sum().reset_index()
        else:
            out = pd.DataFrame({c: [int(work[c].sum())] for c in counted})
        for col in spec.by:
            if isinstance(out[col].dtype, pd.CategoricalDtype):
                out[col] = out[col].astype(str)
        out = suppress(out, counted, site.policy)
        out.insert(0, "site", site.id)
        return Payload(analysis=self.name, site=site.id, tables={"counts": out})

    def combine(
        self, payloads: Sequence[Payload], spec: CountSpec, provenance: Provenance
    ) -> pd.DataFrame:
        """The sites' count tables stacked (refused sites left out)."""
        parts = [p.tables["counts"] for p in payloads if p.refused is None]
        if not parts:
            return pd.DataFrame(columns=["site", *spec.by, "persons"])
        return pd.concat(parts, ignore_index=True)
