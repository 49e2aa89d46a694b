"""An independent pandas/Python reference of the cohort semantics, for checking the compiler.

Written from the semantics (OHDSI Circe's cohort generation, as documented in
``clinnova_explore.cohort``), not from the compiler's code: plain DataFrames read from the CDM
file, per-event Python loops, ``datetime`` arithmetic. Slow, simple, and only for small CDMs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from clinnova_explore.cohort.model import (
    CohortDefinition,
    ConceptSet,
    CorrelatedCriterion,
    CriteriaGroup,
    DemographicCriterion,
    DrugExposureEndExit,
    EventCriterion,
    FixedOffsetExit,
    NumericRange,
    Window,
)

DAY = dt.timedelta(days=1)

# domain -> table, record id, concept, source concept, start, end column
DOMAIN_TABLES = {
    "condition": ("condition_occurrence", "condition_occurrence_id", "condition_concept_id",
                  "condition_source_concept_id", "condition_start_date", "condition_end_date"),
    "drug": ("drug_exposure", "drug_exposure_id", "drug_concept_id", "drug_source_concept_id",
             "drug_exposure_start_date", "drug_exposure_end_date"),
    "procedure": ("procedure_occurrence", "procedure_occurrence_id", "procedure_concept_id",
                  "procedure_source_concept_id", "procedure_date", None),
    "measurement": ("measurement", "measurement_id", "measurement_concept_id",
                    "measurement_source_concept_id", "measurement_date", None),
    "observation": ("observation", "observation_id", "observation_concept_id",
                    "observation_source_concept_id", "observation_date", None),
    "visit": ("visit_occurrence", "visit_occurrence_id", "visit_concept_id",
              "visit_source_concept_id", "visit_start_date", "visit_end_date"),
    "death": ("death", "person_id", "cause_concept_id", "cause_source_concept_id",
              "death_date", None),
}  # fmt: skip


def _day(value: Any) -> dt.date | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).date()


def _int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _ok(value: Any, bounds: NumericRange | Any) -> bool:
    if value is None or pd.isna(value):
        return False
    checks = [
        (bounds.gte, lambda b: value >= b),
        (bounds.gt, lambda b: value > b),
        (bounds.lte, lambda b: value <= b),
        (bounds.lt, lambda b: value < b),
        (bounds.eq, lambda b: value == b),
    ]
    return all(test(b) for b, test in checks if b is not None)


@dataclass
class Event:
    person_id: int
    record_id: int
    start: dt.date
    end: dt.date
    concept_id: int | None
    visit_id: int | None
    criterion: int = 0
    event_id: int = 0
    op_start: dt.date | None = None
    op_end: dt.date | None = None


class Reference:
    """The reference evaluator over one CDM DuckDB file."""

    def __init__(self, path: Path) -> None:
        con = duckdb.connect(str(path), read_only=True)
        try:
            names = {
                r[0]
                for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
            }
            self.t = {n: con.execute(f"SELECT * FROM {n}").df() for n in names}
        finally:
            con.close()
        person = self.t["person"]
        self.yob = dict(zip(person.person_id, person.year_of_birth, strict=True))
        self.gender = dict(zip(person.person_id, person.gender_concept_id, strict=True))
        visits = self.t["visit_occurrence"]
        self.visit_concept = dict(
            zip(visits.visit_occurrence_id, visits.visit_concept_id, strict=True)
        )
        self.periods: dict[int, list[tuple[dt.date, dt.date]]] = {}
        for r in self.t["observation_period"].itertuples():
            span = (_day(r.observation_period_start_date), _day(r.observation_period_end_date))
            self.periods.setdefault(int(r.person_id), []).append(span)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ concept sets

    def _expand(self, items: Iterable[Any]) -> set[int]:
        concept = self.t["concept"]
        known = set(concept.concept_id)
        valid = set(concept.concept_id[concept.invalid_reason.isna()])
        anc = self.t["concept_ancestor"]
        out: set[int] = set()
        for item in items:
            ids = {item.concept_id} & known
            if item.descendants:
                below = anc.descendant_concept_id[anc.ancestor_concept_id == item.concept_id]
                ids |= set(below) & valid
            if item.mapped:
                rel = self.t["concept_relationship"]
                maps = rel[(rel.relationship_id == "Maps to") & rel.invalid_reason.isna()]
                ids |= set(maps.concept_id_1[maps.concept_id_2.isin(ids)])
            out |= ids
        return {int(i) for i in out}

    def concept_ids(self, cs: ConceptSet) -> tuple[set[int], set[int]]:
        """(standard ids, source ids) of a concept set."""
        cache = self.__dict__.setdefault("_sets", {})
        key = cs.model_dump_json()
        if key not in cache:
            cache[key] = self._concept_ids(cs)
        return cache[key]  # type: ignore[no-any-return]

    def _concept_ids(self, cs: ConceptSet) -> tuple[set[int], set[int]]:
        standard = self._expand(cs.include)
        source: set[int] = set()
        concept = self.t["concept"]
        rel = self.t["concept_relationship"]
        for code in cs.source_codes:
            hit = concept[
                (concept.vocabulary_id == code.vocabulary) & (concept.concept_code == code.code)
            ]
            source |= {int(i) for i in hit.concept_id}
        maps = rel[(rel.relationship_id == "Maps to") & rel.invalid_reason.isna()]
        standard |= {int(i) for i in maps.concept_id_2[maps.concept_id_1.isin(source)]}
        return standard - self._expand(cs.exclude), source

    # ------------------------------------------------------------------ events

    def events(self, defn: CohortDefinition, crit: EventCriterion) -> list[Event]:
        table, rid, concept, source, start, end = DOMAIN_TABLES[crit.domain]
        frame = self.t[table]
        out = []
        std: set[int] | None = None
        src: set[int] = set()
        if crit.concept_set is not None:
            std, src = self.concept_ids(defn.concept_sets[crit.concept_set])
        for r in frame.to_dict("records"):
            if std is not None and _int(r[concept]) not in std and _int(r[source]) not in src:
                continue
            s = _day(r[start])
            assert s is not None
            if crit.domain == "drug":
                e = _day(r[end]) or (
                    s + int(r["days_supply"]) * DAY
                    if _int(r["days_supply"]) is not None
                    else s + DAY
                )
            elif crit.domain == "condition":
                e = _day(r[end]) or s + DAY
            elif crit.domain == "visit":
                e = _day(r[end]) or s
            else:
                e = s + DAY
            visit = None if crit.domain == "death" else _int(r["visit_occurrence_id"])
            ev = Event(int(r["person_id"]), int(r[rid]), s, e, _int(r[concept]), visit)
            ev.row = r  # type: ignore[attr-defined]
            out.append(ev)
        if crit.first:
            best: dict[int, Event] = {}
            for ev in out:
                cur = best.get(ev.person_id)
                if cur is None or (ev.start, ev.record_id) < (cur.start, cur.record_id):
                    best[ev.person_id] = ev
            out = list(best.values())
        kept = []
        for ev in out:
            r = ev.row  # type: ignore[attr-defined]
            if crit.value is not None and not _ok(r.get("value_as_number"), crit.value):
                continue
            if (
                crit.unit_concept_ids is not None
                and _int(r.get("unit_concept_id")) not in crit.unit_concept_ids
            ):
                continue
            if (
                crit.value_concept_ids is not None
                and _int(r.get("value_as_concept_id")) not in crit.value_concept_ids
            ):
                continue
            if crit.start_date is not None and not _ok(ev.start, crit.start_date):
                continue
            if crit.end_date is not None and not _ok(ev.end, crit.end_date):
                continue
            if crit.age is not None and not _ok(ev.start.year - self.yob[ev.person_id], crit.age):
                continue
            if crit.sex is not None and self.gender[ev.person_id] not in crit.sex:
                continue
            if crit.visit_concept_ids is not None:
                vc = (
                    ev.concept_id if crit.domain == "visit" else self.visit_concept.get(ev.visit_id)
                )
                if vc not in crit.visit_concept_ids:
                    continue
            kept.append(ev)
        return kept

    # ------------------------------------------------------------------ criteria

    def _in_window(self, idx: Event, ev: Event, w: Window, check_op: bool) -> bool:
        anchor = idx.end if w.use_index_end else idx.start
        when = ev.end if w.use_event_end else ev.start
        lo = anchor + w.start * DAY if w.start is not None else (idx.op_start if check_op else None)
        hi = anchor + w.end * DAY if w.end is not None else (idx.op_end if check_op else None)
        return (lo is None or when >= lo) and (hi is None or when <= hi)

    def _correlated(self, defn: CohortDefinition, idx: Event, cc: CorrelatedCriterion) -> bool:
        check_op = not cc.ignore_observation_period
        hits = []
        for ev in self._events_of(defn, cc.event).get(idx.person_id, []):
            if check_op and not (idx.op_start <= ev.start <= idx.op_end):  # type: ignore[operator]
                continue
            if not self._in_window(idx, ev, cc.start_window, check_op):
                continue
            if cc.end_window is not None and not self._in_window(idx, ev, cc.end_window, check_op):
                continue
            if cc.restrict_visit and (ev.visit_id is None or ev.visit_id != idx.visit_id):
                continue
            hits.append(ev)
        occ = cc.occurrence
        if occ.distinct == "concept":
            n = len({h.concept_id for h in hits if h.concept_id is not None})
        elif occ.distinct == "start_date":
            n = len({h.start for h in hits})
        elif occ.distinct == "visit":
            n = len({h.visit_id for h in hits if h.visit_id is not None})
        else:
            n = len(hits)
        return {"exactly": n == occ.count, "at_most": n <= occ.count, "at_least": n >= occ.count}[
            occ.type
        ]

    def _demographic(self, idx: Event, dc: DemographicCriterion) -> bool:
        if dc.age is not None and not _ok(idx.start.year - self.yob[idx.person_id], dc.age):
            return False
        return dc.sex is None or self.gender[idx.person_id] in dc.sex

    def group(self, defn: CohortDefinition, idx: Event, g: CriteriaGroup) -> bool:
        results = [self._correlated(defn, idx, cc) for cc in g.criteria]
        results += [self._demographic(idx, dc) for dc in g.demographics]
        results += [self.group(defn, idx, sub) for sub in g.groups]
        if not results:
            return True
        n = sum(results)
        if g.type == "all":
            return n == len(results)
        if g.type == "any":
            return n > 0
        if g.type == "at_least":
            return n >= g.count  # type: ignore[operator]
        return n <= g.count  # type: ignore[operator]

    def _events_of(self, defn: CohortDefinition, crit: EventCriterion) -> dict[int, list[Event]]:
        # the criterion names its concept set; the set's content is part of the key, so two
        # definitions using one set name for different concepts do not share cached events
        concept_set = defn.concept_sets.get(crit.concept_set) if crit.concept_set else None
        key = crit.model_dump_json() + (concept_set.model_dump_json() if concept_set else "")
        cache = self.__dict__.setdefault("_cache", {})
        if key not in cache:
            by_person: dict[int, list[Event]] = {}
            for ev in self.events(defn, crit):
                by_person.setdefault(ev.person_id, []).append(ev)
            cache[key] = by_person
        return cache[key]

    # ------------------------------------------------------------------ the cohort

    @staticmethod
    def _limit(events: list[Event], kind: str) -> list[Event]:
        if kind == "all":
            return events
        best: dict[int, Event] = {}
        for ev in events:
            cur = best.get(ev.person_id)
            if kind == "first":
                better = cur is None or (ev.start, ev.event_id) < (cur.start, cur.event_id)
            else:
                better = cur is None or (ev.start, -ev.event_id) > (cur.start, -cur.event_id)
            if better:
                best[ev.person_id] = ev
        return list(best.values())

    def entry(self, defn: CohortDefinition) -> list[Event]:
        found: list[Event] = []
        for i, crit in enumerate(defn.entry.events):
            for ev in (e for evs in self._events_of(defn, crit).values() for e in evs):
                for op_start, op_end in self.periods.get(ev.person_id, []):
                    if not (op_start <= ev.start <= op_end):
                        continue
                    if (ev.start - op_start).days < defn.entry.observation.prior_days:
                        continue
                    if (op_end - ev.start).days < defn.entry.observation.post_days:
                        continue
                    found.append(Event(ev.person_id, ev.record_id, ev.start, ev.end, ev.concept_id,
                                       ev.visit_id, i, 0, op_start, op_end))  # fmt: skip
        by_person: dict[int, list[Event]] = {}
        for ev in found:
            by_person.setdefault(ev.person_id, []).append(ev)
        out = []
        last = defn.entry.limit == "last"
        for evs in by_person.values():
            evs.sort(
                key=lambda e: (
                    -e.start.toordinal() if last else e.start.toordinal(),
                    e.record_id,
                    e.criterion,
                )
            )
            for k, ev in enumerate(evs, start=1):
                ev.event_id = k
            out.extend(evs if defn.entry.limit == "all" else evs[:1])
        return out

    def stages(self, defn: CohortDefinition) -> list[list[Event]]:
        """Qualified events, then the events left after each inclusion rule."""
        events = self.entry(defn)
        if defn.additional_criteria is not None:
            events = [e for e in events if self.group(defn, e, defn.additional_criteria)]
            events = self._limit(events, defn.qualified_limit)
        stages = [events]
        for rule in defn.inclusion_rules:
            stages.append([e for e in stages[-1] if self.group(defn, e, rule.group)])
        return stages

    def attrition(self, defn: CohortDefinition) -> list[tuple[int, int]]:
        return [(len({e.person_id for e in s}), len(s)) for s in self.stages(defn)]

    def _drug_eras(
        self, defn: CohortDefinition, exit_: DrugExposureEndExit, person: int
    ) -> list[tuple[dt.date, dt.date]]:
        std, src = self.concept_ids(defn.concept_sets[exit_.concept_set])
        spans = []
        if "_drugs" not in self.__dict__:
            by_person: dict[int, list[dict[str, Any]]] = {}
            for r in self.t["drug_exposure"].to_dict("records"):
                by_person.setdefault(int(r["person_id"]), []).append(r)
            self.__dict__["_drugs"] = by_person
        for r in self.__dict__["_drugs"].get(person, []):
            if (
                _int(r["drug_concept_id"]) not in std
                and _int(r["drug_source_concept_id"]) not in std | src
            ):
                continue
            s = _day(r["drug_exposure_start_date"])
            assert s is not None
            if exit_.days_supply_override is not None:
                e = s + exit_.days_supply_override * DAY
            else:
                supply = _int(r["days_supply"])
                e = _day(r["drug_exposure_end_date"]) or (
                    s + supply * DAY if supply is not None else s + DAY
                )
            spans.append((s, e + (exit_.gap_days + exit_.offset_days) * DAY))
        spans.sort()
        eras: list[list[dt.date]] = []
        for s, padded in spans:
            if eras and s <= eras[-1][1]:
                eras[-1][1] = max(eras[-1][1], padded)
            else:
                eras.append([s, padded])
        shift = -exit_.gap_days * DAY  # padded by gap + offset: the end keeps the offset
        return [(s, padded + shift) for s, padded in eras]

    def rows(self, defn: CohortDefinition) -> pd.DataFrame:
        """The cohort rows (subject_id, cohort_start_date, cohort_end_date), sorted."""
        included = self._limit(self.stages(defn)[-1], defn.expression_limit)
        ends: list[tuple[int, dt.date, dt.date]] = []
        for ev in included:
            candidates: list[dt.date] = []
            ex = defn.exit
            if isinstance(ex, FixedOffsetExit):
                anchor = ev.start if ex.anchor == "start" else ev.end
                candidates.append(min(anchor + ex.offset_days * DAY, ev.op_end))  # type: ignore[type-var]
            else:
                candidates.append(ev.op_end)  # type: ignore[arg-type]
                if isinstance(ex, DrugExposureEndExit):
                    candidates += [
                        e for s, e in self._drug_eras(defn, ex, ev.person_id) if s <= ev.start <= e
                    ]
            for crit in defn.censoring:
                candidates += [c.start for c in self._events_of(defn, crit).get(ev.person_id, [])
                               if ev.start <= c.start <= ev.op_end]  # type: ignore[operator]  # fmt: skip
            candidates = [c for c in candidates if c >= ev.start]
            if candidates:
                ends.append((ev.person_id, ev.start, min(candidates)))
        pad = defn.collapse.pad_days * DAY
        out = []
        for person in sorted({p for p, _, _ in ends}):
            spans = sorted((s, e) for p, s, e in ends if p == person)
            merged: list[list[dt.date]] = []
            for s, e in spans:
                if merged and s <= merged[-1][1] + pad:
                    merged[-1][1] = max(merged[-1][1], e)
                else:
                    merged.append([s, e])
            out += [(person, s, e) for s, e in merged]
        cw = defn.censor_window
        if cw is not None:
            clipped = []
            for p, s, e in out:
                s2 = max(s, cw.start) if cw.start else s
                e2 = min(e, cw.end) if cw.end else e
                if s2 <= e2:
                    clipped.append((p, s2, e2))
            out = clipped
        frame = pd.DataFrame(out, columns=["subject_id", "cohort_start_date", "cohort_end_date"])
        return frame.sort_values(["subject_id", "cohort_start_date"]).reset_index(drop=True)


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Cohort rows with plain int/date values, sorted, for comparing engines."""
    out = pd.DataFrame(
        {
            "subject_id": frame["subject_id"].astype("int64"),
            "cohort_start_date": [_day(v) for v in frame["cohort_start_date"]],
            "cohort_end_date": [_day(v) for v in frame["cohort_end_date"]],
        }
    )
    return out.sort_values(["subject_id", "cohort_start_date"]).reset_index(drop=True)
