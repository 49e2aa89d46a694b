"""Cohort counts on the contract: pandas reference, pooled == federated, suppression, refusals."""

from __future__ import annotations

import holoviews as hv
import pandas as pd
import pytest

from clinnova_explore.analysis import CohortCountResult, count_cohort
from clinnova_explore.catalog import Catalog, DisclosurePolicy, Site
from clinnova_explore.cdm import concepts as C
from clinnova_explore.cohort import CohortDefinition
from clinnova_explore.pipeline import BuildResult

# MS diagnosis (first in history, observed for 30 days after it), aged 25-45, female
FIRST_MS = CohortDefinition.from_yaml(
    f"""
name: First MS diagnosis, women 25-45
concept_sets:
  ms: {{include: [{{concept_id: {C.MULTIPLE_SCLEROSIS}, descendants: true}}]}}
entry:
  events: [{{domain: condition, concept_set: ms, first: true}}]
  observation: {{prior_days: 0, post_days: 30}}
  limit: first
inclusion_rules:
  - name: Aged 25-45 at index
    group: {{type: all, demographics: [{{age: {{gte: 25, lte: 45}}}}]}}
  - name: Female
    group: {{type: all, demographics: [{{sex: [{C.FEMALE}]}}]}}
"""
)

# every MS drug exposure after an MS diagnosis: several records per person
MS_DRUGS = CohortDefinition.from_yaml(
    f"""
name: MS DMT exposures after diagnosis
concept_sets:
  ms: {{include: [{C.MULTIPLE_SCLEROSIS}]}}
  dmt: {{include: [{C.MS_DMT}]}}
entry:
  events: [{{domain: drug, concept_set: dmt}}]
  limit: all
qualified_limit: all
expression_limit: all
inclusion_rules:
  - name: MS diagnosis before
    group:
      type: all
      criteria:
        - event: {{domain: condition, concept_set: ms}}
          occurrence: {{type: at_least, count: 1}}
          start_window: {{start: null, end: 0}}
  - name: Aged 40 or more
    group: {{type: all, demographics: [{{age: {{gte: 40}}}}]}}
exit: {{type: fixed_offset, anchor: start, offset_days: 30}}
"""
)


def catalog_copy(
    small_build: BuildResult, name: str, policies: dict[str, DisclosurePolicy]
) -> Catalog:
    """The build's catalog with some sites' policies replaced, written next to the original.

    The copy shares the original's audit folder, hence its differencing guard's memory: a
    policy that does not set ``differencing_guard`` gets it off, as the build's own catalog
    has it (see ``tests/conftest.py``).
    """
    original = Catalog.load(small_build.catalog_path)

    def unguarded(policy: DisclosurePolicy) -> DisclosurePolicy:
        if "differencing_guard" in policy.model_fields_set:
            return policy
        return policy.model_copy(update={"differencing_guard": False})

    sites = tuple(
        s.model_copy(update={"policy": unguarded(policies.get(s.id, policies.get("*", s.policy)))})
        for s in original
    )
    path = small_build.catalog_path.parent / name
    path.write_text(Catalog(name=original.name, sites=sites).to_yaml(), encoding="utf-8")
    return Catalog.load(path)


EXACT = DisclosurePolicy(min_cell_count=1, min_cohort_size=1)


@pytest.fixture(scope="module")
def exact(small_build: BuildResult) -> Catalog:
    return catalog_copy(small_build, "catalog_counts_exact.yaml", {"*": EXACT})


@pytest.fixture(scope="module")
def default(small_build: BuildResult) -> Catalog:
    return Catalog.load(small_build.catalog_path)


@pytest.fixture(scope="module")
def first_ms(exact: Catalog) -> CohortCountResult:
    return count_cohort(FIRST_MS, exact)


def pandas_first_ms(site: Site) -> list[tuple[int, int]]:
    """Attrition of FIRST_MS at one site, computed independently with pandas."""
    ancestry = site.table("concept_ancestor").to_pandas()
    ms = set(
        ancestry.loc[ancestry.ancestor_concept_id == C.MULTIPLE_SCLEROSIS, "descendant_concept_id"]
    )
    cond = site.table("condition_occurrence").to_pandas()
    cond = cond[cond.condition_concept_id.isin(ms)]
    first = cond.sort_values(["person_id", "condition_start_date", "condition_occurrence_id"])
    first = first.groupby("person_id").head(1)  # first in history, before any window
    op = site.table("observation_period").to_pandas()
    both = first.merge(op, on="person_id")
    start = pd.to_datetime(both.condition_start_date)
    inside = (start >= pd.to_datetime(both.observation_period_start_date)) & (
        start + pd.Timedelta(days=30) <= pd.to_datetime(both.observation_period_end_date)
    )
    entry = both[inside].drop_duplicates("person_id")
    person = site.table("person").to_pandas()
    entry = entry.merge(person[["person_id", "year_of_birth", "gender_concept_id"]], on="person_id")
    age = pd.to_datetime(entry.condition_start_date).dt.year - entry.year_of_birth
    aged = entry[(age >= 25) & (age <= 45)]
    women = aged[aged.gender_concept_id == C.FEMALE]
    return [(len(x), len(x)) for x in (entry, aged, women)]


def rows(frame: pd.DataFrame, site: str) -> list[tuple[int | None, int | None]]:
    part = frame[frame.site == site].sort_values("step")
    return [
        (None if pd.isna(p) else int(p), None if pd.isna(r) else int(r))
        for p, r in zip(part.persons, part.records, strict=True)
    ]


def test_counts_match_an_independent_pandas_computation(
    exact: Catalog, first_ms: CohortCountResult
) -> None:
    totals = [0, 0, 0]
    for site in exact:
        expected = pandas_first_ms(site)
        assert rows(first_ms.attrition, site.id) == expected
        summary = first_ms.summary.set_index("site").loc[site.id]
        assert (summary.persons, summary.records) == expected[-1]
        totals = [t + e[0] for t, e in zip(totals, expected, strict=True)]
    assert [p for p, _ in rows(first_ms.attrition, "overall")] == totals
    assert first_ms.overall()["persons"] == totals[-1] > 0
    assert totals[0] > totals[1] > totals[2]  # both rules remove someone
    assert list(first_ms.attrition.rule.unique()) == [
        "Qualifying entry events",
        "Aged 25-45 at index",
        "Female",
    ]
    assert list(first_ms.summary.columns) == ["site", "persons", "records", "suppressed", "refused"]
    assert first_ms.summary.site.tolist() == [*exact.site_ids, "overall"]


@pytest.mark.parametrize("defn", [FIRST_MS, MS_DRUGS], ids=["first_ms", "ms_drugs"])
def test_pooled_equals_federated(exact: Catalog, defn: CohortDefinition) -> None:
    federated = count_cohort(defn, exact)
    pooled = count_cohort(defn, exact, mode="pooled")
    assert pooled.summary.site.tolist() == ["overall"]
    assert pooled.attrition.site.unique().tolist() == ["overall"]
    overall = federated.summary[federated.summary.site == "overall"].reset_index(drop=True)
    pd.testing.assert_frame_equal(pooled.summary, overall)
    steps = federated.attrition[federated.attrition.site == "overall"].reset_index(drop=True)
    pd.testing.assert_frame_equal(pooled.attrition, steps)
    assert pooled.provenance.mode == "pooled" and federated.provenance.mode == "federated"
    assert pooled.provenance.definition_hashes == {defn.name: defn.definition_hash}
    if defn is MS_DRUGS:  # several records per person, and rules that remove some
        assert overall.records[0] > overall.persons[0] > 0
        assert steps.records.is_monotonic_decreasing and steps.records.iloc[-1] < steps.records[0]


def test_json_and_arrow_transports_give_identical_results(exact: Catalog) -> None:
    arrow = count_cohort(MS_DRUGS, exact, transport="arrow")
    json = count_cohort(MS_DRUGS, exact, transport="json")
    pd.testing.assert_frame_equal(arrow.summary, json.summary)
    pd.testing.assert_frame_equal(arrow.attrition, json.attrition)
    assert (arrow.provenance.transport, json.provenance.transport) == ("arrow", "json")


@pytest.mark.parametrize("strict", [False, True], ids=["default_policy", "min_cell_count_30"])
def test_small_cells_are_suppressed_and_marked(
    small_build: BuildResult, default: Catalog, first_ms: CohortCountResult, strict: bool
) -> None:
    catalog = default
    if strict:
        policies = {"*": DisclosurePolicy(min_cell_count=30, min_cohort_size=10)}
        catalog = catalog_copy(small_build, "catalog_counts_strict.yaml", policies)
    policy = catalog.sites[0].policy
    if not strict:
        assert (policy.min_cell_count, policy.min_cohort_size) == (5, 10)
    truth = first_ms
    shown = count_cohort(FIRST_MS, catalog)
    hidden = []
    for site in [*catalog.site_ids, "overall"]:
        for step, ((p, r), (sp, sr)) in enumerate(
            zip(rows(truth.attrition, site), rows(shown.attrition, site), strict=True)
        ):
            for which, exact_value, released in ((0, p, sp), (1, r, sr)):
                if site == "overall":  # NA when any site's part is, else the exact sum
                    parts = [rows(shown.attrition, s)[step][which] for s in catalog.site_ids]
                    small = None in parts
                else:
                    assert exact_value is not None
                    small = 0 < exact_value < policy.min_cell_count
                assert released == (None if small else exact_value), (site, step)
                if small:
                    hidden.append((site, step))
        summary = shown.summary.set_index("site").loc[site]
        final = rows(shown.attrition, site)[-1]
        assert (None if pd.isna(summary.persons) else summary.persons) == final[0]
        assert summary.suppressed == (final[0] is None)
    flagged = shown.attrition[shown.attrition.suppressed]
    assert sorted(set(zip(flagged.site, flagged.step, strict=True))) == sorted(set(hidden))
    sites = flagged[flagged.site != "overall"]
    labels = {
        f"{s}: attrition step={n}, rule={r}"
        for s, n, r in zip(sites.site, sites.step, sites.rule, strict=True)
    }
    per_site = shown.summary[shown.summary.site != "overall"]
    labels |= {f"{s}: counts" for s in per_site.site[per_site.suppressed]}
    assert sorted(shown.provenance.suppressed) == sorted(labels)
    assert bool(hidden) == strict  # cohorts of >= 10 persons leave no cell below 5
    if strict:
        assert ("luxembourg", 2) in hidden and ("overall", 2) in hidden


def test_an_empty_cohort_is_zero_not_a_refusal(default: Catalog) -> None:
    data = FIRST_MS.to_dict()
    data["concept_sets"] = {"ms": {"include": [C.COLECTOMY]}}  # a procedure, never a condition
    nobody = CohortDefinition.from_dict(data)
    result = count_cohort(nobody, default)
    assert result.summary.persons.tolist() == [0] * 6
    assert result.summary.refused.isna().all() and not result.provenance.refused


def test_refusals_name_the_rule_and_release_nothing(
    small_build: BuildResult, first_ms: CohortCountResult
) -> None:
    policies = {
        "*": EXACT,
        "basel": EXACT.model_copy(update={"allowed_analyses": ("characterize",)}),
        "homburg": EXACT.model_copy(update={"min_cohort_size": 10_000}),
    }
    mixed = catalog_copy(small_build, "catalog_counts_refusals.yaml", policies)
    truth = first_ms.summary.set_index("site")
    result = count_cohort(FIRST_MS, mixed)
    summary = result.summary.set_index("site")
    assert summary.refused.to_dict() == {
        "luxembourg": None,
        "strasbourg": None,
        "basel": "allowed_analyses",
        "freiburg": None,
        "homburg": "min_cohort_size",
        "overall": None,
    }
    assert summary.loc[["basel", "homburg"], "persons"].isna().all()
    assert dict(result.provenance.refused) == {
        "basel": "allowed_analyses",
        "homburg": "min_cohort_size",
    }
    answering = ["luxembourg", "strasbourg", "freiburg"]
    assert summary.loc["overall", "persons"] == truth.loc[answering, "persons"].sum()
    assert set(result.attrition.site) == {*answering, "overall"}
    # pooled mode takes the strictest policy, so the pooled site refuses as well
    pooled = count_cohort(FIRST_MS, mixed, mode="pooled")
    assert len(pooled.summary) == 1
    assert pooled.overall() == {
        "site": "overall",
        "persons": None,
        "records": None,
        "suppressed": False,
        "refused": "allowed_analyses",
    }
    assert pooled.attrition.empty


def test_plot_and_html(first_ms: CohortCountResult) -> None:
    bars = first_ms.plot()
    assert isinstance(bars, hv.Bars)
    per_site = first_ms.summary[first_ms.summary.site != "overall"]
    assert bars.dframe().set_index("site").persons.to_dict() == dict(
        zip(per_site.site, per_site.persons, strict=True)
    )
    html = first_ms._repr_html_()
    assert "First MS diagnosis, women 25-45" in html and FIRST_MS.definition_hash in html
    assert f"<td>{first_ms.overall()['persons']}</td>" in html


def test_plot_leaves_out_what_was_not_released(small_build: BuildResult) -> None:
    policies = {"*": EXACT, "basel": EXACT.model_copy(update={"min_cohort_size": 10_000})}
    result = count_cohort(FIRST_MS, catalog_copy(small_build, "catalog_counts_plot.yaml", policies))
    bars = result.plot()
    assert "basel" not in bars.dframe().site.tolist() and "basel" in bars.label
