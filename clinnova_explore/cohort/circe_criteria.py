"""Translate the criteria of an ATLAS/Circe cohort expression (the building blocks).

:class:`CriteriaTranslator` turns Circe concept sets, domain criteria, correlated criteria,
occurrence counts, windows, demographic criteria and groups into the dictionaries
:class:`~clinnova_explore.cohort.CohortDefinition` reads; :class:`Node` walks the JSON and
collects every problem with its JSON path. :func:`clinnova_explore.cohort.circe.from_circe`
(the entry point, which also translates the entry, exit and era settings) documents the
supported subset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["CriteriaTranslator", "Node", "duration_days", "is_empty"]

_DOMAINS = {
    "ConditionOccurrence": "condition",
    "DrugExposure": "drug",
    "ProcedureOccurrence": "procedure",
    "Measurement": "measurement",
    "Observation": "observation",
    "VisitOccurrence": "visit",
    "Death": "death",
}
_OCCURRENCE = {0: "exactly", 1: "at_most", 2: "at_least"}
_COUNT_COLUMN = {"DOMAIN_CONCEPT": "concept", "START_DATE": "start_date"}
_OPS = ("lt", "lte", "eq", "gt", "gte")
_GROUP_TYPES = {"ALL": "all", "ANY": "any", "AT_LEAST": "at_least", "AT_MOST": "at_most"}


def is_empty(value: Any) -> bool:
    """Whether Circe treats a JSON value as absent (null, false, empty)."""
    return value is None or value is False or value == "" or value == [] or value == {}


class Node:
    """A JSON object being translated: remembers which keys were read and where it sits."""

    def __init__(self, data: Mapping[str, Any], path: str, problems: list[str]) -> None:
        self.data, self.path, self.problems = data, path, problems
        self.read: set[str] = set()

    def at(self, key: str | int) -> str:
        return f"{self.path}[{key}]" if isinstance(key, int) else f"{self.path}.{key}"

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        value = self.data.get(key)
        return default if value is None else value

    def fail(self, key: str | None, message: str) -> None:
        where = self.at(key) if key is not None else self.path
        self.problems.append(f"`{where}`: {message}")

    def node(self, key: str, *, required: bool = False) -> Node | None:
        value = self.get(key)
        if value is None:
            if required:
                self.fail(key, "is required")
            return None
        if not isinstance(value, Mapping):
            self.fail(key, f"must be a JSON object, not {type(value).__name__}")
            return None
        return Node(value, self.at(key), self.problems)

    def nodes(self, key: str) -> list[Node]:
        value = self.get(key, [])
        if not isinstance(value, list):
            self.fail(key, "must be a JSON array")
            return []
        out = []
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                out.append(Node(item, f"{self.at(key)}[{i}]", self.problems))
            else:
                self.fail(key, f"item {i} must be a JSON object")
        return out

    def integer(self, key: str, default: int | None = None) -> int | None:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            self.fail(key, f"must be a whole number, not {value!r}")
            return default
        return int(value)

    def done(self, *ignored: str) -> None:
        """Report every key that carries a value but was not translated."""
        for key, value in self.data.items():
            if key not in self.read and key not in ignored and not is_empty(value):
                self.fail(key, "is outside the supported Circe subset")


def duration_days(node: Node, legacy: str, unit: str, value: str) -> int | None:
    """A duration in days, given classically (``legacy``) or as a ``unit``/``value`` pair."""
    unit_name = node.get(unit)
    if unit_name is not None and str(unit_name).lower() != "day":
        node.fail(unit, f"time unit {unit_name!r} is not supported (days only)")
        return None
    old, new = node.integer(legacy), node.integer(value)
    if old is not None and new is not None and old != new:
        node.fail(value, f"conflicts with `{legacy}` ({new} vs {old} days)")
    return new if new is not None else old


class CriteriaTranslator:
    """Translates concept sets, criteria and groups; remembers the concept sets it has read."""

    def __init__(self) -> None:
        self.codesets: dict[int, str] = {}
        self.empty_sets: set[int] = set()
        self.concept_sets: dict[str, dict[str, Any]] = {}

    # ---------------------------------------------------------------- concept sets

    def concept_set(self, cs: Node) -> None:
        cs_id = cs.integer("id")
        if cs_id is None:
            cs.fail("id", "is required")
            return
        if cs_id in self.codesets:
            cs.fail("id", f"concept set id {cs_id} is defined twice")
            return
        label = str(cs.get("name") or "").strip() or f"concept set {cs_id}"
        if label in self.codesets.values():
            label = f"{label} ({cs_id})"
        include: list[dict[str, Any]] = []
        exclude: list[dict[str, Any]] = []
        expression = cs.node("expression", required=True)
        for item in expression.nodes("items") if expression is not None else []:
            concept = item.node("concept", required=True)
            concept_id = concept.integer("CONCEPT_ID") if concept is not None else None
            if concept is not None and concept_id is None:
                concept.fail("CONCEPT_ID", "is required")
            entry = {
                "concept_id": concept_id,
                "descendants": bool(item.get("includeDescendants", False)),
                "mapped": bool(item.get("includeMapped", False)),
            }
            (exclude if item.get("isExcluded", False) else include).append(entry)
            item.done()
        if expression is not None:
            expression.done()
        cs.done()
        self.codesets[cs_id] = label
        if include:
            self.concept_sets[label] = {"include": include, "exclude": exclude}
        else:
            self.empty_sets.add(cs_id)

    def codeset(self, node: Node, key: str) -> str | None:
        cs_id = node.integer(key)
        if cs_id is None:
            return None
        if cs_id not in self.codesets:
            node.fail(key, f"refers to concept set {cs_id}, which `ConceptSets` does not define")
        elif cs_id in self.empty_sets:
            node.fail(key, f"refers to concept set {cs_id}, which includes no concept")
        return self.codesets.get(cs_id)

    # ---------------------------------------------------------------- criteria

    def criterion(self, wrapper: Node) -> dict[str, Any]:
        kinds = [k for k, v in wrapper.data.items() if v is not None]
        if len(kinds) != 1:
            wrapper.fail(None, f"a criterion names exactly one criteria type, found {kinds}")
            return {"domain": "condition"}
        kind = kinds[0]
        if kind not in _DOMAINS:
            wrapper.fail(
                kind,
                f"criteria type {kind!r} is not supported (supported: {', '.join(_DOMAINS)})",
            )
            wrapper.read.add(kind)
            return {"domain": "condition"}
        node = wrapper.node(kind) or Node({}, wrapper.at(kind), wrapper.problems)
        domain = _DOMAINS[kind]
        out: dict[str, Any] = {"domain": domain, "concept_set": self.codeset(node, "CodesetId")}
        if domain != "death":
            out["first"] = bool(node.get("First", False))
        out["start_date"] = self.range(node, "OccurrenceStartDate")
        out["end_date"] = self.range(node, "OccurrenceEndDate")
        out["age"] = self.range(node, "Age")
        out["sex"] = self.concepts(node, "Gender")
        if domain == "visit":
            if not is_empty(node.get("VisitType")):
                node.fail("VisitType", "a visit's type concept filter is not supported")
        else:
            out["visit_concept_ids"] = self.concepts(node, "VisitType")
        if domain in ("measurement", "observation"):
            out["value"] = self.range(node, "ValueAsNumber")
            out["unit_concept_ids"] = self.concepts(node, "Unit")
            out["value_concept_ids"] = self.concepts(node, "ValueAsConcept")
        nested = node.node("CorrelatedCriteria")
        if nested is not None and not self.group_is_empty(nested):
            node.fail("CorrelatedCriteria", "criteria nested on a criterion are not supported")
        node.done()
        wrapper.done()
        return {k: v for k, v in out.items() if v is not None}

    def concepts(self, node: Node, key: str) -> list[int] | None:
        ids = []
        for i, concept in enumerate(node.nodes(key)):
            concept_id = concept.integer("CONCEPT_ID")
            if concept_id is None:
                node.fail(key, f"item {i} has no CONCEPT_ID")
            else:
                ids.append(concept_id)
        return ids or None

    def range(self, node: Node, key: str) -> dict[str, Any] | None:
        rng = node.node(key)
        if rng is None:
            return None
        op, value, extent = rng.get("Op"), rng.get("Value"), rng.get("Extent")
        rng.done()
        if value is None:
            rng.fail("Value", "is required")
            return None
        if op in _OPS:
            return {op: value}
        if op == "bt" and extent is not None:
            return {"gte": value, "lte": extent}
        why = "`bt` needs `Extent`" if op == "bt" else "use lt, lte, eq, gt, gte or bt"
        rng.fail("Op", f"operator {op!r} is not supported ({why})")
        return None

    # ---------------------------------------------------------------- groups

    def group_is_empty(self, group: Node) -> bool:
        return all(
            is_empty(group.data.get(k))
            for k in ("CriteriaList", "DemographicCriteriaList", "Groups")
        )

    def group(self, group: Node) -> dict[str, Any]:
        raw_type = str(group.get("Type", "ALL")).upper()
        out: dict[str, Any] = {"type": _GROUP_TYPES.get(raw_type, "all")}
        if raw_type not in _GROUP_TYPES:
            group.fail("Type", f"group type {raw_type!r} is not one of {', '.join(_GROUP_TYPES)}")
        count = group.integer("Count")
        if out["type"] in ("at_least", "at_most"):
            if count is None:
                group.fail("Count", f"is required for a {raw_type} group")
            out["count"] = count
        out["criteria"] = [self.correlated(c) for c in group.nodes("CriteriaList")]
        out["demographics"] = [self.demographic(d) for d in group.nodes("DemographicCriteriaList")]
        out["groups"] = [self.group(g) for g in group.nodes("Groups")]
        group.done()
        return out

    def correlated(self, cc: Node) -> dict[str, Any]:
        crit = cc.node("Criteria", required=True)
        ignore_op = bool(cc.get("IgnoreObservationPeriod", False))
        out: dict[str, Any] = {
            "event": self.criterion(crit) if crit is not None else {"domain": "condition"},
            "restrict_visit": bool(cc.get("RestrictVisit", False)),
            "ignore_observation_period": ignore_op,
        }
        start = cc.node("StartWindow", required=True)
        if start is not None:
            out["start_window"] = self.window(start, ignore_op, event_end_default=False)
        end = cc.node("EndWindow")
        if end is not None:
            out["end_window"] = self.window(end, ignore_op, event_end_default=True)
        occ = cc.node("Occurrence", required=True)
        if occ is not None:
            out["occurrence"] = self.occurrence(occ)
        cc.done()
        return out

    def occurrence(self, occ: Node) -> dict[str, Any]:
        kind = occ.integer("Type", 0)
        if kind not in _OCCURRENCE:
            occ.fail(
                "Type", f"occurrence type {kind} is not 0 (exactly), 1 (at most) or 2 (at least)"
            )
        out: dict[str, Any] = {"type": _OCCURRENCE.get(kind or 0, "exactly")}
        out["count"] = occ.integer("Count", 0)
        if occ.get("IsDistinct", False):
            column = str(occ.get("CountColumn", "DOMAIN_CONCEPT"))
            out["distinct"] = _COUNT_COLUMN.get(column)
            if column not in _COUNT_COLUMN:
                occ.fail("CountColumn", f"counting distinct {column!r} is not supported")
        else:
            occ.get("CountColumn")
        occ.done()
        return out

    def window(self, win: Node, ignore_op: bool, *, event_end_default: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "use_index_end": bool(win.get("UseIndexEnd", False)),
            "use_event_end": bool(win.get("UseEventEnd", event_end_default)),
        }
        # a side without days is bounded by the observation period (coefficient -1: its start,
        # +1: its end) unless IgnoreObservationPeriod; only the natural side is unbounded here.
        for side, natural in (("Start", -1), ("End", 1)):
            point = win.node(side, required=True)
            if point is None:
                continue
            days = duration_days(point, "Days", "TimeUnit", "TimeUnitValue")
            coeff = point.integer("Coeff", 0)
            point.done()
            if days is not None:
                out[side.lower()] = (coeff or 0) * days
            elif not ignore_op and coeff != natural:
                point.fail(
                    "Coeff",
                    f"a window {side.lower()} without days and coefficient {coeff} means the "
                    "observation period's other end, which is not supported; give `Days`",
                )
        start, end = out.get("start"), out.get("end")
        if start is not None and end is not None and start > end:
            win.fail(None, f"window starts after it ends ({start} > {end} days)")
        win.done()
        return out

    def demographic(self, demo: Node) -> dict[str, Any]:
        out = {"age": self.range(demo, "Age"), "sex": self.concepts(demo, "Gender")}
        if is_empty(demo.data.get("Age")) and is_empty(demo.data.get("Gender")):
            demo.fail(None, "a demographic criterion without Age or Gender is not supported")
        demo.done()
        return {k: v for k, v in out.items() if v is not None}
