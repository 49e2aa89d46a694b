"""Read an OHDSI ATLAS/Circe cohort expression (JSON) into a :class:`CohortDefinition`.

Supported: concept sets (``isExcluded``, ``includeDescendants``, ``includeMapped``); primary
criteria with observation window and limit; additional criteria; qualified and expression
limits; inclusion rules; ``DateOffset`` and ``CustomEra`` end strategies; censoring criteria;
era collapse; censor window. Criteria: ``ConditionOccurrence``, ``DrugExposure``,
``ProcedureOccurrence``, ``Measurement`` (``ValueAsNumber``, ``Unit``, ``ValueAsConcept``),
``Observation`` (same), ``VisitOccurrence`` and ``Death``, each with ``CodesetId``, ``First``,
``OccurrenceStartDate``/``OccurrenceEndDate``, ``Age``, ``Gender`` and ``VisitType`` (the visit
concept of the event's visit). Groups: ``ALL``/``ANY``/``AT_LEAST``/``AT_MOST`` with correlated
criteria (``Occurrence`` exactly/at most/at least, ``IsDistinct``, ``StartWindow``/``EndWindow``
with ``UseIndexEnd``/``UseEventEnd``, ``RestrictVisit``, ``IgnoreObservationPeriod``),
demographic criteria (``Age``, ``Gender``) and nested groups. Durations are days, written either
the classic way (``Days``, ``Offset``, ``GapDays``, ``EraPad``) or with a ``day`` unit
(``TimeUnitValue``, ``OffsetUnitValue``, ...).

Anything else that carries a value is an error naming the element and its JSON path; fields
that are null, empty or false are accepted, as Circe treats them as absent. Circe's defaults
apply to absent fields (limits ``First``, exit at the end of the observation period, ...), and
the qualified limit acts only when the expression has additional criteria, as in Circe.

This module translates the expression's top level (entry, limits, inclusion rules, exit, eras);
the concept sets, criteria and groups are translated in
:mod:`~clinnova_explore.cohort.circe_criteria`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clinnova_explore.cohort.circe_criteria import CriteriaTranslator, Node, duration_days
from clinnova_explore.cohort.model import CohortDefinition, CohortDefinitionError

__all__ = ["CirceImportError", "from_circe"]

_META_KEYS = ("cdmVersionRange", "Title")


class CirceImportError(CohortDefinitionError):
    """A Circe expression uses something outside the supported subset (or is malformed)."""


def from_circe(
    source: str | Path | Mapping[str, Any], *, name: str | None = None
) -> CohortDefinition:
    """Translate an ATLAS/Circe cohort expression into a :class:`CohortDefinition`.

    Parameters
    ----------
    source
        A path to a ``.json`` file, the JSON text, or the parsed expression. An ATLAS/WebAPI
        cohort definition (``{"name": ..., "expression": {...}}``) is accepted too.
    name
        Name of the definition (default: the WebAPI ``name``, the expression ``Title``, the file
        name, or ``"Circe cohort"``).

    Raises
    ------
    CirceImportError
        Listing every element outside the supported subset with its JSON path, or why the
        JSON cannot be read.

    Examples
    --------
    >>> defn = from_circe({
    ...     "ConceptSets": [{"id": 0, "name": "GI bleed", "expression": {"items": [
    ...         {"concept": {"CONCEPT_ID": 192671}, "includeDescendants": True}]}}],
    ...     "PrimaryCriteria": {"CriteriaList": [{"ConditionOccurrence": {"CodesetId": 0}}],
    ...                         "ObservationWindow": {"PriorDays": 365, "PostDays": 0}},
    ... })
    >>> defn.entry.events[0].domain, defn.entry.observation.prior_days, defn.entry.limit
    ('condition', 365, 'first')
    """
    data, label, default_name = _load(source)
    description = None
    if "expression" in data and "PrimaryCriteria" not in data:
        default_name = str(data.get("name") or default_name)
        description = data.get("description") or None
        inner = data["expression"]
        data = _parse(inner, label) if isinstance(inner, str) else inner
        if not isinstance(data, Mapping):
            raise CirceImportError(f"{label}: `expression` must be a JSON object")
    problems: list[str] = []
    root = Node(data, "$", problems)
    title = root.get("Title")
    translator = _Translator(root)
    result = translator.expression()
    root.done(*_META_KEYS)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise CirceImportError(
            f"{label}: cannot import this Circe cohort ({len(problems)} problem(s)); remove or "
            f"change these elements, or write the cohort in YAML:\n{lines}"
        )
    result = {"name": name or title or default_name, "description": description, **result}
    try:
        return CohortDefinition.from_dict(result, source=label)
    except CohortDefinitionError as exc:
        raise CirceImportError(str(exc)) from None


def _load(source: str | Path | Mapping[str, Any]) -> tuple[Mapping[str, Any], str, str]:
    if isinstance(source, Mapping):
        return source, "Circe expression", "Circe cohort"
    if isinstance(source, str) and source.lstrip().startswith(("{", "[")):
        data = _parse(source, "Circe JSON")
        return data, "Circe JSON", "Circe cohort"
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CirceImportError(f"Circe cohort file {path} does not exist") from None
    return _parse(text, str(path)), str(path), path.stem


def _parse(text: str, label: str) -> Mapping[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CirceImportError(f"{label}: not valid JSON ({exc})") from None
    if not isinstance(data, Mapping):
        raise CirceImportError(f"{label}: a Circe cohort expression is a JSON object")
    return data


class _Translator(CriteriaTranslator):
    def __init__(self, root: Node) -> None:
        super().__init__()
        self.root = root

    def expression(self) -> dict[str, Any]:
        root = self.root
        for cs in root.nodes("ConceptSets"):
            self.concept_set(cs)
        primary = root.node("PrimaryCriteria", required=True)
        entry = self.primary(primary) if primary is not None else {}
        out: dict[str, Any] = {"entry": entry}
        additional = root.node("AdditionalCriteria")
        if additional is not None:
            out["additional_criteria"] = self.group(additional)
        qualified = self.limit(root.node("QualifiedLimit"))
        out["qualified_limit"] = qualified if additional is not None else "all"
        rules = []
        for i, rule in enumerate(root.nodes("InclusionRules")):
            group = rule.node("expression", required=True)
            rules.append(
                {
                    "name": str(rule.get("name") or f"Inclusion rule {i + 1}"),
                    "description": rule.get("description") or None,
                    "group": self.group(group) if group is not None else {},
                }
            )
            rule.done()
        out["inclusion_rules"] = rules
        out["expression_limit"] = self.limit(root.node("ExpressionLimit"))
        out["exit"] = self.exit(root.node("EndStrategy"))
        out["censoring"] = [self.criterion(c) for c in root.nodes("CensoringCriteria")]
        out["collapse"] = self.collapse(root.node("CollapseSettings"))
        out["censor_window"] = self.censor_window(root.node("CensorWindow"))
        out["concept_sets"] = self.concept_sets
        return out

    # ---------------------------------------------------------------- entry, exit, eras

    def primary(self, primary: Node) -> dict[str, Any]:
        events = [self.criterion(c) for c in primary.nodes("CriteriaList")]
        if not events:
            primary.fail("CriteriaList", "needs at least one criterion")
        window = primary.node("ObservationWindow")
        observation: dict[str, int | None] = {"prior_days": 0, "post_days": 0}
        if window is not None:
            observation = {
                "prior_days": window.integer("PriorDays", 0),
                "post_days": window.integer("PostDays", 0),
            }
            window.done()
        limit = self.limit(primary.node("PrimaryCriteriaLimit"))
        primary.done()
        return {"events": events, "observation": observation, "limit": limit}

    def limit(self, node: Node | None) -> str:
        if node is None:
            return "first"
        kind = str(node.get("Type", "First")).lower()
        node.done()
        if kind not in ("first", "last", "all"):
            node.fail("Type", f"limit {kind!r} is not First, Last or All")
            return "first"
        return kind

    def exit(self, strategy: Node | None) -> dict[str, Any]:
        if strategy is None:
            return {"type": "observation_end"}
        offset = strategy.node("DateOffset")
        era = strategy.node("CustomEra")
        strategy.done()
        if offset is not None and era is not None:
            strategy.fail(None, "give one end strategy, DateOffset or CustomEra, not both")
        if offset is not None:
            field = offset.get("DateField", "StartDate")
            if field not in ("StartDate", "EndDate"):
                offset.fail("DateField", f"{field!r} is not StartDate or EndDate")
            days = duration_days(offset, "Offset", "OffsetUnit", "OffsetUnitValue")
            offset.done()
            anchor = "end" if field == "EndDate" else "start"
            return {"type": "fixed_offset", "anchor": anchor, "offset_days": days or 0}
        if era is not None:
            concept_set = self.codeset(era, "DrugCodesetId")
            if concept_set is None and era.data.get("DrugCodesetId") is None:
                era.fail("DrugCodesetId", "is required for a CustomEra exit")
            out = {
                "type": "drug_exposure_end",
                "concept_set": concept_set,
                "gap_days": duration_days(era, "GapDays", "GapUnit", "GapUnitValue") or 0,
                "offset_days": duration_days(era, "Offset", "OffsetUnit", "OffsetUnitValue") or 0,
                "days_supply_override": era.integer("DaysSupplyOverride"),
            }
            era.done()
            return out
        return {"type": "observation_end"}

    def collapse(self, node: Node | None) -> dict[str, int]:
        if node is None:
            return {"pad_days": 0}
        kind = str(node.get("CollapseType", "ERA")).upper()
        if kind != "ERA":
            node.fail("CollapseType", f"collapse type {kind!r} is not supported (ERA only)")
        pad = duration_days(node, "EraPad", "EraPadUnit", "EraPadUnitValue")
        node.done()
        return {"pad_days": pad or 0}

    def censor_window(self, node: Node | None) -> dict[str, str | None] | None:
        if node is None:
            return None
        start, end = node.get("StartDate"), node.get("EndDate")
        node.done()
        if not start and not end:
            return None
        return {"start": start or None, "end": end or None}
