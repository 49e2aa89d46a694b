"""The typed cohort definition: what a cohort is, independent of any database.

A :class:`CohortDefinition` mirrors the parts of an OHDSI ATLAS/Circe cohort expression this
project supports: concept sets, entry events with required observation and a per-person limit,
additional criteria, inclusion rules (nested ALL/ANY/AT_LEAST/AT_MOST groups of occurrence and
demographic criteria), an exit strategy, censoring events, era collapse and a censor window.
It reads from and writes to YAML; :func:`clinnova_explore.cohort.compile_cohort` turns it into
lazy ibis expressions on any OMOP CDM.

Window days are relative to the index event's start (or end, with ``use_index_end``); ``None``
leaves that side open, as a Circe window without ``Days``: it is then bounded by the index
event's observation period (its start or end) unless the criterion ignores observation periods.
The building blocks live in :mod:`clinnova_explore.cohort.elements` and are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import Field, ValidationError, model_validator

from clinnova_explore.cohort.elements import (
    CensorWindow,
    CollapseSettings,
    ConceptItem,
    ConceptSet,
    CorrelatedCriterion,
    CriteriaGroup,
    DateRange,
    DemographicCriterion,
    Domain,
    DrugExposureEndExit,
    EntryEvents,
    EventCriterion,
    Exit,
    FixedOffsetExit,
    InclusionRule,
    Limit,
    NumericRange,
    ObservationEndExit,
    ObservationWindow,
    Occurrence,
    SourceCode,
    Window,
    _Model,
)

__all__ = [
    "CensorWindow",
    "CohortDefinition",
    "CohortDefinitionError",
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


class CohortDefinitionError(ValueError):
    """A cohort definition is invalid; the message says where and what to change."""


class CohortDefinition(_Model):
    """A cohort definition (the Circe subset this project supports), readable from YAML.

    Examples
    --------
    >>> defn = CohortDefinition.from_yaml('''
    ... name: MS diagnosis
    ... concept_sets:
    ...   ms: {include: [374919]}
    ... entry:
    ...   events: [{domain: condition, concept_set: ms, first: true}]
    ... ''')
    >>> defn.entry.events[0].domain, defn.concept_sets["ms"].include[0].descendants
    ('condition', True)
    >>> CohortDefinition.from_yaml(defn.to_yaml()) == defn
    True
    """

    name: str = Field(min_length=1)
    description: str | None = None
    concept_sets: dict[str, ConceptSet] = Field(default_factory=dict)
    entry: EntryEvents
    additional_criteria: CriteriaGroup | None = None
    qualified_limit: Limit = "first"
    inclusion_rules: tuple[InclusionRule, ...] = ()
    expression_limit: Limit = "first"
    exit: Exit = ObservationEndExit(type="observation_end")
    censoring: tuple[EventCriterion, ...] = ()
    collapse: CollapseSettings = CollapseSettings()
    censor_window: CensorWindow | None = None

    @model_validator(mode="after")
    def _known_concept_sets(self) -> CohortDefinition:
        known = set(self.concept_sets)
        for where, name in self._concept_set_references():
            if name not in known:
                listed = ", ".join(sorted(known)) or "none defined"
                raise ValueError(
                    f"{where} uses concept set {name!r}, which is not defined under "
                    f"`concept_sets` (defined: {listed})"
                )
        return self

    def _concept_set_references(self) -> Iterator[tuple[str, str]]:
        for i, crit in enumerate(self.entry.events):
            if crit.concept_set is not None:
                yield f"entry event {i + 1} ({crit.domain})", crit.concept_set
        if self.additional_criteria is not None:
            for crit in self.additional_criteria.event_criteria():
                if crit.concept_set is not None:
                    yield "additional_criteria", crit.concept_set
        for rule in self.inclusion_rules:
            for crit in rule.group.event_criteria():
                if crit.concept_set is not None:
                    yield f"inclusion rule {rule.name!r}", crit.concept_set
        if isinstance(self.exit, DrugExposureEndExit):
            yield "exit (drug_exposure_end)", self.exit.concept_set
        for i, crit in enumerate(self.censoring):
            if crit.concept_set is not None:
                yield f"censoring event {i + 1} ({crit.domain})", crit.concept_set

    # ------------------------------------------------------------------ serialization

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "cohort definition") -> Self:
        """Validate a plain mapping; errors name ``source`` and the offending field."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as err:
            raise CohortDefinitionError(_explain(err, source)) from None

    @classmethod
    def from_yaml(cls, source: str | Path) -> Self:
        """Read a definition from a YAML file path or a YAML string.

        Parameters
        ----------
        source
            A path to a ``.yaml``/``.yml`` file, or the YAML text itself.

        Raises
        ------
        CohortDefinitionError
            When the YAML is not a mapping or a field is invalid; the message names the file
            (if any) and the field path.
        """
        text, label = _read_source(source)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise CohortDefinitionError(f"{label}: not valid YAML: {err}") from None
        if not isinstance(data, Mapping):
            raise CohortDefinitionError(
                f"{label}: a cohort definition must be a YAML mapping with at least `name` "
                "and `entry`"
            )
        return cls.from_dict(data, source=label)

    @classmethod
    def from_circe(cls, source: str | Path | Mapping[str, Any]) -> CohortDefinition:
        """Translate an ATLAS/Circe cohort expression (path, JSON text or dict).

        Elements outside the supported subset are an error naming them.
        """
        from clinnova_explore.cohort.circe import from_circe

        return from_circe(source)

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-compatible dict, omitting fields left at their defaults."""
        return _tidy(self.model_dump(mode="json", exclude_defaults=True))

    def to_yaml(self) -> str:
        """The definition as YAML; :meth:`from_yaml` reads it back to an equal definition."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @property
    def definition_hash(self) -> str:
        """First 16 hex characters of the SHA-256 of the canonical JSON (defaults included).

        Equal definitions have equal hashes however they were written (key order, omitted
        defaults, shorthand concept ids).
        """
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def concept_set_names(self) -> list[str]:
        """Names of the concept sets used anywhere in the definition, in first-use order."""
        seen: dict[str, None] = {}
        for _, name in self._concept_set_references():
            seen.setdefault(name, None)
        return list(seen)


def _tidy(value: Any) -> Any:
    """Write whole-number floats (``18.0``) as integers so YAML reads as it was written."""
    if isinstance(value, dict):
        return {k: _tidy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _read_source(source: str | Path) -> tuple[str, str]:
    if isinstance(source, Path):
        return _read_file(source), str(source)
    if "\n" not in source and source.strip().endswith((".yaml", ".yml")):
        return _read_file(Path(source)), source
    return source, "cohort definition"


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CohortDefinitionError(f"cohort definition file {path} does not exist") from None


def _explain(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid cohort definition ({err.error_count()} problem(s))"]
    for problem in err.errors():
        loc = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        msg = problem["msg"].removeprefix("Value error, ")
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)
