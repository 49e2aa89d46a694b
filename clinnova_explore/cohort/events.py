"""Events of one CDM domain selected by an :class:`EventCriterion`, as a lazy ibis table.

Every domain is read into the same shape (Circe's criteria query columns)::

    person_id, record_id, start_date, end_date, concept_id, visit_occurrence_id

with Circe's end dates: a condition's end date or start + 1 day; a drug exposure's end date,
else start + days supply, else start + 1 day; a visit's end date; measurements, observations,
procedures and deaths end the day after they start. ``first`` keeps the earliest record per
person (by start date, then record id) among the concept set's records, before any other
attribute filter, as Circe does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

from clinnova_explore.cdm.source import CdmSource
from clinnova_explore.cohort.conceptset import ResolvedConceptSet, resolve_concept_set
from clinnova_explore.cohort.model import CohortDefinition, DateRange, EventCriterion, NumericRange

__all__ = ["DOMAINS", "DomainSpec", "EventSource", "add_days", "in_range"]

EVENT_COLUMNS = (
    "person_id",
    "record_id",
    "start_date",
    "end_date",
    "concept_id",
    "visit_occurrence_id",
)


@dataclass(frozen=True)
class DomainSpec:
    """Where a domain's events live in the CDM."""

    table: str
    record_id: str
    concept: str
    source_concept: str
    start: str
    end: str | None
    has_visit: bool = True


DOMAINS: dict[str, DomainSpec] = {
    "condition": DomainSpec(
        "condition_occurrence",
        "condition_occurrence_id",
        "condition_concept_id",
        "condition_source_concept_id",
        "condition_start_date",
        "condition_end_date",
    ),
    "drug": DomainSpec(
        "drug_exposure",
        "drug_exposure_id",
        "drug_concept_id",
        "drug_source_concept_id",
        "drug_exposure_start_date",
        "drug_exposure_end_date",
    ),
    "procedure": DomainSpec(
        "procedure_occurrence",
        "procedure_occurrence_id",
        "procedure_concept_id",
        "procedure_source_concept_id",
        "procedure_date",
        None,
    ),
    "measurement": DomainSpec(
        "measurement",
        "measurement_id",
        "measurement_concept_id",
        "measurement_source_concept_id",
        "measurement_date",
        None,
    ),
    "observation": DomainSpec(
        "observation",
        "observation_id",
        "observation_concept_id",
        "observation_source_concept_id",
        "observation_date",
        None,
    ),
    "visit": DomainSpec(
        "visit_occurrence",
        "visit_occurrence_id",
        "visit_concept_id",
        "visit_source_concept_id",
        "visit_start_date",
        "visit_end_date",
    ),
    "death": DomainSpec(
        "death",
        "person_id",
        "cause_concept_id",
        "cause_source_concept_id",
        "death_date",
        None,
        has_visit=False,
    ),
}


def add_days(date: ir.DateValue, days: int | ir.IntegerValue) -> ir.DateValue:
    """``date`` plus ``days`` days, typed DATE on every backend (not TIMESTAMP)."""
    if isinstance(days, int):
        if days == 0:
            return date
        shifted = date + ibis.interval(days=days)
    else:
        shifted = date + days.as_interval("D")
    return shifted.cast("timestamp").cast("date")


def in_range(value: ir.Value, bounds: NumericRange | DateRange) -> ir.BooleanValue:
    """Whether ``value`` satisfies every bound of a numeric or date range."""
    conds: list[ir.BooleanValue] = []
    if bounds.gte is not None:
        conds.append(value >= bounds.gte)
    if bounds.gt is not None:
        conds.append(value > bounds.gt)
    if bounds.lte is not None:
        conds.append(value <= bounds.lte)
    if bounds.lt is not None:
        conds.append(value < bounds.lt)
    if bounds.eq is not None:
        conds.append(value == bounds.eq)
    result = conds[0]
    for cond in conds[1:]:
        result = result & cond
    return result


def _end_date(t: ir.Table, spec: DomainSpec, domain: str) -> ir.DateValue:
    start = t[spec.start].cast("date")
    if domain == "drug":
        return ibis.coalesce(
            t[spec.end].cast("date"),
            add_days(start, t.days_supply.cast("int32")),
            add_days(start, 1),
        )
    if domain == "condition":
        return ibis.coalesce(t[spec.end].cast("date"), add_days(start, 1))
    if domain == "visit":
        return ibis.coalesce(t[spec.end].cast("date"), start)
    return add_days(start, 1)


# stand-ins for NULL inside first(), which ibis makes skip NULLs; no OMOP id or value takes these
_NULL_INT = -(2**63) + 1
_NULL_FLOAT = -1.7e308


def _first_per_person(t: ir.Table, backend: str) -> ir.Table:
    """Each person's earliest record of ``t`` (by start date, then record id).

    On DuckDB one aggregate: every column of the record is an ordered ``first()``, and a column
    nothing downstream reads is dropped by the database, so a query that needs only the first
    date costs no more than a ``min()``. Elsewhere (PostgreSQL has no ``first()``) a grouped
    minimum finds the first day and a row number breaks ties among that day's records.
    """
    order = [t.start_date, t.record_id]
    if backend != "duckdb":
        firsts = t.group_by("person_id").aggregate(first_date=t.start_date.min())
        day = t.semi_join(
            firsts, [t.person_id == firsts.person_id, t.start_date == firsts.first_date]
        )
        rank = ibis.row_number().over(group_by=day.person_id, order_by=day.record_id)
        return day.filter(rank == 0)
    values: dict[str, ir.Value] = {"start_date": t.start_date.min()}
    for name, dtype in t.schema().items():
        if name in ("person_id", "start_date", "_use"):
            continue
        column = t[name]
        if dtype.is_integer():
            values[name] = column.fill_null(_NULL_INT).first(order_by=order).nullif(_NULL_INT)
        elif dtype.is_floating():
            values[name] = column.fill_null(_NULL_FLOAT).first(order_by=order).nullif(_NULL_FLOAT)
        else:  # dates of the event shape are never NULL
            values[name] = column.first(order_by=order)
    return t.group_by("person_id").aggregate(**values)


class EventSource:
    """Builds the event tables of one definition on one CDM, resolving each concept set once."""

    def __init__(self, definition: CohortDefinition, cdm: CdmSource, prefix: str) -> None:
        self.definition = definition
        self.cdm = cdm
        self.prefix = prefix
        self._codesets: dict[str, ResolvedConceptSet] = {}
        self._tables: dict[str, ir.Table] = {}
        self._uses = 0
        self.backend = str(getattr(cdm.connect(), "name", ""))

    def table(self, name: str) -> ir.Table:
        """The CDM table ``name`` (looked up once per compilation)."""
        if name not in self._tables:
            self._tables[name] = self.cdm.table(name)
        return self._tables[name]

    def codeset(self, name: str) -> ResolvedConceptSet:
        """The resolved concept set ``name`` (cached per compilation)."""
        if name not in self._codesets:
            position = list(self.definition.concept_sets).index(name)
            slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:30]
            self._codesets[name] = resolve_concept_set(
                self.definition.concept_sets[name],
                self,
                alias=f"{self.prefix}_cs{position}_{slug}".rstrip("_"),
            )
        return self._codesets[name]

    def project(self, name: str, **columns: ir.Value) -> ir.Table:
        """A projection of table ``name`` used once in the query (never shared as a CTE).

        ``columns`` maps output names to expressions on the table (or column names). Each call
        adds a distinct ``_use`` literal, so that two uses of a source whose tables are views
        (e.g. a DuckDB file normalised to CDM 5.4) do not become one materialised common table
        expression over the whole table: each use keeps its own filters pushed down to the scan.
        """
        self._uses += 1
        return self.table(name).select(**columns, _use=ibis.literal(self._uses, "int32"))

    def person(self) -> ir.Table:
        """``person_id``, ``year_of_birth``, ``gender_concept_id`` of every person."""
        t = self.table("person")
        return self.project(
            "person",
            person_id=t.person_id.cast("int64"),
            year_of_birth=t.year_of_birth.cast("int64"),
            gender_concept_id=t.gender_concept_id.cast("int64"),
        )

    def events(self, crit: EventCriterion) -> ir.Table:
        """Records of ``crit.domain`` matching the criterion, in the common event shape."""
        spec = DOMAINS[crit.domain]
        raw = self.table(spec.table)
        start = raw[spec.start].cast("date")
        columns: dict[str, ir.Value] = {
            "person_id": raw.person_id.cast("int64"),
            "record_id": raw[spec.record_id].cast("int64"),
            "start_date": start,
            "end_date": _end_date(raw, spec, crit.domain),
            "concept_id": raw[spec.concept].cast("int64"),
            "source_concept_id": raw[spec.source_concept].cast("int64"),
            "visit_occurrence_id": (
                raw.visit_occurrence_id.cast("int64")
                if spec.has_visit
                else ibis.null().cast("int64")
            ),
        }
        if crit.value is not None:
            columns["value_as_number"] = raw.value_as_number.cast("float64")
        if crit.unit_concept_ids is not None:
            columns["unit_concept_id"] = raw.unit_concept_id.cast("int64")
        if crit.value_concept_ids is not None:
            columns["value_as_concept_id"] = raw.value_as_concept_id.cast("int64")
        t = self.project(spec.table, **columns)
        if crit.concept_set is not None:
            codeset = self.codeset(crit.concept_set)
            t = t.filter(codeset.matches(t.concept_id, t.source_concept_id))
        if crit.first:
            t = _first_per_person(t, self.backend)
        conds: list[ir.BooleanValue] = []
        if crit.value is not None:
            conds.append(in_range(t.value_as_number, crit.value))
        if crit.unit_concept_ids is not None:
            conds.append(t.unit_concept_id.isin(list(crit.unit_concept_ids)))
        if crit.value_concept_ids is not None:
            conds.append(t.value_as_concept_id.isin(list(crit.value_concept_ids)))
        if crit.start_date is not None:
            conds.append(in_range(t.start_date, crit.start_date))
        if crit.end_date is not None:
            conds.append(in_range(t.end_date, crit.end_date))
        if crit.visit_concept_ids is not None and crit.domain == "visit":
            conds.append(t.concept_id.isin(list(crit.visit_concept_ids)))
        if conds:
            t = t.filter(*conds)
        if crit.age is not None or crit.sex is not None:
            person = self.person()
            preds: list[ir.BooleanValue] = [t.person_id == person.person_id]
            if crit.age is not None:
                preds.append(in_range(t.start_date.year() - person.year_of_birth, crit.age))
            if crit.sex is not None:
                preds.append(person.gender_concept_id.isin(list(crit.sex)))
            t = t.semi_join(person, preds)
        if crit.visit_concept_ids is not None and crit.domain != "visit":
            raw_visit = self.table("visit_occurrence")
            visit = self.project(
                "visit_occurrence",
                v_id=raw_visit.visit_occurrence_id.cast("int64"),
                v_person_id=raw_visit.person_id.cast("int64"),
                v_concept_id=raw_visit.visit_concept_id.cast("int64"),
            )
            t = t.semi_join(
                visit,
                [
                    t.visit_occurrence_id == visit.v_id,
                    t.person_id == visit.v_person_id,
                    visit.v_concept_id.isin(list(crit.visit_concept_ids)),
                ],
            )
        return t.select(*EVENT_COLUMNS)
