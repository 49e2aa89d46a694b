"""The cohort dashboard's state without a browser: edits change the definition and the counts
exactly as the library (and hand-written SQL) say they should."""

from __future__ import annotations

import duckdb
import pandas as pd
import param
import pytest

from clinnova_explore.analysis.counts import count_cohort
from clinnova_explore.analysis.incidence import incidence
from clinnova_explore.catalog import Catalog
from clinnova_explore.cdm import concepts as c
from clinnova_explore.cdm.search import descendant_preview, search_concepts
from clinnova_explore.cohort import CohortDefinition, builtin_definition, compile_cohort
from clinnova_explore.pipeline import BuildResult
from clinnova_explore.viz import cohort_diseases as diseases
from clinnova_explore.viz import cohort_edits as edits
from clinnova_explore.viz.cohort_state import CohortState

HE = "MS, high-efficacy DMT start"
PLATFORM = "MS, platform DMT start"
DIAGNOSIS = "MS diagnosis"
TWO = ["basel", "freiburg"]


@pytest.fixture(scope="module")
def catalog(small_build: BuildResult) -> Catalog:
    return Catalog.load(small_build.catalog_path)


def _sql(cat: Catalog, site: str, query: str) -> list[tuple]:
    con = duckdb.connect(cat.site(site).resolved_location(), read_only=True)
    try:
        return con.sql(query).fetchall()
    finally:
        con.close()


def _persons(state: CohortState) -> dict[str, int]:
    return {r.site: int(r.persons) for r in state.site_counts().itertuples()}


def test_every_parameter_is_documented(catalog: Catalog) -> None:
    st = CohortState(catalog)
    undocumented = [n for n, p in st.param.objects().items() if n != "name" and not p.doc]
    assert not undocumented
    assert isinstance(st, param.Parameterized)


def test_disease_picks_starting_definitions(catalog: Catalog) -> None:
    st = CohortState(catalog)
    assert st.disease == "Multiple sclerosis"
    assert st.start_from == HE and st.comparator == PLATFORM and st.outcome == "MS relapse"
    assert set(st.param.start_from.objects) == {
        HE,
        PLATFORM,
        DIAGNOSIS,
        "MS relapse",
        "MS, first DMT high-efficacy",
        "MS, first DMT platform",
    }
    assert st.definition == builtin_definition("ms_high_efficacy_start")
    # the form shows the definition's values
    assert (st.entry_domain, st.prior_days, st.age_range) == ("drug", 365, (18, 60))
    assert st.criterion == "2. MS diagnosis on or before index [ms]"
    assert (st.window_start, st.window_end, st.occurrence_type, st.occurrence_count) == (
        None,
        0,
        "at_least",
        1,
    )
    st.disease = "Rheumatoid arthritis"
    assert st.definition == builtin_definition("ra_bdmard_start")
    assert st.comparator == "RA, conventional DMARD start"
    # no shipped RA outcome: the flare event becomes an every-occurrence outcome cohort
    assert st.outcome == "Rheumatoid arthritis flare (every occurrence)"
    assert (st.prior_days, st.age_range) == (365, (18, 120))
    st.disease = "Inflammatory bowel disease"
    assert st.definition == builtin_definition("ibd_advanced_start")
    assert set(st.param.start_from.objects) == {
        "IBD, advanced therapy start",
        "IBD hospitalization",
        "IBD surgery",
        "IBD, first advanced therapy anti-TNF",
        "IBD, first advanced therapy vedolizumab or ustekinumab",
    }
    st.start_from = "IBD surgery"
    assert st.definition == builtin_definition("ibd_surgery")
    assert st.entry_domain == "procedure"


def test_counts_and_attrition_equal_the_library(catalog: Catalog) -> None:
    st = CohortState(catalog, sites=TWO)
    direct = count_cohort(st.definition, [catalog.site(s) for s in TWO])
    pd.testing.assert_frame_equal(st.site_counts(), direct.summary)
    att = st.attrition()
    assert list(att.columns) == ["rule", *TWO, "overall"]
    assert att.rule.tolist() == [
        "Qualifying entry events",
        "Aged 18-60 at index",
        "MS diagnosis on or before index",
    ]
    for r in direct.attrition.itertuples():
        assert att.loc[att.rule == r.rule, r.site].iloc[0] == r.persons
    # cached: asking again does not recompute
    assert st.counts() is st.counts()
    st.mode = "pooled"
    pooled = st.site_counts()
    assert pooled.site.tolist() == ["overall"]
    assert pooled.persons.iloc[0] == direct.overall()["persons"]


FIRST_DMT = """
name: First MS DMT
concept_sets: {dmt: {include: [2000000301]}}
entry: {events: [{domain: drug, concept_set: dmt, first: true}]}
"""


def test_prior_observation_edit_matches_hand_written_sql(catalog: Catalog) -> None:
    sites = ["strasbourg", "basel"]
    st = CohortState(catalog, sites=sites, definition=CohortDefinition.from_yaml(FIRST_DMT))
    assert st.prior_days == 0 and st.entry_domain == "drug"

    def expected(site: str, days: int) -> int:
        ((n,),) = _sql(
            catalog,
            site,
            f"""
            with first_dmt as (
                select de.person_id, min(de.drug_exposure_start_date) as d
                from drug_exposure de
                join concept_ancestor ca on ca.descendant_concept_id = de.drug_concept_id
                where ca.ancestor_concept_id = {c.MS_DMT}
                group by de.person_id)
            select count(distinct f.person_id) from first_dmt f
            join observation_period op on op.person_id = f.person_id
                and f.d between op.observation_period_start_date
                            and op.observation_period_end_date
            where f.d - op.observation_period_start_date >= {days}""",
        )
        return int(n)

    seen = []
    for days in (0, 365, 730):
        st.prior_days = days
        assert st.definition.entry.observation.prior_days == days
        got = _persons(st)
        for s in sites:
            assert got[s] == expected(s, days)
        seen.append(got["overall"])
    assert seen[0] > seen[1] > seen[2] >= 20  # each requirement removes persons


def test_age_range_edits_the_age_rule(catalog: Catalog) -> None:
    st = CohortState(catalog, sites=TWO)
    before = _persons(st)
    st.age_range = (30, 60)
    rule = st.definition.inclusion_rules[0]
    assert rule.name == "Aged 30-60 at index"
    # the same definition written by hand
    text = builtin_definition("ms_high_efficacy_start").to_yaml()
    by_hand = CohortDefinition.from_yaml(
        text.replace("Aged 18-60", "Aged 30-60").replace("gte: 18", "gte: 30")
    )
    assert st.definition.definition_hash == by_hand.definition_hash
    after = _persons(st)
    for s in TWO:
        assert after[s] == compile_cohort(by_hand, catalog.site(s)).count()["persons"]
    assert after["overall"] < before["overall"]
    # a definition without an age rule gets one appended; the widest range adds nothing
    st.start_from = DIAGNOSIS
    assert st.age_range == edits.AGE_BOUNDS and not st.definition.inclusion_rules
    st.age_range = (40, 120)
    assert [r.name for r in st.definition.inclusion_rules] == ["Aged 40-120 at index"]
    with pytest.raises(ValueError, match="lower bound 50 is above"):
        edits.with_age_range(st.definition, 50, 40)


def test_criterion_window_and_count(catalog: Catalog) -> None:
    st = CohortState(catalog, sites=TWO, start_from=PLATFORM)
    keys = st.param.criterion.objects
    assert keys == [
        "2. MS diagnosis on or before index [ms]",
        "3. No high-efficacy DMT before index [high_efficacy_dmt]",
    ]
    st.criterion = keys[1]
    assert (st.window_start, st.window_end, st.occurrence_type, st.occurrence_count) == (
        None,
        -1,
        "exactly",
        0,
    )
    before = _persons(st)
    st.occurrence_type = "at_least"
    st.occurrence_count = 1  # now: at least one high-efficacy DMT before index
    crit = st.definition.inclusion_rules[2].group.criteria[0]
    assert (crit.occurrence.type, crit.occurrence.count) == ("at_least", 1)
    switched = _persons(st)
    entry = st.attrition().set_index("rule").loc["MS diagnosis on or before index"]
    # "none before" and "at least one before" split the persons remaining after rule 2
    for s in TWO:
        assert before[s] + switched[s] == entry[s]
    st.window_start = -365  # and only in the year before index
    assert st.definition.inclusion_rules[2].group.criteria[0].start_window.start == -365
    assert _persons(st)["overall"] <= switched["overall"]
    # editing rule 3 left rule 2 alone; switching back shows rule 2's values
    st.criterion = keys[0]
    assert (st.window_start, st.window_end, st.occurrence_count) == (None, 0, 1)
    # an impossible window is refused with the reason, and the form shows the definition again
    good = st.definition
    st.window_start = 10
    assert "window start (10) is after its end (0)" in st.edit_error
    assert st.definition == good and st.window_start is None
    st.window_start = -30
    assert st.edit_error == "" and st.definition != good


def test_entry_domain_edit(catalog: Catalog) -> None:
    st = CohortState(catalog, sites=["basel"], start_from=DIAGNOSIS)
    assert _persons(st)["basel"] > 0
    st.entry_domain = "observation"  # MS concepts are conditions: no observation matches
    assert st.definition.entry.events[0].domain == "observation"
    assert _persons(st)["basel"] == 0


def test_concept_set_add_remove_and_search(catalog: Catalog) -> None:
    st = CohortState(catalog, sites=TWO, start_from=DIAGNOSIS)
    assert st.concept_set == "ms"
    assert st.concept_set_items().concept_id.tolist() == [c.MULTIPLE_SCLEROSIS]
    all_ms = _persons(st)
    st.search_text = "relapsing remitting"
    pd.testing.assert_frame_equal(st.search_results(), search_concepts("relapsing remitting"))
    assert st.search_results().concept_id.iloc[0] == c.RRMS
    st.search_domain = "Drug"
    assert st.search_results().empty
    st.preview_concept = c.MULTIPLE_SCLEROSIS
    pd.testing.assert_frame_equal(st.preview(), descendant_preview(c.MULTIPLE_SCLEROSIS))
    st.add_concept(c.RRMS)
    st.remove_concept(c.MULTIPLE_SCLEROSIS)
    items = st.concept_set_items()
    assert items.concept_id.tolist() == [c.RRMS] and items.descendants.tolist() == [True]
    rrms = _persons(st)
    expected = CohortDefinition.from_yaml(
        """
        name: MS diagnosis
        description: >-
          Persons with a multiple sclerosis diagnosis (any subtype), indexed at their first
          diagnosis in history; the cohort ends with the observation period.
        concept_sets: {ms: {include: [2000000011]}}
        entry: {events: [{domain: condition, concept_set: ms, first: true}]}
        """
    )
    assert st.definition == expected
    for s in TWO:
        assert rrms[s] == compile_cohort(expected, catalog.site(s)).count()["persons"]
    assert 0 < rrms["overall"] < all_ms["overall"]
    # the last concept cannot go: the set would be empty
    st.remove_concept(c.RRMS)
    assert "at least one `include` concept" in st.edit_error
    assert st.definition == expected
    with pytest.raises(KeyError, match="not in the shipped vocabulary"):
        st.add_concept(42)


def test_heavy_results_on_demand_equal_direct_calls(catalog: Catalog) -> None:
    st = CohortState(catalog, sites=["basel"])
    assert st.computed() == []
    assert st.site_counts() is not None and st.computed() == ["counts"]
    inc = st.incidence()
    assert inc is not None
    direct = incidence(st.definition, builtin_definition("ms_relapse"), [catalog.site("basel")])
    pd.testing.assert_frame_equal(inc.summary, direct.summary)
    t1 = st.table1()
    assert t1 is not None
    assert dict(t1.provenance.definition_hashes) == {
        "target": st.definition.definition_hash,
        "comparator": builtin_definition("ms_platform_start").definition_hash,
    }
    assert t1.provenance.sites == ("basel",)
    assert not t1.smd.empty
    assert st.computed() == ["counts", "incidence", "table1"]
    classes = set(diseases.treatment_events("Multiple sclerosis", "drug class"))
    st.pathway_level = "ingredient"
    paths = st.pathways()
    assert paths is not None
    assert "overall" in set(paths.summary.site)
    assert int(paths.target_persons) == _persons(st)["basel"]
    steps = {step for p in paths.summary.path for step in p.split(" > ")}
    assert "natalizumab" in steps and not steps & classes
    assert paths.summary.path.str.contains(">").any()  # switches within the cohort era
    st.max_path_length = 1  # one step per path: no " > " left
    shorter = st.pathways()
    assert shorter is not None and not shorter.paths().path.str.contains(">").any()
    st.pathway_level = "drug class"
    by_class = st.pathways()
    assert by_class is not None
    steps = {step for p in by_class.summary.path for step in p.split(" > ")}
    assert steps == {"MS high-efficacy therapy", "(no event)"}
    # without sites nothing is computed
    st.sites = []
    assert st.site_counts().empty and st.attrition().empty
    assert st.counts() is st.table1() is st.incidence() is st.pathways() is None
