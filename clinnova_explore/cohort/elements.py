"""The building blocks of a cohort definition: concept sets, criteria, windows, exits.

Every block is a frozen pydantic model that forbids unknown fields, so a typo in a YAML file is
an error naming the field. :class:`clinnova_explore.cohort.model.CohortDefinition` assembles
them; the names are re-exported there.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CensorWindow",
    "CollapseSettings",
    "ConceptItem",
    "ConceptSet",
    "CorrelatedCriterion",
    "CriteriaGroup",
    "DateRange",
    "DemographicCriterion",
    "Domain",
    "DrugExposureEndExit",
    "EntryEvents",
    "EventCriterion",
    "Exit",
    "FixedOffsetExit",
    "InclusionRule",
    "Limit",
    "NumericRange",
    "ObservationEndExit",
    "ObservationWindow",
    "Occurrence",
    "SourceCode",
    "Window",
]

Domain = Literal["condition", "drug", "procedure", "measurement", "observation", "visit", "death"]
Limit = Literal["first", "last", "all"]
_VALUE_DOMAINS = ("measurement", "observation")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NumericRange(_Model):
    """Bounds on a number; every given bound must hold (``gte: 18, lte: 60``)."""

    gte: float | None = None
    lte: float | None = None
    gt: float | None = None
    lt: float | None = None
    eq: float | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> NumericRange:
        if all(v is None for v in (self.gte, self.lte, self.gt, self.lt, self.eq)):
            raise ValueError("a range needs at least one of gte, lte, gt, lt, eq")
        return self


class DateRange(_Model):
    """Bounds on a date (ISO ``YYYY-MM-DD``); every given bound must hold."""

    gte: date | None = None
    lte: date | None = None
    gt: date | None = None
    lt: date | None = None
    eq: date | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> DateRange:
        if all(v is None for v in (self.gte, self.lte, self.gt, self.lt, self.eq)):
            raise ValueError("a date range needs at least one of gte, lte, gt, lt, eq")
        return self


class ConceptItem(_Model):
    """One concept of a concept set.

    ``descendants`` adds every concept below it in ``concept_ancestor``; ``mapped`` also matches
    records whose source concept maps (``'Maps to'``) to it or to a descendant (Circe
    ``includeMapped``).
    """

    concept_id: int
    descendants: bool = True
    mapped: bool = False


class SourceCode(_Model):
    """A source code (e.g. ICD10 ``G35``), found in ``concept`` by vocabulary and code.

    It matches records whose source concept is this code, and records whose standard concept is
    a target of the code's ``'Maps to'`` relationship.
    """

    vocabulary: str
    code: str


def _item(value: Any) -> Any:
    return (
        {"concept_id": value} if isinstance(value, int) and not isinstance(value, bool) else value
    )


class ConceptSet(_Model):
    """Included concepts, minus excluded ones, plus source codes.

    A bare integer in ``include``/``exclude`` is short for ``{concept_id: N}``.
    """

    include: tuple[ConceptItem, ...] = ()
    exclude: tuple[ConceptItem, ...] = ()
    source_codes: tuple[SourceCode, ...] = ()

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _bare_ids(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [_item(v) for v in value]
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> ConceptSet:
        if not self.include and not self.source_codes:
            raise ValueError("a concept set needs at least one `include` concept or source code")
        return self


class EventCriterion(_Model):
    """Events of one CDM domain, optionally restricted to a concept set and attributes.

    ``first`` keeps only each person's earliest such event (ATLAS "first time in history"),
    chosen before the other attribute filters, as Circe does. ``age`` is the age at the event's
    start (year of event minus year of birth). ``value``, ``unit_concept_ids`` and
    ``value_concept_ids`` apply to measurements and observations. ``visit_concept_ids`` keeps
    events whose visit (``visit_occurrence_id``) has one of these visit concepts.
    """

    domain: Domain
    concept_set: str | None = None
    first: bool = False
    value: NumericRange | None = None
    unit_concept_ids: tuple[int, ...] | None = None
    value_concept_ids: tuple[int, ...] | None = None
    age: NumericRange | None = None
    sex: tuple[int, ...] | None = None
    visit_concept_ids: tuple[int, ...] | None = None
    start_date: DateRange | None = None
    end_date: DateRange | None = None

    @model_validator(mode="after")
    def _value_domain(self) -> EventCriterion:
        if self.domain not in _VALUE_DOMAINS:
            for name in ("value", "unit_concept_ids", "value_concept_ids"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"`{name}` applies to measurement or observation events, "
                        f"not domain {self.domain!r}"
                    )
        if self.domain == "death" and self.visit_concept_ids is not None:
            raise ValueError("`visit_concept_ids` does not apply to death events")
        return self


class ObservationWindow(_Model):
    """Days of continuous observation required before and after the entry event."""

    prior_days: int = Field(0, ge=0)
    post_days: int = Field(0, ge=0)


class EntryEvents(_Model):
    """Entry (primary) criteria: any of ``events`` is a candidate index event."""

    events: tuple[EventCriterion, ...] = Field(min_length=1)
    observation: ObservationWindow = ObservationWindow()
    limit: Limit = "first"


class Window(_Model):
    """Days relative to the index start (or end) within which an event's date must fall.

    ``use_event_end`` compares the event's end date instead of its start; bounds are inclusive.
    """

    start: int | None = None
    end: int | None = None
    use_index_end: bool = False
    use_event_end: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(f"window start ({self.start}) is after its end ({self.end})")
        return self


class Occurrence(_Model):
    """How many matching events a criterion needs: ``exactly``, ``at_most`` or ``at_least``.

    ``distinct`` counts distinct values instead of events: ``concept`` (the event's standard
    concept), ``start_date`` or ``visit`` (visit_occurrence_id). ``true`` means ``concept``.
    """

    type: Literal["exactly", "at_most", "at_least"] = "at_least"
    count: int = Field(1, ge=0)
    distinct: Literal["concept", "start_date", "visit"] | None = None

    @field_validator("distinct", mode="before")
    @classmethod
    def _bool_distinct(cls, value: Any) -> Any:
        if value is True:
            return "concept"
        if value is False:
            return None
        return value


class CorrelatedCriterion(_Model):
    """Events counted relative to the index event (Circe ``CorelatedCriteria``).

    Only events starting inside the index event's observation period count, unless
    ``ignore_observation_period``. ``end_window`` is a second window, usually on the event's end
    date: set ``use_event_end: true`` in it for that (a Circe end window without
    ``UseEventEnd`` means the event end, and the Circe importer writes it out explicitly).
    ``restrict_visit`` requires the event to share the index event's ``visit_occurrence_id``.
    """

    event: EventCriterion
    occurrence: Occurrence = Occurrence()
    start_window: Window = Window()
    end_window: Window | None = None
    restrict_visit: bool = False
    ignore_observation_period: bool = False


class DemographicCriterion(_Model):
    """Age at index (year of index minus year of birth) and/or sex (gender concept ids)."""

    age: NumericRange | None = None
    sex: tuple[int, ...] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> DemographicCriterion:
        if self.age is None and self.sex is None:
            raise ValueError("a demographic criterion needs `age` and/or `sex`")
        return self


class CriteriaGroup(_Model):
    """A boolean group of criteria: ``all``, ``any``, ``at_least`` or ``at_most`` ``count``."""

    type: Literal["all", "any", "at_least", "at_most"] = "all"
    count: int | None = Field(None, ge=0)
    criteria: tuple[CorrelatedCriterion, ...] = ()
    demographics: tuple[DemographicCriterion, ...] = ()
    groups: tuple[CriteriaGroup, ...] = ()

    @model_validator(mode="after")
    def _count(self) -> CriteriaGroup:
        if self.type in ("at_least", "at_most") and self.count is None:
            raise ValueError(f"a group of type {self.type!r} needs `count`")
        if self.type in ("all", "any") and self.count is not None:
            raise ValueError(f"`count` applies to at_least/at_most groups, not {self.type!r}")
        return self

    def is_empty(self) -> bool:
        """True when the group holds no criterion at all (it then accepts every event)."""
        return not (self.criteria or self.demographics or self.groups)

    def event_criteria(self) -> Iterator[EventCriterion]:
        """Every event criterion in this group and its nested groups."""
        for crit in self.criteria:
            yield crit.event
        for group in self.groups:
            yield from group.event_criteria()


class InclusionRule(_Model):
    """A named rule; the attrition table reports persons remaining after each, in order."""

    name: str = Field(min_length=1)
    description: str | None = None
    group: CriteriaGroup


class ObservationEndExit(_Model):
    """The cohort era ends at the end of the index event's observation period."""

    type: Literal["observation_end"]


class FixedOffsetExit(_Model):
    """The era ends ``offset_days`` after the index event's start or end date."""

    type: Literal["fixed_offset"]
    anchor: Literal["start", "end"] = "start"
    offset_days: int = 0


class DrugExposureEndExit(_Model):
    """The era ends at the end of continuous exposure to ``concept_set`` (Circe custom era).

    Exposures of the set less than ``gap_days`` apart are joined; ``offset_days`` is added to
    the era end; ``days_supply_override`` replaces each exposure's end by start + that many days.
    """

    type: Literal["drug_exposure_end"]
    concept_set: str
    gap_days: int = Field(0, ge=0)
    offset_days: int = 0
    days_supply_override: int | None = Field(None, ge=0)


Exit = Annotated[
    ObservationEndExit | FixedOffsetExit | DrugExposureEndExit, Field(discriminator="type")
]


class CollapseSettings(_Model):
    """Eras of a person closer than ``pad_days`` are merged into one."""

    pad_days: int = Field(0, ge=0)


class CensorWindow(_Model):
    """Cohort eras are clipped to these calendar dates (inclusive); ``None`` is unbounded."""

    start: date | None = None
    end: date | None = None
