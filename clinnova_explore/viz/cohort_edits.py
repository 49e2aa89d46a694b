"""Pure edits of a cohort definition, as the cohort dashboard's form makes them.

Each ``with_*`` function returns a new, validated :class:`CohortDefinition` with one change (a
definition is immutable); an invalid change raises
:class:`~clinnova_explore.cohort.CohortDefinitionError` naming the field. The readers
(:func:`criterion_keys`, :func:`age_range`, ...) give the form its values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pandas as pd

from clinnova_explore.cdm.vocabulary import concept_name
from clinnova_explore.cohort import CohortDefinition
from clinnova_explore.cohort.model import ConceptItem, ConceptSet, CorrelatedCriterion

__all__ = [
    "AGE_BOUNDS",
    "ENTRY_DOMAINS",
    "age_range",
    "concept_set_frame",
    "criterion_keys",
    "get_criterion",
    "with_age_range",
    "with_concept",
    "with_criterion",
    "with_entry_domain",
    "with_prior_days",
    "without_concept",
]

AGE_BOUNDS: tuple[int, int] = (0, 120)
"""The widest age range the dashboard offers (inclusive, years at index)."""

ENTRY_DOMAINS: tuple[str, ...] = (
    "condition",
    "drug",
    "procedure",
    "measurement",
    "observation",
    "visit",
)
_VALUE_FIELDS = ("value", "unit_concept_ids", "value_concept_ids")
_AGE_RULE = re.compile(r"^aged? \d+\s*[-–]\s*\d+", re.IGNORECASE)


# ---------------------------------------------------------------------- reading the definition
def criterion_keys(defn: CohortDefinition) -> list[str]:
    """Labels of the editable criteria: each occurrence criterion at the top of a rule."""
    keys = []
    for i, rule in enumerate(defn.inclusion_rules):
        crits = rule.group.criteria
        for j, crit in enumerate(crits):
            what = crit.event.concept_set or crit.event.domain
            suffix = f" [{j + 1}: {what}]" if len(crits) > 1 else f" [{what}]"
            keys.append(f"{i + 1}. {rule.name}{suffix}")
    return keys


def _locate(defn: CohortDefinition, key: str) -> tuple[int, int]:
    keys = criterion_keys(defn)
    if key not in keys:
        raise KeyError(f"no criterion {key!r} in {defn.name!r}; criteria: {keys}")
    flat = [
        (i, j) for i, r in enumerate(defn.inclusion_rules) for j in range(len(r.group.criteria))
    ]
    return flat[keys.index(key)]


def get_criterion(defn: CohortDefinition, key: str) -> CorrelatedCriterion:
    """The criterion labelled ``key`` by :func:`criterion_keys`."""
    i, j = _locate(defn, key)
    return defn.inclusion_rules[i].group.criteria[j]


def _age_rule(defn: CohortDefinition) -> int | None:
    for i, rule in enumerate(defn.inclusion_rules):
        g = rule.group
        if (
            g.type == "all"
            and not g.criteria
            and not g.groups
            and len(g.demographics) == 1
            and g.demographics[0].age is not None
            and g.demographics[0].sex is None
        ):
            return i
    return None


def age_range(defn: CohortDefinition) -> tuple[int, int]:
    """The (low, high) age at index of the definition's age rule; the widest when it has none."""
    i = _age_rule(defn)
    if i is None:
        return AGE_BOUNDS
    age = defn.inclusion_rules[i].group.demographics[0].age
    assert age is not None
    low = age.gte if age.gte is not None else (age.gt + 1 if age.gt is not None else None)
    high = age.lte if age.lte is not None else (age.lt - 1 if age.lt is not None else None)
    return (
        int(low) if low is not None else AGE_BOUNDS[0],
        int(high) if high is not None else AGE_BOUNDS[1],
    )


def concept_set_frame(cs: ConceptSet | None) -> pd.DataFrame:
    """A concept set's items with names: ``concept_id, concept_name, role, descendants``."""
    rows: list[dict[str, Any]] = []
    for role, items in (
        ("include", cs.include if cs else ()),
        ("exclude", cs.exclude if cs else ()),
    ):
        for item in items:
            try:
                name = concept_name(item.concept_id)
            except KeyError:
                name = "(not in the shipped vocabulary)"
            rows.append(
                {
                    "concept_id": item.concept_id,
                    "concept_name": name,
                    "role": role,
                    "descendants": item.descendants,
                }
            )
    for code in cs.source_codes if cs else ():
        rows.append(
            {
                "concept_id": None,
                "concept_name": f"{code.vocabulary}:{code.code}",
                "role": "source code",
                "descendants": False,
            }
        )
    frame = pd.DataFrame(rows, columns=["concept_id", "concept_name", "role", "descendants"])
    return frame.astype({"concept_id": "Int64", "descendants": bool})


# ---------------------------------------------------------------------- edits
def _rebuild(defn: CohortDefinition, data: dict[str, Any]) -> CohortDefinition:
    return CohortDefinition.from_dict(data, source=f"edited definition {defn.name!r}")


def with_prior_days(defn: CohortDefinition, days: int) -> CohortDefinition:
    """Require ``days`` of observation before the entry event."""
    data = defn.model_dump(mode="json")
    data["entry"]["observation"]["prior_days"] = days
    return _rebuild(defn, data)


def with_entry_domain(defn: CohortDefinition, domain: str) -> CohortDefinition:
    """Take the first entry event from another domain (value filters dropped if they no
    longer apply)."""
    data = defn.model_dump(mode="json")
    event = data["entry"]["events"][0]
    if event["domain"] == domain:
        return defn
    event["domain"] = domain
    if domain not in ("measurement", "observation"):
        for name in _VALUE_FIELDS:
            event[name] = None
    return _rebuild(defn, data)


def with_age_range(defn: CohortDefinition, low: int, high: int) -> CohortDefinition:
    """Edit the age-at-index rule (or append one) to ``low <= age <= high``.

    The rule is renamed ``"Aged low-high at index"`` when its name described its old range.
    Asking for the range the definition already has, or for the widest range when it has no
    age rule, returns it unchanged.
    """
    if low > high:
        raise ValueError(f"age range: the lower bound {low} is above the upper bound {high}")
    if (low, high) == age_range(defn):
        return defn
    data = defn.model_dump(mode="json")
    label = f"Aged {low}-{high} at index"
    i = _age_rule(defn)
    rule: dict[str, Any]
    if i is None:
        rule = {"name": label, "group": {"type": "all", "demographics": [{"age": {}}]}}
        data["inclusion_rules"].append(rule)
    else:
        rule = data["inclusion_rules"][i]
        if _AGE_RULE.match(rule["name"]):
            rule["name"] = label
    rule["group"]["demographics"][0]["age"] = {"gte": low, "lte": high}
    return _rebuild(defn, data)


def with_criterion(
    defn: CohortDefinition,
    key: str,
    *,
    start: int | None,
    end: int | None,
    occurrence_type: str,
    count: int,
) -> CohortDefinition:
    """Set one criterion's start window (days from index; ``None`` unbounded) and count."""
    i, j = _locate(defn, key)
    data = defn.model_dump(mode="json")
    crit = data["inclusion_rules"][i]["group"]["criteria"][j]
    crit["start_window"]["start"] = start
    crit["start_window"]["end"] = end
    crit["occurrence"]["type"] = occurrence_type
    crit["occurrence"]["count"] = count
    return _rebuild(defn, data)


def _set_items(defn: CohortDefinition, name: str, items: Iterable[ConceptItem]) -> CohortDefinition:
    if name not in defn.concept_sets:
        raise KeyError(f"no concept set {name!r}; sets: {', '.join(defn.concept_sets)}")
    data = defn.model_dump(mode="json")
    data["concept_sets"][name]["include"] = [item.model_dump(mode="json") for item in items]
    return _rebuild(defn, data)


def with_concept(defn: CohortDefinition, name: str, item: ConceptItem) -> CohortDefinition:
    """Include ``item`` in concept set ``name`` (replacing an item for the same concept)."""
    current = [i for i in defn.concept_sets[name].include if i.concept_id != item.concept_id]
    return _set_items(defn, name, [*current, item])


def without_concept(defn: CohortDefinition, name: str, concept_id: int) -> CohortDefinition:
    """Drop ``concept_id`` from the included concepts of concept set ``name``."""
    current = defn.concept_sets[name].include
    return _set_items(defn, name, [i for i in current if i.concept_id != concept_id])
