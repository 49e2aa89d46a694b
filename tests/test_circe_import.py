"""Circe (ATLAS) JSON import: what each element becomes, and errors for what is unsupported."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clinnova_explore.cohort.circe import CirceImportError, from_circe
from clinnova_explore.cohort.model import CohortDefinition

DATA = Path(__file__).parent / "data" / "circe"
STORED = sorted(
    p
    for p in DATA.glob("*/*.json")
    if not p.stem.endswith(("_PREP", "_VERIFY"))
    and p.parent.name not in ("datasets", "firstOccurrence", "mixedConceptsets")
)

Doc = dict[str, Any]


def _concept(concept_id: int, **flags: bool) -> Doc:
    return {"concept": {"CONCEPT_ID": concept_id, "CONCEPT_NAME": f"c{concept_id}"}, **flags}


def _base() -> Doc:
    """NSAID users with 365 days of prior observation; GI bleed as a second concept set."""
    return {
        "ConceptSets": [
            {"id": 0, "name": "GI bleed", "expression": {"items": [_concept(192671)]}},
            {
                "id": 1,
                "name": "NSAIDs",
                "expression": {"items": [_concept(1118084), _concept(1124300)]},
            },
        ],
        "PrimaryCriteria": {
            "CriteriaList": [{"DrugExposure": {"CodesetId": 1}}],
            "ObservationWindow": {"PriorDays": 365, "PostDays": 0},
            "PrimaryCriteriaLimit": {"Type": "First"},
        },
    }


def _correlated(criteria: Doc, **extra: Any) -> Doc:
    return {
        "Criteria": criteria,
        "StartWindow": {"Start": {"Days": 30, "Coeff": -1}, "End": {"Days": 0, "Coeff": 1}},
        "Occurrence": {"Type": 2, "Count": 1},
        **extra,
    }


def _with_rule(doc: Doc, group: Doc, name: str = "rule") -> Doc:
    doc["InclusionRules"] = [{"name": name, "expression": group}]
    return doc


def _group(*criteria: Doc, **extra: Any) -> Doc:
    return {"Type": "ALL", "CriteriaList": list(criteria), **extra}


def _rule_criterion(**fields: Any) -> Doc:
    """A definition whose one inclusion rule counts GI bleeds with these criterion fields."""
    crit = {"ConditionOccurrence": {"CodesetId": 0, **fields}}
    return _with_rule(_base(), _group(_correlated(crit)))


def _first_rule_criterion(defn: CohortDefinition) -> Any:
    return defn.inclusion_rules[0].group.criteria[0]


# --------------------------------------------------------------------------- stored files


@pytest.mark.parametrize("path", STORED, ids=lambda p: p.stem)
def test_stored_circe_be_expressions_import_and_round_trip(path: Path) -> None:
    defn = from_circe(path)
    assert defn.name == path.stem
    assert CohortDefinition.from_yaml(defn.to_yaml()) == defn


def test_limit_expression_translation() -> None:
    defn = from_circe(DATA / "limits" / "limitExpression.json")
    assert defn.entry.limit == "all"
    assert (defn.qualified_limit, defn.expression_limit) == ("all", "all")
    (crit,) = defn.additional_criteria.criteria  # type: ignore[union-attr]
    assert (crit.start_window.start, crit.start_window.end) == (None, -1)
    assert (crit.occurrence.type, crit.occurrence.count) == ("at_least", 1)
    assert defn.exit.model_dump() == {"type": "fixed_offset", "anchor": "start", "offset_days": 1}
    assert defn.collapse.pad_days == 60
    assert defn.concept_sets["Parent Conceptset"].include[0].descendants is True


def test_exit_and_censoring_translation() -> None:
    era = from_circe(DATA / "exits" / "continuousExposureExpression.json").exit
    assert era.model_dump() == {
        "type": "drug_exposure_end",
        "concept_set": "Parent Conceptset",
        "gap_days": 60,
        "offset_days": 0,
        "days_supply_override": None,
    }
    classic = from_circe(DATA / "exits" / "continuousExposureCensorExpression.json").exit
    assert (classic.gap_days, classic.offset_days) == (60, 9999)  # type: ignore[union-attr]
    end = from_circe(DATA / "exits" / "fixedOffsetCensorExpression.json").exit
    assert end.model_dump() == {"type": "fixed_offset", "anchor": "end", "offset_days": 99999}
    censored = from_circe(DATA / "exits" / "censorEventExpression.json")
    assert [c.domain for c in censored.censoring] == ["procedure"]
    assert censored.censoring[0].concept_set is None
    window = from_circe(DATA / "censorWindow" / "censorWindowExpression.json").censor_window
    assert (str(window.start), str(window.end)) == ("2000-04-01", "2000-09-01")  # type: ignore[union-attr]


def test_group_and_visit_window_translation() -> None:
    groups = from_circe(DATA / "correlatedCriteria" / "groupExpression.json")
    outer = groups.additional_criteria
    assert outer is not None and outer.type == "any"
    assert [c.event.domain for c in outer.criteria] == ["drug", "procedure"]
    assert [c.start_window.start for c in outer.groups[0].criteria] == [-60, -60]
    visit = from_circe(DATA / "correlatedCriteria" / "visitExpression.json")
    (crit,) = visit.additional_criteria.criteria  # type: ignore[union-attr]
    assert crit.event.domain == "visit" and crit.event.concept_set is None
    assert (crit.start_window.end, crit.start_window.use_event_end) == (-1, False)
    assert crit.end_window is not None
    assert (crit.end_window.start, crit.end_window.end) == (1, None)
    assert crit.end_window.use_event_end is True


def test_inclusion_rule_translation() -> None:
    defn = from_circe(DATA / "inclusionRules" / "simpleInclusionRule.json")
    assert [r.name for r in defn.inclusion_rules] == ["Prior Condition"]
    assert defn.inclusion_rules[0].group.criteria[0].event.concept_set == "Inclusion Concept Set"
    # Circe applies the qualified limit only to additional criteria, which this one lacks
    assert (defn.entry.limit, defn.qualified_limit, defn.expression_limit) == (
        "first",
        "all",
        "first",
    )


# --------------------------------------------------------------------------- each element


def test_defaults_follow_circe() -> None:
    defn = from_circe(
        {"PrimaryCriteria": {"CriteriaList": [{"ConditionOccurrence": {}}]}, "ConceptSets": []}
    )
    assert defn.entry.limit == "first" and defn.expression_limit == "first"
    assert defn.entry.observation.prior_days == 0
    assert defn.exit.type == "observation_end"
    assert defn.collapse.pad_days == 0 and defn.censor_window is None
    assert defn.name == "Circe cohort"


def test_qualified_limit_applies_with_additional_criteria() -> None:
    doc = _base()
    doc["QualifiedLimit"] = {"Type": "Last"}
    assert from_circe(doc).qualified_limit == "all"
    doc["AdditionalCriteria"] = _group()
    with_ac = from_circe(doc)
    assert with_ac.qualified_limit == "last"
    assert with_ac.additional_criteria is not None and with_ac.additional_criteria.is_empty()


@pytest.mark.parametrize(
    ("flags", "include", "exclude"),
    [
        ({}, (False, False), None),
        ({"includeDescendants": True}, (True, False), None),
        ({"includeMapped": True}, (False, True), None),
        ({"isExcluded": True, "includeDescendants": True}, None, (True, False)),
    ],
)
def test_concept_set_item_flags(
    flags: Doc, include: tuple[bool, bool] | None, exclude: tuple[bool, bool] | None
) -> None:
    doc = _base()
    doc["ConceptSets"][1]["expression"]["items"].append(_concept(1177480, **flags))
    nsaids = from_circe(doc).concept_sets["NSAIDs"]
    found = {i.concept_id: (i.descendants, i.mapped) for i in nsaids.include}
    dropped = {i.concept_id: (i.descendants, i.mapped) for i in nsaids.exclude}
    assert found.get(1177480) == include
    assert dropped.get(1177480) == exclude
    assert found[1118084] == (False, False)


def test_entry_fields() -> None:
    doc = _base()
    doc["PrimaryCriteria"]["ObservationWindow"] = {"PriorDays": 90, "PostDays": 30}
    doc["PrimaryCriteria"]["PrimaryCriteriaLimit"] = {"Type": "Last"}
    doc["PrimaryCriteria"]["CriteriaList"].append(
        {
            "Measurement": {
                "ValueAsNumber": {"Value": 5, "Op": "bt", "Extent": 10},
                "Unit": [{"CONCEPT_ID": 8840}],
                "ValueAsConcept": [{"CONCEPT_ID": 4}],
                "First": True,
                "OccurrenceStartDate": {"Value": "2010-01-01", "Op": "gt"},
            }
        }
    )
    defn = from_circe(doc)
    assert defn.entry.observation.model_dump() == {"prior_days": 90, "post_days": 30}
    assert defn.entry.limit == "last"
    meas = defn.entry.events[1]
    assert meas.domain == "measurement" and meas.first is True
    assert (meas.value.gte, meas.value.lte) == (5, 10)  # type: ignore[union-attr]
    assert meas.unit_concept_ids == (8840,) and meas.value_concept_ids == (4,)
    assert str(meas.start_date.gt) == "2010-01-01"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("op", "extent", "expected"),
    [
        ("lt", None, {"lt": 40}),
        ("lte", None, {"lte": 40}),
        ("eq", None, {"eq": 40}),
        ("gt", None, {"gt": 40}),
        ("gte", None, {"gte": 40}),
        ("bt", 65, {"gte": 40, "lte": 65}),
    ],
)
def test_numeric_range_operators(op: str, extent: int | None, expected: Doc) -> None:
    age = {"Value": 40, "Op": op, **({"Extent": extent} if extent is not None else {})}
    defn = from_circe(_with_rule(_base(), _group(DemographicCriteriaList=[{"Age": age}])))
    demo = defn.inclusion_rules[0].group.demographics[0]
    assert demo.age is not None
    assert demo.age.model_dump(exclude_none=True) == expected


def test_criterion_fields() -> None:
    defn = from_circe(
        _rule_criterion(
            First=True,
            Age={"Value": 18, "Op": "gte"},
            Gender=[{"CONCEPT_ID": 8532, "CONCEPT_NAME": "FEMALE"}],
            VisitType=[{"CONCEPT_ID": 9201}],
            OccurrenceEndDate={"Value": "2019-12-31", "Op": "lte"},
        )
    )
    event = _first_rule_criterion(defn).event
    assert event.first is True and event.age.gte == 18
    assert event.sex == (8532,) and event.visit_concept_ids == (9201,)
    assert str(event.end_date.lte) == "2019-12-31"


@pytest.mark.parametrize(
    ("occurrence", "expected"),
    [
        ({"Type": 0, "Count": 0}, ("exactly", 0, None)),
        ({"Type": 1, "Count": 2}, ("at_most", 2, None)),
        ({"Type": 2, "Count": 3}, ("at_least", 3, None)),
        ({"Type": 2, "Count": 2, "IsDistinct": True}, ("at_least", 2, "concept")),
        (
            {"Type": 2, "Count": 2, "IsDistinct": True, "CountColumn": "START_DATE"},
            ("at_least", 2, "start_date"),
        ),
    ],
)
def test_occurrence(occurrence: Doc, expected: tuple[str, int, str | None]) -> None:
    crit = _correlated({"ConditionOccurrence": {"CodesetId": 0}}, Occurrence=occurrence)
    occ = _first_rule_criterion(from_circe(_with_rule(_base(), _group(crit)))).occurrence
    assert (occ.type, occ.count, occ.distinct) == expected


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (
            {"Start": {"Days": 30, "Coeff": -1}, "End": {"Days": 0, "Coeff": 1}},
            (-30, 0, False, False),
        ),
        ({"Start": {"Coeff": -1}, "End": {"Days": 7, "Coeff": -1}}, (None, -7, False, False)),
        ({"Start": {"Days": 1, "Coeff": 1}, "End": {"Coeff": 1}}, (1, None, False, False)),
        (
            {
                "Start": {"TimeUnitValue": 5, "TimeUnit": "day", "Coeff": 1},
                "End": {"Days": 9, "Coeff": 1},
                "UseIndexEnd": True,
                "UseEventEnd": True,
            },
            (5, 9, True, True),
        ),
    ],
)
def test_start_window(window: Doc, expected: tuple[Any, ...]) -> None:
    crit = _correlated({"ConditionOccurrence": {"CodesetId": 0}}, StartWindow=window)
    win = _first_rule_criterion(from_circe(_with_rule(_base(), _group(crit)))).start_window
    assert (win.start, win.end, win.use_index_end, win.use_event_end) == expected


def test_end_window_compares_event_end_unless_told_otherwise() -> None:
    window = {"Start": {"Days": 0, "Coeff": 1}, "End": {"Days": 10, "Coeff": 1}}
    crit = _correlated({"ConditionOccurrence": {"CodesetId": 0}}, EndWindow=window)
    end = _first_rule_criterion(from_circe(_with_rule(_base(), _group(crit)))).end_window
    assert (end.start, end.end, end.use_event_end) == (0, 10, True)
    crit["EndWindow"] = {**window, "UseEventEnd": False}
    end = _first_rule_criterion(from_circe(_with_rule(_base(), _group(crit)))).end_window
    assert end.use_event_end is False


def test_visit_restriction_and_observation_period() -> None:
    window = {"Start": {"Coeff": 1}, "End": {"Coeff": 1}}  # "any time" once the period is ignored
    crit = _correlated(
        {"VisitOccurrence": {"CodesetId": 0}},
        RestrictVisit=True,
        IgnoreObservationPeriod=True,
        StartWindow=window,
    )
    got = _first_rule_criterion(from_circe(_with_rule(_base(), _group(crit))))
    assert got.restrict_visit and got.ignore_observation_period
    assert (got.start_window.start, got.start_window.end) == (None, None)


def test_groups_nest_with_counts_and_demographics() -> None:
    inner = {"Type": "AT_MOST", "Count": 1, "CriteriaList": [_correlated({"DrugExposure": {}})]}
    group = {
        "Type": "AT_LEAST",
        "Count": 2,
        "CriteriaList": [_correlated({"ConditionOccurrence": {"CodesetId": 0}})],
        "DemographicCriteriaList": [{"Gender": [{"CONCEPT_ID": 8507}]}],
        "Groups": [inner],
    }
    rule = from_circe(_with_rule(_base(), group, name="")).inclusion_rules[0]
    assert rule.name == "Inclusion rule 1"
    assert (rule.group.type, rule.group.count) == ("at_least", 2)
    assert rule.group.demographics[0].sex == (8507,)
    assert (rule.group.groups[0].type, rule.group.groups[0].count) == ("at_most", 1)


def test_end_strategies_and_collapse() -> None:
    doc = _base()
    doc["EndStrategy"] = {
        "CustomEra": {"DrugCodesetId": 1, "GapDays": 30, "Offset": 7, "DaysSupplyOverride": 14}
    }
    doc["CollapseSettings"] = {"CollapseType": "ERA", "EraPad": 3}
    doc["CensoringCriteria"] = [{"ConditionOccurrence": {"CodesetId": 0}}]
    doc["CensorWindow"] = {"StartDate": "2010-01-01"}
    defn = from_circe(doc)
    assert defn.exit.model_dump() == {
        "type": "drug_exposure_end",
        "concept_set": "NSAIDs",
        "gap_days": 30,
        "offset_days": 7,
        "days_supply_override": 14,
    }
    assert defn.collapse.pad_days == 3
    assert defn.censoring[0].concept_set == "GI bleed"
    assert defn.censor_window is not None and defn.censor_window.end is None
    doc["EndStrategy"] = {"DateOffset": {"DateField": "EndDate", "Offset": 30}}
    assert from_circe(doc).exit.model_dump() == {
        "type": "fixed_offset",
        "anchor": "end",
        "offset_days": 30,
    }


def test_null_and_empty_fields_are_accepted() -> None:
    doc = _rule_criterion(
        ConditionType=[], ConditionTypeExclude=False, StopReason=None, ProviderSpecialty=[]
    )
    doc.update(CensoringCriteria=[], CensorWindow={}, AdditionalCriteria=None, Title=None)
    doc["cdmVersionRange"] = ">=5.0.0"
    doc["InclusionRules"][0]["description"] = None
    assert from_circe(doc).inclusion_rules[0].name == "rule"


# --------------------------------------------------------------------------- unsupported


def _edit(path: str, value: Any) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        target: Any = doc
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        last = keys[-1]
        target[int(last) if last.isdigit() else last] = value

    return apply


_CRIT = "PrimaryCriteria.CriteriaList.0.DrugExposure"
_RULE = "InclusionRules.0.expression.CriteriaList.0"

UNSUPPORTED: list[tuple[str, Callable[[Doc], None], str]] = [
    (
        "type filter",
        _edit(f"{_CRIT}.DrugType", [{"CONCEPT_ID": 38000177}]),
        "DrugExposure.DrugType`",
    ),
    ("provider", _edit(f"{_CRIT}.ProviderSpecialty", [{"CONCEPT_ID": 1}]), "ProviderSpecialty`"),
    ("source concept", _edit(f"{_CRIT}.DrugSourceConcept", 1), "DrugSourceConcept`"),
    ("date adjustment", _edit(f"{_CRIT}.DateAdjustment", {"StartOffset": 1}), "DateAdjustment`"),
    (
        "era criterion",
        _edit("PrimaryCriteria.CriteriaList.0", {"DrugEra": {}}),
        "CriteriaList[0].DrugEra`",
    ),
    (
        "hours",
        _edit(f"{_RULE}.StartWindow.Start", {"TimeUnitValue": 2, "TimeUnit": "hour", "Coeff": -1}),
        "StartWindow.Start.TimeUnit`: time unit 'hour'",
    ),
    (
        "conflicting days",
        _edit(f"{_RULE}.StartWindow.Start", {"Days": 2, "TimeUnitValue": 3, "Coeff": -1}),
        "StartWindow.Start.TimeUnitValue`: conflicts",
    ),
    (
        "op-bounded window",
        _edit(f"{_RULE}.StartWindow.Start", {"Coeff": 1}),
        "StartWindow.Start.Coeff`",
    ),
    ("occurrence type", _edit(f"{_RULE}.Occurrence", {"Type": 3, "Count": 1}), "Occurrence.Type`"),
    (
        "count column",
        _edit(
            f"{_RULE}.Occurrence",
            {"Type": 2, "Count": 1, "IsDistinct": True, "CountColumn": "VALUE_AS_NUMBER"},
        ),
        "CountColumn`",
    ),
    (
        "not between",
        _edit(f"{_RULE}.Criteria.ConditionOccurrence.Age", {"Value": 1, "Op": "!bt", "Extent": 5}),
        "Age.Op`: operator '!bt'",
    ),
    (
        "between without extent",
        _edit(f"{_RULE}.Criteria.ConditionOccurrence.Age", {"Value": 1, "Op": "bt"}),
        "Age.Op`",
    ),
    (
        "nested correlated",
        _edit(
            f"{_RULE}.Criteria.ConditionOccurrence.CorrelatedCriteria",
            _group(_correlated({"DrugExposure": {}})),
        ),
        "CorrelatedCriteria`",
    ),
    (
        "race",
        _edit(
            "InclusionRules.0.expression.DemographicCriteriaList",
            [{"Race": [{"CONCEPT_ID": 8515}]}],
        ),
        "DemographicCriteriaList[0].Race`",
    ),
    ("group type", _edit("InclusionRules.0.expression.Type", "NONE"), "expression.Type`"),
    (
        "group count",
        _edit("InclusionRules.0.expression.Type", "AT_LEAST"),
        "expression.Count`: is required",
    ),
    ("collapse type", _edit("CollapseSettings", {"CollapseType": "OTHER"}), "CollapseType`"),
    (
        "era pad minutes",
        _edit("CollapseSettings", {"EraPadUnit": "minute", "EraPadUnitValue": 5}),
        "EraPadUnit`: time unit 'minute'",
    ),
    (
        "offset unit",
        _edit("EndStrategy", {"DateOffset": {"OffsetUnit": "month", "OffsetUnitValue": 1}}),
        "OffsetUnit`",
    ),
    ("date field", _edit("EndStrategy", {"DateOffset": {"DateField": "VisitDate"}}), "DateField`"),
    (
        "two end strategies",
        _edit("EndStrategy", {"DateOffset": {}, "CustomEra": {"DrugCodesetId": 1}}),
        "`$.EndStrategy`: give one end strategy",
    ),
    (
        "undefined concept set",
        _edit(f"{_CRIT}.CodesetId", 7),
        "CodesetId`: refers to concept set 7",
    ),
    (
        "empty concept set",
        _edit("ConceptSets.0.expression.items", []),
        "CodesetId`: refers to concept set 0, which includes no concept",
    ),
    (
        "visit type of a visit",
        _edit(f"{_RULE}.Criteria", {"VisitOccurrence": {"VisitType": [{"CONCEPT_ID": 1}]}}),
        "VisitOccurrence.VisitType`",
    ),
    ("unknown top level", _edit("DateRestriction", {"x": 1}), "`$.DateRestriction`"),
    (
        "duplicate id",
        _edit("ConceptSets.1.id", 0),
        "ConceptSets[1].id`: concept set id 0 is defined twice",
    ),
    ("no entry", _edit("PrimaryCriteria", None), "`$.PrimaryCriteria`: is required"),
    ("no window", _edit(f"{_RULE}.StartWindow", None), "StartWindow`: is required"),
]


@pytest.mark.parametrize(("label", "edit", "where"), UNSUPPORTED, ids=[u[0] for u in UNSUPPORTED])
def test_unsupported_elements_are_errors_naming_their_path(
    label: str, edit: Callable[[Doc], None], where: str
) -> None:
    doc = _rule_criterion()
    edit(doc)
    with pytest.raises(CirceImportError) as err:
        from_circe(doc)
    assert where in str(err.value), str(err.value)
    assert "Circe cohort expression" in str(err.value) or "cannot import" in str(err.value)


def test_every_problem_is_listed_at_once() -> None:
    doc = _rule_criterion(ConditionType=[{"CONCEPT_ID": 1}])
    doc["PrimaryCriteria"]["CriteriaList"][0]["DrugExposure"]["Quantity"] = {"Value": 1, "Op": "gt"}
    with pytest.raises(CirceImportError, match=r"2 problem\(s\)") as err:
        from_circe(doc)
    assert "DrugExposure.Quantity`" in str(err.value)
    assert "ConditionOccurrence.ConditionType`" in str(err.value)


def test_a_window_that_ends_before_it_starts_is_an_error() -> None:
    window = {"Start": {"Days": 1, "Coeff": 1}, "End": {"Days": 5, "Coeff": -1}}
    crit = _correlated({"ConditionOccurrence": {"CodesetId": 0}}, StartWindow=window)
    with pytest.raises(CirceImportError, match=r"StartWindow`: window starts after it ends"):
        from_circe(_with_rule(_base(), _group(crit)))


# --------------------------------------------------------------------------- sources


def test_sources_path_text_mapping_and_webapi_wrapper(tmp_path: Path) -> None:
    doc = _base()
    path = tmp_path / "nsaid_users.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    by_path = from_circe(path)
    assert by_path.name == "nsaid_users"
    assert from_circe(str(path)) == by_path
    assert from_circe(json.dumps(doc)).entry == by_path.entry
    titled = from_circe({**copy.deepcopy(doc), "Title": "NSAID users"})
    assert titled.name == "NSAID users"
    assert from_circe(doc, name="Mine").name == "Mine"
    wrapped = {
        "id": 12,
        "name": "NSAIDs (ATLAS)",
        "description": "from WebAPI",
        "expression": json.dumps(doc),
    }
    webapi = from_circe(wrapped)
    assert (webapi.name, webapi.description) == ("NSAIDs (ATLAS)", "from WebAPI")
    assert webapi.entry == by_path.entry
    assert CohortDefinition.from_circe(path) == by_path


def test_source_errors(tmp_path: Path) -> None:
    with pytest.raises(CirceImportError, match="does not exist"):
        from_circe(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(CirceImportError, match=r"bad\.json: not valid JSON"):
        from_circe(bad)
    with pytest.raises(CirceImportError, match="JSON object"):
        from_circe("[1, 2]")
