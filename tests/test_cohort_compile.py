"""The cohort compiler on tiny hand-made CDMs: every feature against hand-derived results.

Each test writes a few persons crafted to hit one edge (inclusive window bounds, first vs all,
limits, gap and pad days, censoring, observation period caps) and states the expected cohort
rows as worked out by hand from the OHDSI Circe semantics. Every scenario is also checked
against the independent pandas reference in ``tests/cohort_reference.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from clinnova_explore.cdm import concepts as c
from clinnova_explore.cdm import vocabulary
from clinnova_explore.cdm.source import DuckDBFileCdm
from clinnova_explore.cohort import CohortDefinition, compile_cohort
from clinnova_explore.cohort.conceptset import resolve_concept_set
from tests.cohort_reference import Reference, normalise
from tests.cohort_tiny import TinyCdm, empty_cdm

Rows = list[tuple[int, str, str]]
Build = Callable[[TinyCdm], DuckDBFileCdm]
Shared = Callable[[Callable[[], TinyCdm]], DuckDBFileCdm]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return empty_cdm(tmp_path_factory.mktemp("tiny") / "empty.duckdb")


@pytest.fixture
def build(tmp_path: Path, template: Path) -> Build:
    count = iter(range(100))

    def make(tiny: TinyCdm) -> DuckDBFileCdm:
        return tiny.open(tmp_path / f"cdm{next(count)}.duckdb", template)

    return make


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, template: Path) -> Shared:
    """One CDM per scenario function for the whole module (parametrized tests reuse it)."""
    made: dict[str, DuckDBFileCdm] = {}
    folder = tmp_path_factory.mktemp("shared")

    def get(scenario: Callable[[], TinyCdm]) -> DuckDBFileCdm:
        if scenario.__name__ not in made:
            path = folder / f"{scenario.__name__}.duckdb"
            made[scenario.__name__] = scenario().open(path, template)
        return made[scenario.__name__]

    return get


def run(cdm: DuckDBFileCdm, text: str) -> Rows:
    """Compile and run; also assert the pandas reference gives the same rows."""
    defn = CohortDefinition.from_yaml(text)
    compiled = compile_cohort(defn, cdm)
    got = normalise(compiled.cohort.execute())
    want = Reference(cdm.path).rows(defn)
    assert got.to_dict("records") == normalise(want).to_dict("records"), "reference differs"
    return [(int(r.subject_id), str(r.cohort_start_date), str(r.cohort_end_date))
            for r in got.itertuples()]  # fmt: skip


def persons(rows: Rows) -> set[int]:
    return {r[0] for r in rows}


HE = c.MS_DMT_HIGH_EFFICACY
SETS = f"""
concept_sets:
  he: {{include: [{HE}]}}
  ms: {{include: [{c.MULTIPLE_SCLEROSIS}]}}
  rrms: {{include: [{{concept_id: {c.RRMS}, descendants: false}}]}}
  spms: {{include: [{{concept_id: {c.SPMS}, descendants: false}}]}}
  relapse: {{include: [{c.MS_RELAPSE}]}}
  crp: {{include: [{c.CRP}]}}
  inpatient: {{include: [{c.INPATIENT_VISIT}]}}
"""


def defn(body: str, name: str = "t") -> str:
    return f"name: {name}\n{SETS}\n{body}"


# ---------------------------------------------------------------------- concept sets


def test_concept_sets_resolve_in_the_database(build: Build) -> None:
    cdm = build(TinyCdm().person(1))

    def ids(text: str) -> tuple[set[int], set[int] | None]:
        d = CohortDefinition.from_yaml(
            f"name: x\nconcept_sets: {{s: {text}}}\nentry: {{events: [{{domain: death}}]}}\n"
        )
        resolved = resolve_concept_set(d.concept_sets["s"], cdm)
        source = None if resolved.source is None else set(resolved.source.execute().concept_id)
        return set(resolved.standard.execute().concept_id), source

    ms = vocabulary.descendants(c.MULTIPLE_SCLEROSIS)
    assert ids(f"{{include: [{c.MULTIPLE_SCLEROSIS}]}}") == (ms, None)
    no_desc = f"{{include: [{{concept_id: {c.MULTIPLE_SCLEROSIS}, descendants: false}}]}}"
    assert ids(no_desc) == ({c.MULTIPLE_SCLEROSIS}, None)
    excl = f"{{include: [{c.MULTIPLE_SCLEROSIS}], exclude: [{{concept_id: {c.PPMS}}}]}}"
    assert ids(excl)[0] == ms - {c.PPMS}
    # mapped: the source concepts that map to RRMS join the set (Circe includeMapped)
    mapping = vocabulary.source_to_standard()
    to_rrms = set(mapping.source_concept_id[mapping.standard_concept_id == c.RRMS])
    assert len(to_rrms) >= 2
    mapped = f"{{include: [{{concept_id: {c.RRMS}, mapped: true}}]}}"
    assert ids(mapped)[0] == {c.RRMS} | to_rrms
    # source codes: the code's concept is matched on source columns, its target on standard
    g3510 = "{source_codes: [{vocabulary: ICD10GM, code: G35.10}]}"
    assert ids(g3510) == ({c.RRMS}, {2000005002})
    # an id the vocabulary does not know resolves to nothing (as in Circe)
    assert ids("{include: [{concept_id: 1234567, descendants: false}]}")[0] == set()


def test_source_codes_match_source_and_mapped_standard_columns(
    build: Build,
) -> None:
    tiny = TinyCdm()
    for pid in (1, 2, 3, 4):
        tiny.person(pid)
    tiny.condition(1, 0, "2012-01-01", source=2000005002)  # unmapped record, source G35.10
    tiny.condition(2, c.RRMS, "2012-01-01")  # standard target of G35.10
    tiny.condition(3, c.SPMS, "2012-01-01", source=2000005006)  # another code
    tiny.condition(4, c.MULTIPLE_SCLEROSIS, "2012-01-01")  # broader concept: not a target
    body = """
concept_sets:
  g35_10: {source_codes: [{vocabulary: ICD10GM, code: G35.10}]}
entry: {events: [{domain: condition, concept_set: g35_10}]}
"""
    assert persons(run(build(tiny), f"name: s\n{body}")) == {1, 2}


# ---------------------------------------------------------------------- entry events


def _entry_cdm() -> TinyCdm:
    tiny = TinyCdm()
    for pid in (1, 2, 3, 4):
        tiny.person(pid)
    tiny.drug(1, c.NATALIZUMAB, "2011-01-01", "2011-01-31")  # exactly 365 days observed
    tiny.drug(1, c.FINGOLIMOD, "2012-01-01", "2012-01-31")
    tiny.drug(2, c.NATALIZUMAB, "2010-12-31", "2011-01-30")  # 364 days: too early
    tiny.drug(2, c.NATALIZUMAB, "2012-05-01", "2012-05-31")
    tiny.drug(3, c.NATALIZUMAB, "2009-06-01", "2009-07-01")  # before observation
    tiny.drug(3, c.OCRELIZUMAB, "2013-03-01", "2013-03-31")
    tiny.drug(4, c.NATALIZUMAB, "2014-02-02", "2014-02-20", rid=50)  # same day, two
    tiny.drug(4, c.FINGOLIMOD, "2014-02-02", "2014-03-10", rid=40)  # records: id 40 first
    tiny.drug(4, c.INTERFERON_BETA_1A, "2012-01-01", "2012-02-01")  # not high-efficacy
    return tiny


END_EXIT = "exit: {type: fixed_offset, anchor: end, offset_days: 0}"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        # first in history is chosen before the observation check (Circe): 2 and 3 drop out
        ("{events: [{domain: drug, concept_set: he, first: true}], "
         "observation: {prior_days: 365}}",
         [(1, "2011-01-01", "2011-01-31"), (4, "2014-02-02", "2014-03-10")]),
        ("{events: [{domain: drug, concept_set: he}], observation: {prior_days: 365}}",
         [(1, "2011-01-01", "2011-01-31"), (2, "2012-05-01", "2012-05-31"),
          (3, "2013-03-01", "2013-03-31"), (4, "2014-02-02", "2014-03-10")]),
        ("{events: [{domain: drug, concept_set: he}], observation: {prior_days: 365}, "
         "limit: last}",
         [(1, "2012-01-01", "2012-01-31"), (2, "2012-05-01", "2012-05-31"),
          (3, "2013-03-01", "2013-03-31"), (4, "2014-02-02", "2014-03-10")]),
        # post_days: 2012-05-01 has 3166 days left, 2013-03-01 has 2862
        ("{events: [{domain: drug, concept_set: he}], observation: {post_days: 3166}, "
         "limit: last}",
         [(1, "2012-01-01", "2012-01-31"), (2, "2012-05-01", "2012-05-31")]),
    ],
)  # fmt: skip
def test_entry_first_limit_and_observation_window(
    shared: Shared, entry: str, expected: Rows
) -> None:
    assert run(shared(_entry_cdm), defn(f"entry: {entry}\n{END_EXIT}")) == expected


def test_entry_limit_all_keeps_every_event_and_collapses_same_day(
    shared: Shared,
) -> None:
    body = """
entry: {events: [{domain: drug, concept_set: he}], observation: {prior_days: 365}, limit: all}
expression_limit: all
exit: {type: fixed_offset, anchor: start, offset_days: 0}
"""
    assert run(shared(_entry_cdm), defn(body)) == [
        (1, "2011-01-01", "2011-01-01"),
        (1, "2012-01-01", "2012-01-01"),
        (2, "2012-05-01", "2012-05-01"),
        (3, "2013-03-01", "2013-03-01"),
        (4, "2014-02-02", "2014-02-02"),
    ]


def test_entry_union_of_criteria_and_attributes(build: Build) -> None:
    tiny = TinyCdm()
    tiny.person(1, yob=1990, gender=c.MALE)
    tiny.person(2, yob=1960)
    tiny.measurement(1, c.CRP, "2012-01-01", 9.99, c.UNIT_MG_PER_L)  # below the range
    tiny.measurement(1, c.CRP, "2013-01-01", 10.0, c.UNIT_MG_PER_DL)  # wrong unit
    tiny.measurement(1, c.CRP, "2014-01-01", 10.0, c.UNIT_MG_PER_L)  # first match
    tiny.measurement(2, c.CRP, "2012-06-01", None, c.UNIT_MG_PER_L)  # no value
    tiny.observation(2, c.MS_RELAPSE, "2015-03-03")
    tiny.death(2, "2019-05-05")
    body = f"""
entry:
  events:
    - {{domain: measurement, concept_set: crp, value: {{gte: 10}}, unit_concept_ids: [{c.UNIT_MG_PER_L}]}}
    - {{domain: observation, concept_set: relapse, sex: [{c.FEMALE}], age: {{gte: 55}}}}
    - {{domain: death}}
  limit: all
expression_limit: all
exit: {{type: fixed_offset, anchor: end, offset_days: 0}}
"""  # noqa: E501
    # measurement, observation and death events end the day after they start (Circe)
    assert run(build(tiny), defn(body)) == [
        (1, "2014-01-01", "2014-01-02"),
        (2, "2015-03-03", "2015-03-04"),
        (2, "2019-05-05", "2019-05-06"),
    ]


# ---------------------------------------------------------------------- windows


def _window_cdm() -> TinyCdm:
    tiny = TinyCdm()
    for pid in range(1, 8):
        tiny.person(pid, start="2014-01-01")
        tiny.drug(pid, c.NATALIZUMAB, "2015-06-15", "2015-07-15")  # index, ends 30 days later
    tiny.condition(1, c.RRMS, "2015-05-16")  # day -30
    tiny.condition(2, c.RRMS, "2015-05-15")  # day -31
    tiny.condition(3, c.RRMS, "2015-06-15")  # day 0
    tiny.condition(4, c.RRMS, "2015-06-14")  # day -1
    tiny.condition(5, c.RRMS, "2015-05-06", "2015-05-26")  # starts -40, ends -20
    tiny.condition(6, c.RRMS, "2015-07-10")  # 5 days before the index end
    tiny.condition(7, c.RRMS, "2013-06-01")  # before the observation period
    return tiny


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("start_window: {start: -30, end: -1}", {1, 4}),
        ("start_window: {start: -30, end: 0}", {1, 3, 4}),
        # condition ends default to start + 1: 1 ends on -29, 2 on -30, 4 on day 0
        ("start_window: {start: -30, end: -1, use_event_end: true}", {1, 2, 5}),
        ("start_window: {start: -10, end: 0, use_index_end: true}", {6}),
        ("start_window: {start: null, end: 0}", {1, 2, 3, 4, 5}),
        ("start_window: {start: null, end: 0}\n          ignore_observation_period: true",
         {1, 2, 3, 4, 5, 7}),
        ("start_window: {start: null, end: null}", {1, 2, 3, 4, 5, 6}),
        # both windows: starts on or before the index and ends on or after day -25
        ("start_window: {start: null, end: 0}\n"
         "          end_window: {start: -25, end: null, use_event_end: true}", {3, 4, 5}),
    ],
)  # fmt: skip
def test_windows_are_inclusive_and_anchored_as_asked(
    shared: Shared, window: str, expected: set[int]
) -> None:
    body = f"""
entry: {{events: [{{domain: drug, concept_set: he, first: true}}]}}
inclusion_rules:
  - name: RRMS in window
    group:
      criteria:
        - event: {{domain: condition, concept_set: rrms}}
          {window}
"""
    assert persons(run(shared(_window_cdm), defn(body))) == expected


# ---------------------------------------------------------------------- occurrences


def _count_cdm() -> TinyCdm:
    tiny = TinyCdm()
    for pid in (1, 2):
        tiny.person(pid)
        tiny.drug(pid, c.NATALIZUMAB, "2016-01-01", "2016-02-01")
    tiny.condition(1, c.RRMS, "2012-01-01", visit=tiny.visit(1, c.OUTPATIENT_VISIT, "2012-01-01"))
    tiny.condition(1, c.RRMS, "2012-01-01")  # same day, no visit
    tiny.condition(1, c.RRMS, "2013-01-01", visit=tiny.visit(1, c.OUTPATIENT_VISIT, "2013-01-01"))
    tiny.condition(1, c.SPMS, "2014-01-01", visit=tiny.visit(1, c.INPATIENT_VISIT, "2014-01-01"))
    return tiny  # person 1: 4 events, 3 dates, 2 concepts, 3 visits; person 2: none


@pytest.mark.parametrize(
    ("occurrence", "expected"),
    [
        ("{type: at_least, count: 1}", {1}),
        ("{type: at_least, count: 4}", {1}),
        ("{type: at_least, count: 5}", set()),
        ("{type: at_least, count: 0}", {1, 2}),
        ("{type: exactly, count: 4}", {1}),
        ("{type: exactly, count: 3}", set()),
        ("{type: exactly, count: 0}", {2}),
        ("{type: at_most, count: 0}", {2}),
        ("{type: at_most, count: 3}", {2}),
        ("{type: at_most, count: 4}", {1, 2}),
        ("{type: exactly, count: 2, distinct: concept}", {1}),
        ("{type: at_least, count: 3, distinct: concept}", set()),
        ("{type: exactly, count: 3, distinct: start_date}", {1}),
        ("{type: exactly, count: 3, distinct: visit}", {1}),
        ("{type: at_most, count: 2, distinct: visit}", {2}),
        ("{type: at_least, count: 1, distinct: visit}", {1}),
    ],
)
def test_occurrence_counts(shared: Shared, occurrence: str, expected: set[int]) -> None:
    body = f"""
entry: {{events: [{{domain: drug, concept_set: he, first: true}}]}}
inclusion_rules:
  - name: MS history
    group:
      criteria:
        - event: {{domain: condition, concept_set: ms}}
          occurrence: {occurrence}
          start_window: {{start: null, end: 0}}
"""
    assert persons(run(shared(_count_cdm), defn(body))) == expected


# ---------------------------------------------------------------------- groups, demographics


def _group_cdm() -> TinyCdm:
    tiny = TinyCdm()
    for pid, yob, sex in ((1, 1990, c.FEMALE), (2, 1990, c.MALE), (3, 1991, c.FEMALE),
                          (4, 1975, c.MALE)):  # fmt: skip
        tiny.person(pid, yob=yob, gender=sex, start="2005-01-01")
        tiny.drug(pid, c.NATALIZUMAB, "2008-12-31", "2009-01-31")  # age 18, 18, 17, 33
    tiny.condition(1, c.RRMS, "2008-06-01")  # A
    tiny.condition(2, c.SPMS, "2008-06-01")  # B
    tiny.condition(3, c.RRMS, "2008-06-01")  # A and B
    tiny.condition(3, c.SPMS, "2008-07-01")
    return tiny


A = "{event: {domain: condition, concept_set: rrms}}"
B = "{event: {domain: condition, concept_set: spms}}"


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (f"{{type: all, criteria: [{A}, {B}]}}", {3}),
        (f"{{type: any, criteria: [{A}, {B}]}}", {1, 2, 3}),
        (f"{{type: at_least, count: 2, criteria: [{A}, {B}]}}", {3}),
        (f"{{type: at_least, count: 1, criteria: [{A}, {B}]}}", {1, 2, 3}),
        (f"{{type: at_most, count: 1, criteria: [{A}, {B}]}}", {1, 2, 4}),
        (f"{{type: at_most, count: 0, criteria: [{A}, {B}]}}", {4}),
        (f"{{type: at_least, count: 0, criteria: [{A}, {B}]}}", {1, 2, 3, 4}),
        (f"{{type: any, criteria: [{A}], demographics: [{{sex: [{c.MALE}]}}]}}", {1, 2, 3, 4}),
        (f"{{type: all, criteria: [{A}], demographics: [{{sex: [{c.FEMALE}]}}]}}", {1, 3}),
        ("{demographics: [{age: {gte: 18, lte: 18}}]}", {1, 2}),
        ("{demographics: [{age: {lt: 18}}, {sex: [8532]}]}", {3}),
        ("{type: any, demographics: [{age: {gt: 30}}, {age: {eq: 17}}]}", {3, 4}),
        # nested: (A and B) or (no A): 3, 2, 4
        (f"{{type: any, groups: [{{type: all, criteria: [{A}, {B}]}}, "
         f"{{type: at_most, count: 0, criteria: [{A}]}}]}}", {2, 3, 4}),
        ("{type: all}", {1, 2, 3, 4}),
    ],
)  # fmt: skip
def test_groups_and_demographics(shared: Shared, group: str, expected: set[int]) -> None:
    body = f"""
entry: {{events: [{{domain: drug, concept_set: he, first: true}}]}}
inclusion_rules: [{{name: rule, group: {group}}}]
"""
    assert persons(run(shared(_group_cdm), defn(body))) == expected


def test_restrict_visit_and_visit_concepts(build: Build) -> None:
    tiny = TinyCdm()
    for pid in (1, 2, 3, 4):
        tiny.person(pid)
    for pid, kind in ((1, c.INPATIENT_VISIT), (2, c.INPATIENT_VISIT), (3, c.INPATIENT_VISIT),
                      (4, c.OUTPATIENT_VISIT)):  # fmt: skip
        stay = tiny.visit(pid, kind, "2015-01-01", "2015-01-05")
        if pid in (1, 4):
            tiny.condition(pid, c.CROHNS_DISEASE, "2015-01-02", visit=stay)
    tiny.condition(2, c.CROHNS_DISEASE, "2015-01-02", visit=tiny.visit(2, c.ER_VISIT, "2015-01-02"))
    tiny.condition(3, c.CROHNS_DISEASE, "2015-01-02")  # no visit id
    body = f"""
name: v
concept_sets:
  inpatient: {{include: [{c.INPATIENT_VISIT}]}}
  ibd: {{include: [{c.IBD}]}}
entry: {{events: [{{domain: visit, concept_set: inpatient}}], limit: all}}
inclusion_rules:
  - name: IBD during the stay
    group:
      criteria: [{{event: {{domain: condition, concept_set: ibd}}, restrict_visit: true}}]
expression_limit: all
exit: {{type: fixed_offset, anchor: end, offset_days: 0}}
"""
    assert run(build(tiny), body) == [(1, "2015-01-01", "2015-01-05")]
    by_type = f"""
name: v2
concept_sets: {{ibd: {{include: [{c.IBD}]}}}}
entry:
  events: [{{domain: condition, concept_set: ibd, visit_concept_ids: [{c.INPATIENT_VISIT}]}}]
"""
    assert persons(run(build(tiny), by_type)) == {1}


# ---------------------------------------------------------------------- exits


def _exit_cdm() -> TinyCdm:
    tiny = TinyCdm()
    tiny.person(1, start="2014-01-01", end="2015-12-31")
    tiny.drug(1, c.NATALIZUMAB, "2015-01-01", "2015-01-30")
    tiny.drug(1, c.FINGOLIMOD, "2015-03-01", "2015-03-30")  # 30 days after the first ends
    tiny.drug(1, c.NATALIZUMAB, "2015-05-01", days_supply=20)  # 32 days after: no end date
    tiny.person(2, start="2014-01-01", end="2015-12-31")
    tiny.drug(2, c.NATALIZUMAB, "2015-12-15", "2016-01-20")  # runs past observation end
    return tiny


@pytest.mark.parametrize(
    ("exit_", "expected"),
    [
        ("{type: observation_end}",
         [(1, "2015-01-01", "2015-12-31"), (2, "2015-12-15", "2015-12-31")]),
        ("{type: fixed_offset, offset_days: 30}",
         [(1, "2015-01-01", "2015-01-31"), (2, "2015-12-15", "2015-12-31")]),
        ("{type: fixed_offset, anchor: end, offset_days: 10}",
         [(1, "2015-01-01", "2015-02-09"), (2, "2015-12-15", "2015-12-31")]),
        ("{type: fixed_offset, offset_days: -1}", []),  # ends before it starts: dropped
        ("{type: drug_exposure_end, concept_set: he, gap_days: 30}",
         [(1, "2015-01-01", "2015-03-30"), (2, "2015-12-15", "2015-12-31")]),
        ("{type: drug_exposure_end, concept_set: he, gap_days: 29}",
         [(1, "2015-01-01", "2015-01-30"), (2, "2015-12-15", "2015-12-31")]),
        ("{type: drug_exposure_end, concept_set: he, gap_days: 32}",
         [(1, "2015-01-01", "2015-05-21"), (2, "2015-12-15", "2015-12-31")]),
        # Circe joins exposures within gap + offset days: all three form one era here
        ("{type: drug_exposure_end, concept_set: he, gap_days: 30, offset_days: 7}",
         [(1, "2015-01-01", "2015-05-28"), (2, "2015-12-15", "2015-12-31")]),
        ("{type: drug_exposure_end, concept_set: he, gap_days: 25, offset_days: 5}",
         [(1, "2015-01-01", "2015-04-04"), (2, "2015-12-15", "2015-12-31")]),
        ("{type: drug_exposure_end, concept_set: he, gap_days: 30, days_supply_override: 10}",
         [(1, "2015-01-01", "2015-01-11"), (2, "2015-12-15", "2015-12-25")]),
        ("{type: drug_exposure_end, concept_set: ms, gap_days: 30}",  # no exposure: op end
         [(1, "2015-01-01", "2015-12-31"), (2, "2015-12-15", "2015-12-31")]),
    ],
)  # fmt: skip
def test_exit_strategies(shared: Shared, exit_: str, expected: Rows) -> None:
    body = f"entry: {{events: [{{domain: drug, concept_set: he, first: true}}]}}\nexit: {exit_}"
    assert run(shared(_exit_cdm), defn(body)) == expected


def test_censoring_events_end_eras_early(build: Build) -> None:
    tiny = _exit_cdm()
    tiny.observation(1, c.MS_RELAPSE, "2014-12-01")  # before index: ignored
    tiny.observation(1, c.MS_RELAPSE, "2015-02-10")
    tiny.observation(1, c.MS_RELAPSE, "2015-02-05")  # the first after index wins
    tiny.death(2, "2015-12-15")  # the index day itself censors
    body = """
entry: {events: [{domain: drug, concept_set: he, first: true}]}
exit: {type: drug_exposure_end, concept_set: he, gap_days: 30}
censoring: [{domain: observation, concept_set: relapse}, {domain: death}]
"""
    assert run(build(tiny), defn(body)) == [
        (1, "2015-01-01", "2015-02-05"),
        (2, "2015-12-15", "2015-12-15"),
    ]


@pytest.mark.parametrize(
    ("pad", "expected"),
    [
        (0, [("2015-01-01", "2015-01-11"), ("2015-01-21", "2015-01-31"),
             ("2015-03-02", "2015-03-12")]),
        (9, [("2015-01-01", "2015-01-11"), ("2015-01-21", "2015-01-31"),
             ("2015-03-02", "2015-03-12")]),
        (10, [("2015-01-01", "2015-01-31"), ("2015-03-02", "2015-03-12")]),
        (30, [("2015-01-01", "2015-03-12")]),
    ],
)  # fmt: skip
def test_era_collapse_pad_days(build: Build, pad: int, expected: list[tuple[str, str]]) -> None:
    tiny = TinyCdm().person(1)
    for day in ("2015-01-01", "2015-01-21", "2015-03-02"):
        tiny.observation(1, c.MS_RELAPSE, day)
    body = f"""
entry: {{events: [{{domain: observation, concept_set: relapse}}], limit: all}}
expression_limit: all
exit: {{type: fixed_offset, offset_days: 10}}
collapse: {{pad_days: {pad}}}
"""
    assert run(build(tiny), defn(body)) == [(1, s, e) for s, e in expected]


def test_censor_window_clips_and_drops(build: Build) -> None:
    tiny = TinyCdm().person(1)
    for day in ("2014-12-20", "2015-01-21", "2015-03-02"):
        tiny.observation(1, c.MS_RELAPSE, day)
    body = """
entry: {events: [{domain: observation, concept_set: relapse}], limit: all}
expression_limit: all
exit: {type: fixed_offset, offset_days: 20}
censor_window: {start: 2015-01-05, end: 2015-02-01}
"""
    assert run(build(tiny), defn(body)) == [
        (1, "2015-01-05", "2015-01-09"),
        (1, "2015-01-21", "2015-02-01"),
    ]


# ---------------------------------------------------------------------- limits and attrition


def _limit_cdm() -> TinyCdm:
    tiny = TinyCdm()
    tiny.person(1)
    for day in ("2012-01-01", "2013-06-01", "2014-01-01"):
        tiny.drug(1, c.NATALIZUMAB, day, day)
    tiny.condition(1, c.RRMS, "2013-01-01")
    tiny.person(2, yob=1940)
    for day in ("2012-02-02", "2013-02-02"):
        tiny.drug(2, c.NATALIZUMAB, day, day)
    tiny.condition(2, c.RRMS, "2011-01-01")
    tiny.person(3)
    tiny.drug(3, c.NATALIZUMAB, "2012-03-03", "2012-03-03")
    return tiny


RULES = """
inclusion_rules:
  - name: MS diagnosis within a year before
    group:
      criteria: [{event: {domain: condition, concept_set: ms}, start_window: {start: -365, end: 0}}]
  - name: Younger than 70
    group: {demographics: [{age: {lt: 70}}]}
"""


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ("expression_limit: all", [(1, "2013-06-01"), (1, "2014-01-01")]),
        ("expression_limit: first", [(1, "2013-06-01")]),
        ("expression_limit: last", [(1, "2014-01-01")]),
        (
            "additional_criteria: {type: all}\nqualified_limit: first\nexpression_limit: all",
            [],
        ),  # the first event of each person is no longer kept after the rules
    ],
)
def test_expression_and_qualified_limits(
    shared: Shared, limits: str, expected: list[tuple[int, str]]
) -> None:
    body = f"""
entry: {{events: [{{domain: drug, concept_set: he}}], limit: all}}
{RULES}
{limits}
exit: {{type: fixed_offset, offset_days: 0}}
"""
    assert run(shared(_limit_cdm), defn(body)) == [(p, s, s) for p, s in expected]


def test_additional_criteria_then_qualified_limit(
    shared: Shared,
) -> None:
    body = """
entry: {events: [{domain: drug, concept_set: he}], limit: all}
additional_criteria:
  criteria: [{event: {domain: condition, concept_set: ms}, start_window: {start: -365, end: 0}}]
qualified_limit: first
exit: {type: fixed_offset, offset_days: 0}
"""
    # person 1: 2012 has no diagnosis in the year before; the first qualifying is 2013-06-01
    # person 2: 2012-02-02 is within a year and a month of the 2011 diagnosis? no (397 days)
    assert run(shared(_limit_cdm), defn(body)) == [(1, "2013-06-01", "2013-06-01")]


def test_attrition_is_cumulative_persons_and_records(
    shared: Shared,
) -> None:
    cdm = shared(_limit_cdm)
    text = defn(f"""
entry: {{events: [{{domain: drug, concept_set: he}}], limit: all}}
{RULES}
expression_limit: all
""")
    definition = CohortDefinition.from_yaml(text)
    attrition = compile_cohort(definition, cdm).attrition()
    # 6 drug events of 3 persons; 2 of person 1 have a diagnosis in the year before
    # (2013-06-01, 2014-01-01); person 2's are 397 and 763 days after the 2011 diagnosis
    assert attrition.to_dict("list") == {
        "rule": ["Qualifying entry events", "MS diagnosis within a year before", "Younger than 70"],
        "persons": [3, 1, 1],
        "records": [6, 2, 2],
    }
    want = Reference(cdm.path).attrition(definition)
    assert list(zip(attrition.persons, attrition.records, strict=True)) == want
    # both events end at the observation period end: one era after collapsing
    assert compile_cohort(definition, cdm).count() == {"persons": 1, "records": 1}


def test_attrition_of_a_definition_without_rules(shared: Shared) -> None:
    cdm = shared(_limit_cdm)
    text = defn("entry: {events: [{domain: drug, concept_set: he, first: true}]}")
    attrition = compile_cohort(CohortDefinition.from_yaml(text), cdm).attrition()
    assert attrition.to_dict("list") == {
        "rule": ["Qualifying entry events"], "persons": [3], "records": [3],
    }  # fmt: skip


def test_empty_cohort_counts_zero(build: Build) -> None:
    cdm = build(TinyCdm().person(1))
    compiled = compile_cohort(
        CohortDefinition.from_yaml(defn("entry: {events: [{domain: drug, concept_set: he}]}")),
        cdm,
    )
    assert compiled.count() == {"persons": 0, "records": 0}
    assert compiled.attrition().persons.tolist() == [0]
    assert compiled.to_pandas().empty


def test_to_sql_renders_each_dialect(build: Build) -> None:
    cdm = build(TinyCdm().person(1))
    body = defn(f"entry: {{events: [{{domain: drug, concept_set: he}}]}}\n{RULES}")
    compiled = compile_cohort(CohortDefinition.from_yaml(body), cdm)
    for dialect in ("duckdb", "postgres"):
        sql = compiled.to_sql(dialect)
        assert "concept_ancestor" in sql and "observation_period" in sql
    assert "INTERVAL '-365 DAY'" in compiled.to_sql("postgres")


def test_first_per_person_paths_agree(shared: Shared) -> None:
    """The portable "first" (min + row number, used off DuckDB) equals DuckDB's first()."""
    from clinnova_explore.cohort.events import EventSource

    cdm = shared(_entry_cdm)
    text = defn("entry: {events: [{domain: drug, concept_set: he, first: true}]}")
    definition = CohortDefinition.from_yaml(text)
    frames = []
    for backend in ("duckdb", "portable"):
        source = EventSource(definition, cdm, "t")
        source.backend = backend
        events = source.events(definition.entry.events[0])
        frames.append(events.order_by("person_id").execute().to_dict("records"))
    assert frames[0] == frames[1]
    assert [(r["person_id"], r["record_id"]) for r in frames[0]] == [
        (1, 1),
        (2, 3),
        (3, 5),
        (4, 40),
    ]
