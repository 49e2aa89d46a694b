"""Baseline covariates of a time-to-event table, measured relative to each person's index date.

A :class:`Covariate` names concepts in one CDM domain and a window of days around the index
date (both ends inclusive; ``None`` as the lower end means any time before). Three kinds:

- ``measurement_latest``: the latest non-missing ``value_as_number`` in the window (ties on
  the same day are broken by the largest record id), NULL when there is none. Values outside
  ``value_range`` (e.g. an impossible EDSS of 14.5) are treated as missing;
- ``count``: the number of records starting in the window (0 when none);
- ``any``: 1 when at least one record starts in the window, else 0.

Concepts include their descendants in the site's own ``concept_ancestor``. Everything is a lazy
ibis expression on the site's backend; :func:`add_covariates` left-joins one column per
covariate onto a table keyed by ``person_id`` and ``index_date``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import ibis
import ibis.expr.types as ir

from clinnova_explore.analysis.covariates import DOMAIN_COLUMNS
from clinnova_explore.cohort.events import add_days

__all__ = [
    "COVARIATE_DOMAINS",
    "COVARIATE_KINDS",
    "Covariate",
    "CovariateError",
    "add_covariates",
]

CovariateKind = Literal["measurement_latest", "count", "any"]
CovariateDomain = Literal["condition", "drug", "procedure", "measurement", "observation"]
Transform = Literal["identity", "log"]

COVARIATE_KINDS: tuple[str, ...] = ("measurement_latest", "count", "any")
COVARIATE_DOMAINS: tuple[str, ...] = (
    "condition",
    "drug",
    "procedure",
    "measurement",
    "observation",
)


_NAME = re.compile(r"[a-z_][a-z0-9_]*")


class CovariateError(ValueError):
    """A covariate is malformed; the message names the covariate and the field to change."""


@dataclass(frozen=True)
class Covariate:
    """One baseline covariate, measured relative to the index date.

    Parameters
    ----------
    name
        Output column name (lower case letters, digits and underscores).
    kind
        ``"measurement_latest"`` (latest value, domains measurement and observation),
        ``"count"`` (number of records) or ``"any"`` (0/1).
    domain
        ``condition``, ``drug``, ``procedure``, ``measurement`` or ``observation``.
    concept_ids
        The concepts; each includes its descendants in the site's ``concept_ancestor``.
    window
        Inclusive ``(start, end)`` day offsets relative to the index date; ``start`` may be
        ``None`` (any time before ``end``).
    value_range
        ``measurement_latest`` only: inclusive ``(low, high)`` bounds; values outside are
        treated as missing (implausible). ``None`` keeps every value.
    transform
        ``measurement_latest`` only: ``"identity"`` (the value) or ``"log"`` (its natural
        logarithm, NULL for values <= 0), applied after ``value_range``.

    Examples
    --------
    >>> Covariate("baseline_edss", "measurement_latest", "measurement", (2000000402,), (-90, 0))
    ... # doctest: +ELLIPSIS
    Covariate(name='baseline_edss', kind='measurement_latest', ...)
    """

    name: str
    kind: CovariateKind
    domain: CovariateDomain
    concept_ids: tuple[int, ...]
    window: tuple[int | None, int] = (-365, 0)
    value_range: tuple[float, float] | None = None
    transform: Transform = "identity"

    def __post_init__(self) -> None:
        where = f"covariate {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise CovariateError(
                f"{where}: the name must be a lower-case identifier (letters, digits, _)"
            )
        if self.kind not in COVARIATE_KINDS:
            raise CovariateError(
                f"{where}: kind {self.kind!r} is unknown; use one of {', '.join(COVARIATE_KINDS)}"
            )
        if self.domain not in COVARIATE_DOMAINS:
            raise CovariateError(
                f"{where}: domain {self.domain!r} is unknown; use one of "
                f"{', '.join(COVARIATE_DOMAINS)}"
            )
        if self.kind == "measurement_latest" and self.domain not in ("measurement", "observation"):
            raise CovariateError(
                f"{where}: kind 'measurement_latest' reads value_as_number, which only the "
                f"measurement and observation domains have (got domain {self.domain!r})"
            )
        ids = tuple(self.concept_ids) if not isinstance(self.concept_ids, int) else ()
        if not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise CovariateError(f"{where}: concept_ids must be a non-empty list of integer ids")
        object.__setattr__(self, "concept_ids", ids)
        window = tuple(self.window)
        if (
            len(window) != 2
            or not isinstance(window[1], int)
            or not (window[0] is None or isinstance(window[0], int))
        ):
            raise CovariateError(
                f"{where}: window must be (start, end) in whole days, start may be None; "
                f"got {self.window!r}"
            )
        if window[0] is not None and window[0] > window[1]:
            raise CovariateError(
                f"{where}: window start {window[0]} is after its end {window[1]}; swap them"
            )
        object.__setattr__(self, "window", window)
        if self.value_range is not None:
            if self.kind != "measurement_latest":
                raise CovariateError(
                    f"{where}: value_range applies to kind 'measurement_latest' only; remove it"
                )
            low, high = (float(v) for v in self.value_range)
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise CovariateError(
                    f"{where}: value_range must be finite (low, high) with low <= high, "
                    f"got {self.value_range!r}"
                )
            object.__setattr__(self, "value_range", (low, high))
        if self.transform not in ("identity", "log"):
            raise CovariateError(
                f"{where}: transform {self.transform!r} is unknown; use 'identity' or 'log'"
            )
        if self.transform != "identity" and self.kind != "measurement_latest":
            raise CovariateError(
                f"{where}: transform applies to kind 'measurement_latest' only; remove it"
            )

    def to_dict(self) -> dict[str, Any]:
        """A YAML/JSON-friendly dict; :meth:`from_dict` reads it back."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "domain": self.domain,
            "concept_ids": list(self.concept_ids),
            "window": list(self.window),
        }
        if self.value_range is not None:
            out["value_range"] = list(self.value_range)
        if self.transform != "identity":
            out["transform"] = self.transform
        return out

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "covariate") -> Covariate:
        """Build from a mapping; unknown or missing keys are an error naming them."""
        if not isinstance(data, dict):
            raise CovariateError(f"{where}: a covariate is a mapping, got {type(data).__name__}")
        known = {"name", "kind", "domain", "concept_ids", "window", "value_range", "transform"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CovariateError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        missing = [k for k in ("name", "kind", "domain", "concept_ids") if k not in data]
        if missing:
            raise CovariateError(f"{where}: missing key(s) {', '.join(missing)}")
        args = dict(data)
        if "window" in args:
            args["window"] = tuple(args["window"])
        if args.get("value_range") is not None:
            args["value_range"] = tuple(args["value_range"])
        args["concept_ids"] = tuple(args["concept_ids"])
        return cls(**args)


def _concepts(cdm: Any, ids: Sequence[int]) -> ir.Table:
    """The concepts and their descendants in the site's vocabulary (one column ``cid``)."""
    ancestor = cdm.table("concept_ancestor")
    desc = ancestor.filter(ancestor.ancestor_concept_id.isin(list(ids)))
    parts = desc.select(cid=desc.descendant_concept_id.cast("int64"))
    # the ids themselves, also where a vocabulary lacks the concept's own ancestor row
    concept = cdm.table("concept")
    own = concept.filter(concept.concept_id.isin(list(ids))).select(
        cid=concept.concept_id.cast("int64")
    )
    return parts.union(own, distinct=True)


def _records(cdm: Any, cov: Covariate, index: ir.Table) -> ir.Table:
    """The covariate's records inside each index row's window (``person_id``, ``index_date``)."""
    table, concept_col, date_col = DOMAIN_COLUMNS[cov.domain]
    record_id = f"{table}_id"  # every CDM event table keys its rows so
    raw = cdm.table(table)
    concepts = _concepts(cdm, cov.concept_ids)
    cols: dict[str, ir.Value] = {
        "r_person": raw.person_id.cast("int64"),
        "r_id": raw[record_id].cast("int64"),
        "r_date": raw[date_col].cast("date"),
    }
    if cov.kind == "measurement_latest":
        cols["r_value"] = raw.value_as_number.cast("float64")
    recs = raw.filter(raw[concept_col].cast("int64").isin(concepts.cid)).select(**cols)
    if cov.kind == "measurement_latest":
        recs = recs.filter(recs.r_value.notnull())
        if cov.value_range is not None:
            low, high = cov.value_range
            recs = recs.filter(recs.r_value.between(low, high))
    lo, hi = cov.window
    conds = [
        recs.r_person == index.person_id,
        recs.r_date <= add_days(index.index_date, hi),
    ]
    if lo is not None:
        conds.append(recs.r_date >= add_days(index.index_date, lo))
    joined = index.select("person_id", "index_date").join(recs, conds)
    return joined


def _column(cdm: Any, cov: Covariate, index: ir.Table) -> ir.Table:
    """One row per index row that has records: ``person_id``, ``index_date``, ``value``."""
    joined = _records(cdm, cov, index)
    if cov.kind == "measurement_latest":
        rank = ibis.row_number().over(
            group_by=[joined.person_id, joined.index_date],
            order_by=[joined.r_date.desc(), joined.r_id.desc()],
        )
        latest = joined.mutate(_rank=rank)
        latest = latest.filter(latest._rank == 0)
        value = latest.r_value
        if cov.transform == "log":
            value = ibis.ifelse(value > 0, value.ln(), ibis.null("float64"))
        return latest.select("person_id", "index_date", value=value)
    grouped = joined.group_by(["person_id", "index_date"])
    if cov.kind == "count":
        return grouped.aggregate(value=joined.count().cast("float64"))
    return grouped.aggregate(value=ibis.literal(1.0, "float64"))


def add_covariates(cdm: Any, rows: ir.Table, covariates: Sequence[Covariate]) -> ir.Table:
    """``rows`` (keyed by ``person_id``, ``index_date``) plus one float64 column per covariate.

    ``measurement_latest`` columns are NULL where no value lies in the window; ``count`` and
    ``any`` columns are 0 there.
    """
    out = rows
    for cov in covariates:
        col = _column(cdm, cov, rows.select("person_id", "index_date").distinct())
        col = col.rename(_cp="person_id", _ci="index_date")
        joined = out.left_join(col, [out.person_id == col._cp, out.index_date == col._ci])
        value = col.value.cast("float64")
        if cov.kind != "measurement_latest":
            value = value.fill_null(0.0)
        out = joined.select(*[joined[c] for c in out.columns], **{cov.name: value})
    return out
