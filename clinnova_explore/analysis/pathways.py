"""Treatment pathways: the sequence of treatments each target cohort member receives.

In the spirit of OHDSI ATLAS cohort pathways and TreatmentPatterns; every step below runs in
the site's database and only the number of persons per path leaves it.

1. **Window.** Each person's first target cohort era. Event records (a cohort's eras, or the
   drug exposures of a concept set, end = ``drug_exposure_end_date`` or the start day) count
   when they start inside it; their ends are cut at the era's end.
2. **Treatment eras.** Records of one event at most ``era_pad`` days apart (days without the
   event between them) are one era.
3. **Segments.** Each person's time is cut wherever an era starts or ends; every piece has a set
   of active events. A piece with two or more events lasting at least ``combination_window``
   days is the combination step ``"A+B"`` (names in alphabetical order). A shorter overlap is a
   switch: the piece belongs to the event(s) whose era started last.
4. **Steps.** Consecutive pieces with the same label form one step; with ``allow_repeats`` a
   repeat after a period without any event is a new step (``A > A``), otherwise repeats of
   the previous step are dropped. Only the first ``max_length`` steps are kept.
5. **Counts.** Persons per path; persons of the target cohort without any event form the
   path ``"(no event)"``. Paths with fewer persons than the larger of the site's
   ``min_cell_count`` and ``min_cell_count`` are suppressed (with one complementary cell):
   the path stays listed, its count is hidden, so an overall count is never a lower bound.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from clinnova_explore.analysis.incidence import (
    CohortRef,
    CohortTable,
    materialized,
    merge_intervals,
    resolve_cohort,
)
from clinnova_explore.analysis.payload import Payload
from clinnova_explore.analysis.result import AnalysisResult, Mode, Provenance
from clinnova_explore.cohort import CohortDefinition
from clinnova_explore.cohort.model import ConceptSet
from clinnova_explore.disclosure import suppress_counts

if TYPE_CHECKING:
    from clinnova_explore.analysis.exchange import OnFailure, Runner


__all__ = [
    "NO_EVENT",
    "STEP_SEP",
    "EventRef",
    "PathwaysAnalysis",
    "PathwaysResult",
    "PathwaysSpec",
    "pathways",
    "person_paths",
    "treatment_eras",
]

STEP_SEP = " > "
NO_EVENT = "(no event)"
_NAME = re.compile(r"^[^\W_][\w .\-/()']*$")

EventRef = CohortDefinition | CohortTable | ConceptSet | int | Sequence[int]


def _event(name: str, ref: EventRef) -> CohortDefinition | CohortTable | ConceptSet:
    if not isinstance(name, str) or not _NAME.match(name) or STEP_SEP.strip() in name:
        raise ValueError(
            f"event name {name!r}: use letters, digits, spaces and . - / ( ) ' only "
            "(no '+' or '>', which mark combinations and steps)"
        )
    if isinstance(ref, CohortDefinition | CohortTable | ConceptSet):
        return ref
    if isinstance(ref, int) and not isinstance(ref, bool):
        return ConceptSet(include=(ref,))
    if isinstance(ref, Sequence) and ref and all(isinstance(i, int) for i in ref):
        return ConceptSet(include=tuple(ref))
    raise TypeError(
        f"event {name!r}: expected a CohortDefinition, CohortTable, ConceptSet, a drug concept id "
        f"or a list of them, got {ref!r}"
    )


@dataclass(frozen=True)
class PathwaysSpec:
    """Everything one pathways run needs; built by :func:`pathways`."""

    target: CohortRef
    events: dict[str, CohortDefinition | CohortTable | ConceptSet]
    era_pad: int = 30
    combination_window: int = 30
    max_length: int = 5
    allow_repeats: bool = False
    min_cell_count: int | None = None

    def __post_init__(self) -> None:
        if not self.events:
            raise ValueError("pathways needs at least one event (name -> cohort or concept set)")
        for name, value in (
            ("era_pad", self.era_pad),
            ("combination_window", self.combination_window),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0 days, got {value}")
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1 step, got {self.max_length}")
        if self.min_cell_count is not None and self.min_cell_count < 1:
            raise ValueError(f"min_cell_count must be >= 1, got {self.min_cell_count}")


# ---------------------------------------------------------------------- in the database


class _TableMemo:
    """A CDM source that looks each table up once (concept sets ask for the same few tables)."""

    def __init__(self, site: Any) -> None:
        self._site = site
        self._tables: dict[str, ir.Table] = {}

    def table(self, name: str) -> ir.Table:
        if name not in self._tables:
            self._tables[name] = self._site.table(name)
        return self._tables[name]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._site, name)


def _event_records(
    site: Any, name: str, ref: CohortDefinition | CohortTable | ConceptSet
) -> ir.Table:
    if isinstance(ref, ConceptSet):
        from clinnova_explore.cohort.conceptset import resolve_concept_set

        drugs = site.table("drug_exposure")
        drugs = drugs.filter(
            resolve_concept_set(ref, site).matches(
                drugs.drug_concept_id, drugs.drug_source_concept_id
            )
        )
        start = drugs.drug_exposure_start_date.cast("date")
        end = drugs.drug_exposure_end_date.cast("date").fill_null(start)
        return drugs.select(
            subject_id=drugs.person_id.cast("int64"),
            event=ibis.literal(name),
            start=start,
            end=ibis.greatest(end, start),
        )
    cohort = resolve_cohort(ref, site)
    return cohort.select(
        "subject_id",
        event=ibis.literal(name),
        start=cohort.cohort_start_date,
        end=ibis.greatest(cohort.cohort_end_date, cohort.cohort_start_date),
    )


def _first_eras(target: ir.Table) -> ir.Table:
    order = ibis.window(group_by="subject_id", order_by=["cohort_start_date", "cohort_end_date"])
    first = target.mutate(_rn=ibis.row_number().over(order)).filter(ibis._._rn == 0)
    return first.select("subject_id", t_start="cohort_start_date", t_end="cohort_end_date")


def treatment_eras(site: Any, spec: PathwaysSpec, target: ir.Table) -> ir.Table:
    """Lazy ``subject_id, event, start, end``: each member's eras inside the first target era."""
    window = _first_eras(target)
    memo = _TableMemo(site)
    parts = [_event_records(memo, name, ref) for name, ref in spec.events.items()]
    records = ibis.union(*parts) if len(parts) > 1 else parts[0]
    j = records.join(
        window,
        [
            records.subject_id == window.subject_id,
            records.start >= window.t_start,
            records.start <= window.t_end,
        ],
    )
    records = j.select("subject_id", "event", "start", end=ibis.least(j.end, j.t_end))
    return merge_intervals(records, ["subject_id", "event"], pad=spec.era_pad + 1)


def person_paths(site: Any, spec: PathwaysSpec, eras: ir.Table | None = None) -> ir.Table:
    """Lazy table of ``subject_id, path`` for target members with at least one event.

    ``eras`` are the :func:`treatment_eras` when the caller has them (e.g. materialized);
    by default they are built from ``spec``.
    """
    if eras is None:
        eras = treatment_eras(site, spec, resolve_cohort(spec.target, site))
    day = ibis.interval(days=1)
    points = eras.select("subject_id", p=eras.start).union(
        eras.select("subject_id", p=eras.end + day), distinct=True
    )
    nxt = points.p.lead().over(ibis.window(group_by="subject_id", order_by="p"))
    segs = points.mutate(nxt=nxt).filter(ibis._.nxt.notnull())
    segs = segs.select("subject_id", seg_start=segs.p, seg_end=segs.nxt - day)
    cov = segs.join(
        eras,
        [
            segs.subject_id == eras.subject_id,
            eras.start <= segs.seg_start,
            eras.end >= segs.seg_end,
        ],
    ).select("subject_id", "seg_start", "seg_end", "event", "start")
    latest = cov.start.max().over(ibis.window(group_by=["subject_id", "seg_start"]))
    cov = cov.mutate(is_new=cov.start == latest)
    lab = cov.group_by("subject_id", "seg_start", "seg_end").agg(
        n=cov.event.count(),
        every=cov.event.group_concat("+", order_by=cov.event),
        newest=cov.event.group_concat("+", where=cov.is_new, order_by=cov.event),
    )
    short = lab.seg_end.delta(lab.seg_start, unit="day") + 1 < spec.combination_window
    steps = lab.select(
        "subject_id",
        "seg_start",
        "seg_end",
        label=ibis.ifelse((lab.n > 1) & short, lab.newest, lab.every),
    )

    by_time = ibis.window(group_by="subject_id", order_by="seg_start")
    prev_label = steps.label.lag().over(by_time)
    fresh = prev_label.isnull() | (steps.label != prev_label)
    if spec.allow_repeats:
        fresh = fresh | (steps.seg_start > steps.seg_end.lag().over(by_time) + day)
    steps = steps.mutate(_fresh=ibis.ifelse(fresh, 1, 0))
    upto = ibis.window(group_by="subject_id", order_by="seg_start", rows=(None, 0))
    steps = steps.mutate(step=steps._fresh.sum().over(upto))
    steps = steps.filter(steps.step <= spec.max_length)
    steps = steps.group_by("subject_id", "step").agg(label=steps.label.max())
    return steps.group_by("subject_id").agg(
        path=steps.label.group_concat(STEP_SEP, order_by=steps.step)
    )


# ---------------------------------------------------------------------- the two steps


class PathwaysAnalysis:
    """The ``pathways`` analysis (``local`` + ``combine``) for :func:`~.contract.run`."""

    name = "pathways"

    def local(self, site: Any, spec: PathwaysSpec) -> Payload:
        """Persons per path at one site (``"(no event)"`` included), small counts suppressed."""
        from clinnova_explore.analysis.contract import refuse_small_cohort

        # the target cohort and the eras are materialized in temporary tables, dropped on leaving
        with materialized(site, resolve_cohort(spec.target, site)) as target:
            persons = int(target.subject_id.nunique().to_pyarrow().as_py())
            refusal = refuse_small_cohort(site, self.name, persons)
            if refusal is not None:
                return refusal
            with materialized(site, treatment_eras(site, spec, target)) as eras:
                paths = person_paths(site, spec, eras)
                counts = paths.group_by("path").agg(persons=paths.subject_id.count()).to_pandas()
        treated = int(counts.persons.sum())
        rows = pd.DataFrame(
            {
                "path": [*counts.path.astype(str), NO_EVENT],
                "persons": pd.array(
                    [*counts.persons.astype(int), persons - treated], dtype="Int64"
                ),
            }
        )
        rows["path"] = rows.path.astype(object)
        rows = rows.sort_values("path", kind="stable").reset_index(drop=True)
        threshold = max(site.policy.min_cell_count, spec.min_cell_count or 1)
        rows = suppress_counts(rows, ["persons"], threshold)
        return Payload(self.name, site.id, {"paths": rows}, {"target_persons": persons})

    def combine(
        self, payloads: Sequence[Payload], spec: PathwaysSpec, provenance: Provenance
    ) -> PathwaysResult:
        """Sum persons per path over sites (any suppressed part makes the sum NA); add %."""
        from clinnova_explore.analysis.contract import answered, combine_counts

        ok = answered(payloads)
        overall = combine_counts([p.tables["paths"] for p in ok], ["path"], ["persons"])
        if spec.min_cell_count is not None and len(ok) > 1:
            overall = suppress_counts(overall, ["persons"], spec.min_cell_count)
        total = sum(int(p.values["target_persons"] or 0) for p in ok)
        parts = [overall.assign(site="overall", target_persons=total)]
        if provenance.mode == "federated" and len(payloads) > 1:
            parts += [
                p.tables["paths"].assign(site=p.site, target_persons=p.values["target_persons"])
                for p in ok
            ]
        table = pd.concat(parts, ignore_index=True) if ok else _empty_paths()
        return PathwaysResult(
            summary=_frequency_table(table, ["overall", *provenance.sites], spec.max_length),
            provenance=provenance,
            target_persons=total,
        )


def _empty_paths() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": pd.Series(dtype=object),
            "persons": pd.Series(dtype="Int64"),
            "suppressed": pd.Series(dtype=bool),
            "site": pd.Series(dtype=object),
            "target_persons": pd.Series(dtype="int64"),
        }
    )


def _frequency_table(table: pd.DataFrame, sites: list[str], max_length: int) -> pd.DataFrame:
    steps = [[] if p == NO_EVENT else str(p).split(STEP_SEP) for p in table.path]
    depth = max([len(s) for s in steps] + [1])
    out = pd.DataFrame({"site": table.site.astype(object), "path": table.path.astype(object)})
    for i in range(min(depth, max_length)):
        out[f"step{i + 1}"] = [s[i] if i < len(s) else None for s in steps]
    persons = table.persons.astype("Int64").reset_index(drop=True)
    target = pd.Series(table.target_persons.to_numpy(), dtype="Float64")
    out["persons"] = persons.array
    out["pct"] = (100 * persons.astype("Float64") / target).mask(target == 0).array
    out["suppressed"] = table.suppressed.astype(bool).to_numpy()
    rank = {s: i for i, s in enumerate(sites)}
    out["_site"] = out.site.map(rank).fillna(len(rank))
    out["_none"] = out.path == NO_EVENT
    out["_n"] = -out.persons.astype("Float64").fillna(-1)
    out = out.sort_values(["_site", "_none", "_n", "path"], kind="stable")
    return out.drop(columns=["_site", "_none", "_n"]).reset_index(drop=True)


@dataclass(frozen=True, eq=False)
class PathwaysResult(AnalysisResult):
    """Treatment paths per site and overall.

    Attributes
    ----------
    summary
        One row per site (``"overall"`` first) and path: ``path``, ``step1..stepN``,
        ``persons``, ``pct`` (of the target cohort) and ``suppressed``.
    target_persons
        Target cohort members at the sites that answered.
    """

    target_persons: int = 0

    def paths(self, site: str = "overall") -> pd.DataFrame:
        """The frequency table of one site (or ``"overall"``)."""
        return self.summary[self.summary.site == site].reset_index(drop=True)

    def plot(self, site: str = "overall") -> Any:
        """A Sankey diagram of the paths (suppressed paths and ``(no event)`` left out)."""
        from clinnova_explore.viz.pathways import sankey

        return sankey(self.paths(site))

    def _title(self) -> str:
        return f"Treatment pathways ({self.target_persons} target persons)"


def pathways(
    target: CohortRef,
    events: Mapping[str, EventRef],
    sites: Any,
    *,
    era_pad: int = 30,
    combination_window: int = 30,
    max_length: int = 5,
    allow_repeats: bool = False,
    min_cell_count: int | None = None,
    mode: Mode = "federated",
    transport: str = "arrow",
    runner: Runner | None = None,
    on_failure: OnFailure = "require_all_sites",
) -> PathwaysResult:
    """Treatment pathways of ``target`` members over a federation (rules: module docstring).

    Parameters
    ----------
    target
        The target cohort (definition or :class:`CohortTable`).
    events
        ``{name: event}``; an event is a cohort definition, a :class:`CohortTable`, a concept
        set of drugs, or drug concept id(s) (ingredients or classes, with descendants).
    sites
        A catalog or CDM sources.
    era_pad
        Days without an event that still continue its era.
    combination_window
        Days two events must overlap to form a combination step.
    max_length
        Steps kept per path.
    allow_repeats
        Keep a repeat of the previous step after a treatment-free gap.
    min_cell_count
        Suppress paths with fewer persons (at each site on top of its policy, and overall).
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
    PathwaysResult

    Examples
    --------
    >>> from clinnova_explore.cdm import concepts as c
    >>> result = pathways(  # doctest: +SKIP
    ...     ms_cohort, {"interferon": c.INTERFERON_BETA_1A, "natalizumab": c.NATALIZUMAB}, catalog
    ... )
    """
    from clinnova_explore.analysis.contract import run

    spec = PathwaysSpec(
        target=target,
        events={name: _event(name, ref) for name, ref in events.items()},
        era_pad=era_pad,
        combination_window=combination_window,
        max_length=max_length,
        allow_repeats=allow_repeats,
        min_cell_count=min_cell_count,
    )
    return run(
        PathwaysAnalysis(),
        spec,
        sites,
        mode=mode,
        transport=transport,
        runner=runner,
        on_failure=on_failure,
    )
