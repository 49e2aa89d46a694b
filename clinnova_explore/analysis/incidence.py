"""Incidence of an outcome cohort in a target cohort, as OHDSI CohortIncidence defines it.

Everything below runs in the site's database; only counts and person-day sums per stratum leave.

1. **Time at risk (TAR).** For each target cohort era the TAR starts at the era's start or end
   (``start_anchor``) plus ``start_offset`` days and ends at its start or end (``end_anchor``)
   plus ``end_offset`` days. Both dates are capped at the end of the observation period holding
   the era's start; a TAR whose start falls after its end is dropped. Overlapping TARs of one
   person are merged (CohortIncidence's "era-fied" TAR). Days count inclusively. As in
   CohortIncidence, a negative start offset is not cut at the observation period's start.
2. **Clean window.** With ``clean_window >= 1`` every outcome cohort era blocks the days from
   the day after its start to ``clean_window`` days after its end. Blocked days are not at
   risk: a person whose TAR begins inside an earlier outcome's clean window contributes only
   the days after the window, and a person whose whole TAR lies inside one is not at risk at
   all. ``clean_window = 0`` blocks nothing.
3. **Outcomes** are all outcome eras starting on an unblocked TAR day (first and recurrent
   events; an outcome never blocks its own start day). ``person_outcomes`` counts persons with
   at least one; ``persons_at_risk`` counts persons with at least one unblocked TAR day.
4. **Statistics.** Incidence proportion ``100 * person_outcomes / persons_at_risk`` per 100
   persons with an exact (Clopper-Pearson) interval; rate ``100 * outcomes / person_years``
   per 100 person-years, ``person_years = person_days / 365.25``, with the exact Poisson
   (Garwood) interval ``chi2(a/2, 2k) / 2 .. chi2(1 - a/2, 2k + 2) / 2`` over person-years.
5. **Strata.** ``age_group`` (age at TAR start = TAR start year minus year of birth), ``sex``
   (gender concept), ``year`` (person-days split exactly at each 1 January; an outcome counts
   in its own year; a person is at risk in a year with at least one unblocked day in it) and
   ``site``. Each requested stratum is reported on its own (a tuple crosses dimensions).

The queries live in :mod:`~clinnova_explore.analysis.incidence_local`, the cohort helpers in
:mod:`~clinnova_explore.analysis.cohort_tables` and the intervals in
:mod:`~clinnova_explore.analysis.exact_ci`; their names stay importable from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from clinnova_explore.analysis.cohort_tables import (
    CohortRef,
    CohortTable,
    materialized,
    merge_intervals,
    resolve_cohort,
    split_by_year,
)
from clinnova_explore.analysis.exact_ci import exact_poisson_ci, exact_proportion_ci
from clinnova_explore.analysis.incidence_local import (
    aggregate_strata,
    at_risk_pieces,
    stratum_label,
)
from clinnova_explore.analysis.payload import Payload
from clinnova_explore.analysis.result import AnalysisResult, Mode, Provenance

if TYPE_CHECKING:
    from clinnova_explore.analysis.exchange import OnFailure, Runner


__all__ = [
    "CohortRef",
    "CohortTable",
    "IncidenceAnalysis",
    "IncidenceResult",
    "IncidenceSpec",
    "TimeAtRisk",
    "exact_poisson_ci",
    "exact_proportion_ci",
    "incidence",
    "materialized",
    "merge_intervals",
    "resolve_cohort",
    "split_by_year",
]

Anchor = Literal["start", "end"]
DIMENSIONS = ("age_group", "sex", "year")
COUNTS = ("persons_at_risk", "person_outcomes", "outcomes")
DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class TimeAtRisk:
    """When a target cohort member is at risk: ``anchor + offset`` days, both ends inclusive."""

    start_anchor: Anchor = "start"
    start_offset: int = 0
    end_anchor: Anchor = "end"
    end_offset: int = 0

    def __post_init__(self) -> None:
        for name in ("start_anchor", "end_anchor"):
            if getattr(self, name) not in ("start", "end"):
                raise ValueError(
                    f"TimeAtRisk.{name} must be 'start' or 'end' (of the target cohort era), "
                    f"got {getattr(self, name)!r}"
                )

    def label(self) -> str:
        """E.g. ``"cohort start + 0 d .. cohort end + 0 d"``."""
        return (
            f"cohort {self.start_anchor} {self.start_offset:+d} d .. "
            f"cohort {self.end_anchor} {self.end_offset:+d} d"
        )


def _normalize_strata(
    strata: Iterable[str | Sequence[str]],
) -> tuple[tuple[tuple[str, ...], ...], bool]:
    groupings: list[tuple[str, ...]] = [()]
    by_site = False
    for item in strata:
        dims = (item,) if isinstance(item, str) else tuple(item)
        if dims == ("site",):
            by_site = True
            continue
        unknown = [d for d in dims if d not in DIMENSIONS]
        if unknown or not dims or len(set(dims)) != len(dims):
            raise ValueError(
                f"incidence strata: {item!r} is not valid; use 'site' or any of "
                f"{', '.join(DIMENSIONS)} (a tuple of them crosses dimensions)"
            )
        ordered = tuple(d for d in DIMENSIONS if d in dims)
        if ordered not in groupings:
            groupings.append(ordered)
    return tuple(groupings), by_site


@dataclass(frozen=True)
class IncidenceSpec:
    """Everything one incidence run needs; built by :func:`incidence`."""

    target: CohortRef
    outcome: CohortRef
    tar: TimeAtRisk = TimeAtRisk()
    clean_window: int = 0
    groupings: tuple[tuple[str, ...], ...] = ((),)
    by_site: bool = True
    age_breaks: tuple[int, ...] = (0, 18, 30, 40, 50, 60, 70, 80)
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if self.clean_window < 0:
            raise ValueError(f"clean_window must be >= 0 days, got {self.clean_window}")
        breaks = list(self.age_breaks)
        if not breaks or breaks != sorted(set(breaks)) or breaks[0] < 0:
            raise ValueError(f"age_breaks must be increasing and >= 0, got {self.age_breaks}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha}")

    def age_labels(self) -> list[str]:
        """Age group labels, e.g. ``["0-17", "18-29", ..., "80+"]``."""
        b = self.age_breaks
        return [f"{lo}-{hi - 1}" for lo, hi in pairwise(b)] + [f"{b[-1]}+"]


# ---------------------------------------------------------------------- the two steps

KEYS = ["stratum", "age_group", "sex", "year"]
SUMS = ["persons_at_risk", "person_days", "person_outcomes", "outcomes"]


class IncidenceAnalysis:
    """The ``incidence`` analysis (``local`` + ``combine``) for :func:`~.contract.run`."""

    name = "incidence"

    def local(self, site: Any, spec: IncidenceSpec) -> Payload:
        """Person-days, persons and outcomes per stratum at one site, small cells suppressed.

        Returns a ``min_cohort_size`` refusal when the target cohort has fewer persons than the
        site's policy allows. A row whose ``persons_at_risk`` is suppressed also hides its
        ``person_days``; complementary suppression works within each stratum and, for
        crossed strata, along each of their margins.
        """
        from clinnova_explore.analysis.contract import refuse_small_cohort, suppress

        # both cohorts are materialized once in temporary tables, dropped on leaving
        with materialized(site, resolve_cohort(spec.target, site)) as target:
            persons = int(target.subject_id.nunique().to_pyarrow().as_py())
            refusal = refuse_small_cohort(site, self.name, persons)
            if refusal is not None:
                return refusal
            with materialized(site, resolve_cohort(spec.outcome, site)) as outcome:
                pieces = at_risk_pieces(site, spec, target, outcome)
                df = aggregate_strata(pieces, spec.groupings)
        df = suppress(df, list(COUNTS), site.policy, group_by=["stratum"])
        df = _protect_margins(df, spec.groupings)
        df["person_days"] = df["person_days"].mask(df["persons_at_risk"].isna())
        return Payload(self.name, site.id, {"strata": df}, {"target_persons": persons})

    def combine(
        self, payloads: Sequence[Payload], spec: IncidenceSpec, provenance: Provenance
    ) -> IncidenceResult:
        """Sum the sites' strata (a cell with any suppressed part is NA), add rates and CIs."""
        from clinnova_explore.analysis.contract import answered, combine_counts

        ok = answered(payloads)
        parts = [
            combine_counts([p.tables["strata"] for p in ok], KEYS, SUMS).assign(site="overall")
        ]
        if spec.by_site and provenance.mode == "federated" and len(payloads) > 1:
            parts += [
                combine_counts([p.tables["strata"]], KEYS, SUMS).assign(site=p.site) for p in ok
            ]
        table = pd.concat(parts, ignore_index=True) if ok else _empty_strata()
        sites = pd.DataFrame(
            {
                "site": [p.site for p in payloads],
                "target_persons": pd.array(
                    [p.values.get("target_persons") for p in payloads], dtype="Int64"
                ),
                "refused": [p.refused for p in payloads],
            }
        )
        return IncidenceResult(
            summary=_with_statistics(_ordered(table, spec, provenance), spec.alpha),
            provenance=provenance,
            sites=sites,
            tar=spec.tar,
            clean_window=spec.clean_window,
        )


def _protect_margins(df: pd.DataFrame, groupings: Sequence[tuple[str, ...]]) -> pd.DataFrame:
    """Complementary suppression along every margin of the crossed strata.

    The cells of ``age_group x sex`` that share an age group add up to that age group's row
    (released in the ``age_group`` stratum or recoverable from the overall row). Suppression
    per stratum alone can leave one hidden cell in such a line, recoverable as margin minus
    visible cells; here, while any line holds exactly one hidden count, its smallest other
    non-zero count is hidden as well.
    """
    out = df.copy()
    lines = []
    for dims in groupings:
        if len(dims) < 2:
            continue
        cells = out[out["stratum"] == stratum_label(dims)]
        for dim in dims:
            rest = [d for d in dims if d != dim]
            lines += list(cells.groupby(rest, dropna=False).groups.values())
    changed = bool(lines)
    while changed:
        changed = False
        for col in COUNTS:
            for ix in lines:
                values = out.loc[ix, col]
                if int(values.isna().sum()) != 1:
                    continue
                visible = values[values.notna() & (values > 0)]
                if visible.empty:
                    continue
                i = visible.sort_values(kind="stable").index[0]
                out.loc[i, col] = pd.NA
                out.loc[i, "suppressed"] = True
                changed = True
    return out


def _empty_strata() -> pd.DataFrame:
    cols: dict[str, Any] = {k: pd.Series(dtype=object) for k in KEYS}
    cols["year"] = pd.Series(dtype="Int64")
    cols.update({k: pd.Series(dtype="Int64") for k in SUMS})
    return pd.DataFrame(cols).assign(suppressed=pd.Series(dtype=bool), site=pd.Series(dtype=object))


def _ordered(table: pd.DataFrame, spec: IncidenceSpec, provenance: Provenance) -> pd.DataFrame:
    site_rank = {s: i for i, s in enumerate(["overall", *provenance.sites])}
    stratum_rank = {stratum_label(g): i for i, g in enumerate(spec.groupings)}
    age_rank = {a: i for i, a in enumerate(spec.age_labels())}
    sex_rank = {"female": 0, "male": 1, "unknown": 2}
    ranks = pd.DataFrame(
        {
            "a": table.site.map(site_rank).fillna(len(site_rank)),
            "b": table.stratum.map(stratum_rank).fillna(len(stratum_rank)),
            "c": table.age_group.map(age_rank).fillna(-1),
            "d": table.sex.map(sex_rank).fillna(-1),
            "e": table.year.astype("Float64").fillna(-1),
        }
    )
    order = ranks.sort_values(list(ranks.columns), kind="stable").index
    cols = ["site", *KEYS, *SUMS, "suppressed"]
    return table.loc[order, cols].reset_index(drop=True)


def _with_statistics(table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    out = table.copy()
    years = out.person_days.astype("Float64") / DAYS_PER_YEAR
    out.insert(out.columns.get_loc("person_days") + 1, "person_years", years)
    n = out.persons_at_risk.astype("Float64")
    x = out.person_outcomes.astype("Float64")
    k = out.outcomes.astype("Float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        out["proportion_p100p"] = (100 * x / n).mask(n == 0)
        lo, hi = exact_proportion_ci(x, n, alpha)
        out["proportion_lower"], out["proportion_upper"] = 100 * lo, 100 * hi
        out["rate_p100py"] = (100 * k / years).mask(years == 0)
        lo, hi = exact_poisson_ci(k, alpha)
        py = years.to_numpy(dtype=float, na_value=np.nan)
        valid = py > 0
        out["rate_lower"] = np.where(valid, 100 * lo / np.where(valid, py, 1), np.nan)
        out["rate_upper"] = np.where(valid, 100 * hi / np.where(valid, py, 1), np.nan)
    for col in ("person_years", "proportion_p100p", "rate_p100py"):
        out[col] = out[col].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    return out[[c for c in out.columns if c != "suppressed"] + ["suppressed"]]


@dataclass(frozen=True, eq=False)
class IncidenceResult(AnalysisResult):
    """Incidence proportions and rates per site and stratum.

    Attributes
    ----------
    summary
        One row per site (``"overall"`` first) and stratum level: ``persons_at_risk``,
        ``person_days``, ``person_years``, ``person_outcomes``, ``outcomes``,
        ``proportion_p100p`` (with exact ``proportion_lower``/``_upper``), ``rate_p100py``
        (with exact Poisson ``rate_lower``/``_upper``) and ``suppressed``.
    sites
        Target cohort size per site, and the rule that fired where a site refused.
    tar, clean_window
        The time at risk and clean window used.
    """

    sites: pd.DataFrame = field(default_factory=pd.DataFrame)
    tar: TimeAtRisk = TimeAtRisk()
    clean_window: int = 0

    def overall(self) -> pd.Series:
        """The all-sites, all-strata row."""
        s = self.summary
        return s[(s.site == "overall") & (s.stratum == "overall")].iloc[0]

    def plot(self, by: str | None = None) -> Any:
        """Rates per 100 person-years with exact CIs by ``by`` (a stratum, or ``"site"``).

        By default the first of ``year``, ``age_group``, ``sex`` in the summary, else ``site``.
        """
        from clinnova_explore.viz.incidence import rate_plot

        if by is None:
            present = set(self.summary.stratum)
            by = next((d for d in ("year", "age_group", "sex") if d in present), "site")
        return rate_plot(self.summary, by=by)

    def _title(self) -> str:
        return f"Incidence ({self.tar.label()}, clean window {self.clean_window} d)"


def incidence(
    target: CohortRef,
    outcome: CohortRef,
    sites: Any,
    *,
    tar: TimeAtRisk = TimeAtRisk(),
    clean_window: int = 0,
    strata: Sequence[str | Sequence[str]] = ("age_group", "sex", "year", "site"),
    age_breaks: Sequence[int] = (0, 18, 30, 40, 50, 60, 70, 80),
    alpha: float = 0.05,
    mode: Mode = "federated",
    transport: str = "arrow",
    runner: Runner | None = None,
    on_failure: OnFailure = "require_all_sites",
) -> IncidenceResult:
    """Incidence of ``outcome`` in ``target`` over a federation (definitions: module docstring).

    Parameters
    ----------
    target, outcome
        Cohort definitions (compiled at each site) or :class:`CohortTable` references.
    sites
        A catalog or CDM sources.
    tar
        Time at risk relative to the target cohort era.
    clean_window
        Days after an outcome era's end before the person is at risk again (0: none).
    strata
        ``"age_group"``, ``"sex"``, ``"year"`` (each reported on its own; a tuple crosses
        them) and ``"site"`` (per-site rows beside the overall ones, federated mode).
    age_breaks
        Lower bounds of the age groups.
    alpha
        1 - confidence level of the exact intervals.
    mode, transport
        As in :func:`clinnova_explore.analysis.contract.run`.
    runner
        Where the site steps run: in this process (default) or a
        :class:`~clinnova_explore.federated.process_runner.ProcessRunner` (a process per site).
    on_failure
        ``"require_all_sites"`` (default: a site that is down, too slow or raises stops the
        analysis, naming it) or ``"allow_partial"`` (the result covers the other sites and is
        flagged ``provenance.partial``).

    Returns
    -------
    IncidenceResult
    """
    from clinnova_explore.analysis.contract import run

    groupings, by_site = _normalize_strata(strata)
    spec = IncidenceSpec(
        target=target,
        outcome=outcome,
        tar=tar,
        clean_window=clean_window,
        groupings=groupings,
        by_site=by_site,
        age_breaks=tuple(age_breaks),
        alpha=alpha,
    )
    return run(
        IncidenceAnalysis(),
        spec,
        sites,
        mode=mode,
        transport=transport,
        runner=runner,
        on_failure=on_failure,
    )
