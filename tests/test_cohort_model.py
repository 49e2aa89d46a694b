"""The cohort definition model: YAML round trip, validation messages, hashing, shipped files."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from clinnova_explore.cdm import concepts
from clinnova_explore.cdm.vocabulary import load_vocabulary
from clinnova_explore.cohort import (
    CohortDefinition,
    CohortDefinitionError,
    builtin_definition,
    builtin_definition_names,
)
from clinnova_explore.cohort.model import DrugExposureEndExit, FixedOffsetExit

FULL = """
name: MS, high-efficacy DMT start
description: a full example
concept_sets:
  ms:
    include:
      - {concept_id: 374919, descendants: true}
    exclude: [{concept_id: 2000000013, descendants: false}]
    source_codes: [{vocabulary: ICD10GM, code: G35.10}]
  he_dmt:
    include: [{concept_id: 2000000303, mapped: true}]
entry:
  events:
    - {domain: drug, concept_set: he_dmt, first: true}
    - {domain: measurement, value: {gte: 3.5, lt: 10}, unit_concept_ids: [2000000902]}
  observation: {prior_days: 365, post_days: 30}
  limit: last
additional_criteria:
  type: at_least
  count: 1
  demographics: [{sex: [8532]}]
qualified_limit: all
inclusion_rules:
  - name: Aged 18-60 at index
    group: {type: all, demographics: [{age: {gte: 18, lte: 60}}]}
  - name: MS diagnosis on or before index
    description: any MS code
    group:
      type: any
      criteria:
        - event: {domain: condition, concept_set: ms, visit_concept_ids: [9202]}
          occurrence: {type: exactly, count: 2, distinct: start_date}
          start_window: {start: null, end: 0, use_index_end: true, use_event_end: false}
          end_window: {start: -30, end: 30, use_event_end: true}
          restrict_visit: true
          ignore_observation_period: true
      groups:
        - {type: at_most, count: 0, demographics: [{age: {lt: 18}}]}
expression_limit: all
exit: {type: drug_exposure_end, concept_set: he_dmt, gap_days: 30, offset_days: 7,
       days_supply_override: 28}
censoring: [{domain: death}]
collapse: {pad_days: 14}
censor_window: {start: 2012-01-01, end: 2024-12-31}
"""


def test_full_yaml_round_trips_to_an_equal_definition() -> None:
    defn = CohortDefinition.from_yaml(FULL)
    again = CohortDefinition.from_yaml(defn.to_yaml())
    assert again == defn
    assert again.definition_hash == defn.definition_hash
    assert isinstance(defn.exit, DrugExposureEndExit)
    assert defn.exit.days_supply_override == 28
    rule = defn.inclusion_rules[1].group.criteria[0]
    assert rule.occurrence.distinct == "start_date"
    assert rule.start_window.start is None and rule.start_window.use_index_end
    assert defn.entry.events[1].value is not None and defn.entry.events[1].value.lt == 10
    assert str(defn.censor_window.start) == "2012-01-01"  # type: ignore[union-attr]


def test_yaml_output_omits_defaults_and_keeps_whole_numbers_whole() -> None:
    text = CohortDefinition.from_yaml(FULL).to_yaml()
    assert "gte: 18\n" in text and "18.0" not in text
    assert "descendants: true" not in text  # the default
    assert "descendants: false" in text


def test_shorthand_concept_ids_equal_the_long_form() -> None:
    short = CohortDefinition.from_yaml(
        "name: x\nconcept_sets: {ms: {include: [374919]}}\n"
        "entry: {events: [{domain: condition, concept_set: ms}]}\n"
    )
    long = CohortDefinition.from_yaml(
        "name: x\nconcept_sets: {ms: {include: [{concept_id: 374919, descendants: true}]}}\n"
        "entry: {events: [{domain: condition, concept_set: ms}]}\n"
    )
    assert short == long and short.definition_hash == long.definition_hash


def test_hash_changes_with_every_kind_of_edit() -> None:
    base = CohortDefinition.from_yaml(FULL)
    data = base.model_dump(mode="json")
    seen = {base.definition_hash}
    edits = [
        ("entry", "observation", "prior_days", 364),
        ("collapse", "pad_days", 15),
        ("exit", "gap_days", 31),
        ("expression_limit", "first"),
    ]
    for *path, value in edits:
        copy = CohortDefinition.model_validate(data).model_dump(mode="json")
        node = copy
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        edited = CohortDefinition.model_validate(copy)
        assert edited.definition_hash not in seen, path
        seen.add(edited.definition_hash)
    assert re.fullmatch(r"[0-9a-f]{16}", base.definition_hash)


def test_defaults_follow_circe() -> None:
    defn = CohortDefinition.from_yaml(
        "name: x\nentry: {events: [{domain: death}]}\n"  # no concept set: every death
    )
    assert defn.entry.limit == "first"
    assert defn.qualified_limit == "first" and defn.expression_limit == "first"
    assert defn.exit.type == "observation_end"
    assert defn.collapse.pad_days == 0 and defn.censor_window is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("concept_set: ms, visit", "concept_set: mss, visit"),
         "inclusion rule 'MS diagnosis on or before index' uses concept set 'mss', which is not "
         "defined"),
        (("concept_set: he_dmt, first", "concept_set: nope, first"),
         "entry event 1 (drug) uses concept set 'nope'"),
        (("concept_set: he_dmt, gap_days", "concept_set: gone, gap_days"),
         "exit (drug_exposure_end) uses concept set 'gone'"),
        (("limit: last", "limit: latest"), "entry.limit"),
        (("start: -30, end: 30", "start: 30, end: -30"),
         "window start (30) is after its end (-30)"),
        (("type: at_least\n  count: 1", "type: at_least"), "needs `count`"),
        (("domain: measurement, value:", "domain: condition, value:"),
         "`value` applies to measurement or observation events"),
        (("prior_days: 365", "prior_days: -1"), "prior_days"),
        (("gap_days: 30", "gap_days: 30, gap: 2"), "Extra inputs are not permitted"),
        (("{domain: death}", "{domain: device}"), "censoring.0.domain"),
    ],
)  # fmt: skip
def test_invalid_definitions_say_what_and_where(edit: tuple[str, str], message: str) -> None:
    old, new = edit
    assert old in FULL, old
    with pytest.raises(CohortDefinitionError) as info:
        CohortDefinition.from_yaml(FULL.replace(old, new, 1))
    assert message in str(info.value)


def test_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nentry: {events: []}\n", encoding="utf-8")
    with pytest.raises(CohortDefinitionError, match=r"(?s)broken\.yaml.*entry\.events"):
        CohortDefinition.from_yaml(path)
    with pytest.raises(CohortDefinitionError, match="does not exist"):
        CohortDefinition.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(CohortDefinitionError, match="YAML mapping"):
        CohortDefinition.from_yaml("- just\n- a list\n")


def test_yaml_file_path_given_as_string(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(FULL, encoding="utf-8")
    assert CohortDefinition.from_yaml(str(path)) == CohortDefinition.from_yaml(FULL)


def test_model_is_frozen() -> None:
    defn = CohortDefinition.from_yaml(FULL)
    with pytest.raises(ValueError, match="frozen"):
        defn.name = "other"  # type: ignore[misc]


def test_fixed_offset_exit_parses() -> None:
    defn = CohortDefinition.from_yaml(
        "name: x\nentry: {events: [{domain: death}]}\n"
        "exit: {type: fixed_offset, anchor: end, offset_days: 30}\n"
    )
    assert isinstance(defn.exit, FixedOffsetExit) and defn.exit.anchor == "end"


# ---------------------------------------------------------------------- shipped definitions

EXPECTED_BUILTINS = {
    "ms_diagnosis",
    "ms_high_efficacy_start",
    "ms_platform_start",
    "ms_relapse",
    "ra_bdmard_start",
    "ra_csdmard_start",
    "ibd_advanced_start",
    "ibd_hospitalization",
    "ibd_surgery",
    "ms_start_first_dmt_high_efficacy",
    "ms_start_first_dmt_platform",
    "ra_start_first_advanced_anti_tnf",
    "ra_start_first_advanced_other_moa",
    "ibd_start_first_advanced_anti_tnf",
    "ibd_start_first_advanced_other",
}


def test_builtin_definitions_load_and_round_trip() -> None:
    assert set(builtin_definition_names()) == EXPECTED_BUILTINS
    for name in builtin_definition_names():
        defn = builtin_definition(name)
        assert CohortDefinition.from_yaml(defn.to_yaml()) == defn, name
    with pytest.raises(CohortDefinitionError, match="ms_relapse"):
        builtin_definition("ms_relapses")


def test_builtin_concept_ids_are_the_named_constants_of_the_vocabulary() -> None:
    """Each ``concept_id: N  # NAME`` line of a shipped file matches ``concepts.NAME``."""
    known = set(load_vocabulary()["concept"].concept_id)
    folder = resources.files("clinnova_explore.cohort") / "definitions"
    checked = 0
    for entry in folder.iterdir():
        for line in entry.read_text(encoding="utf-8").splitlines():
            if "concept_id:" not in line:
                continue
            found = re.search(r"concept_id: (\d+).*#\s*([A-Z_0-9]+)", line)
            assert found, f"{entry.name}: concept id without its constant name: {line}"
            concept_id, name = int(found.group(1)), found.group(2)
            assert getattr(concepts, name) == concept_id, (entry.name, line)
            assert concept_id in known
            checked += 1
    assert checked >= 19
