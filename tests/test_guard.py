"""The differencing guard: a cohort one person away from a released one is refused.

Person sets are real (drawn ids, real TableSites, cohorts compiled on the 800-person
federation's DuckDB files); the guard persists to a real directory.
"""

from __future__ import annotations

import time  # process CPU time: the check's own cost, whatever else the machine runs
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pytest

from clinnova_explore.analysis.characterize import CharacterizeSpec
from clinnova_explore.analysis.incidence import IncidenceSpec
from clinnova_explore.analysis.pathways import PathwaysSpec
from clinnova_explore.analysis.payload import Payload
from clinnova_explore.analysis.survival.presets import comparison
from clinnova_explore.catalog import Catalog, DisclosurePolicy
from clinnova_explore.cdm import concepts as c
from clinnova_explore.cohort import builtin_definition, compile_cohort
from clinnova_explore.cohort.model import ConceptSet
from clinnova_explore.federated.guard import (
    DIFFERENCING,
    DifferencingGuard,
    cohort_persons,
    person_set,
)
from clinnova_explore.federated.protocol import SiteRequest
from clinnova_explore.federated.runtime import SiteRuntime
from clinnova_explore.federated.steps import CountSpec, CountStep
from clinnova_explore.federated.table_site import TableSite
from clinnova_explore.pipeline import BuildResult

POLICY = DisclosurePolicy()  # min_cell_count 5, guard on
RNG = np.random.default_rng(20261129)


def _cohort(n: int, high: int = 10_000_000) -> np.ndarray:
    return RNG.choice(high, size=n, replace=False).astype(np.int64)


def test_the_classic_attack_is_refused() -> None:
    guard = DifferencingGuard("basel", None)
    a = _cohort(300)
    assert guard.check([a], POLICY) is None
    guard.record([a])
    for removed in (1, 2, 4):  # A minus one (or a few) persons: refused
        assert guard.check([a[removed:]], POLICY) == DIFFERENCING
    added = np.r_[a, [10_000_001, 10_000_002]]
    assert guard.check([added], POLICY) == DIFFERENCING
    swapped = np.r_[a[1:], [10_000_003]]  # same size, one person exchanged: difference 2
    assert guard.check([swapped], POLICY) == DIFFERENCING
    assert guard.check([a[5:]], POLICY) is None  # 5 persons apart: min_cell_count reached
    assert guard.check([a[::-1].copy()], POLICY) is None  # the same set, in any order
    assert guard.check([_cohort(300, 5_000_000) + 20_000_000], POLICY) is None  # disjoint


def test_identical_reruns_and_far_apart_cohorts_pass() -> None:
    guard = DifferencingGuard("basel", None)
    a, b = _cohort(500), _cohort(400)
    for _ in range(3):  # e.g. the Newton rounds of one model
        assert guard.check([a], POLICY) is None
        guard.record([a])
    assert len(guard) == 1
    assert guard.check([b], POLICY) is None
    guard.record([b])
    assert guard.check([np.r_[a[:250], b[:250]]], POLICY) is None
    assert len(guard) == 2


def test_two_cohorts_of_one_request_are_compared() -> None:
    guard = DifferencingGuard("basel", None)
    a = _cohort(120)
    assert guard.check([a, a[2:]], POLICY) == DIFFERENCING  # e.g. target vs comparator
    assert guard.check([a, a[60:]], POLICY) is None
    assert len(guard) == 0  # checking remembers nothing


def test_an_empty_cohort_is_never_compared() -> None:
    guard = DifferencingGuard("basel", None)
    guard.record([np.array([], dtype=np.int64)])
    assert len(guard) == 0
    assert guard.check([np.array([1, 2, 3])], POLICY) is None


def test_the_policy_switches_it_off() -> None:
    guard = DifferencingGuard("basel", None)
    a = _cohort(50)
    guard.record([a])
    off = POLICY.model_copy(update={"differencing_guard": False})
    assert guard.check([a[1:]], off) is None
    assert guard.check([a[1:]], DisclosurePolicy(min_cell_count=1, min_cohort_size=1)) is None
    assert guard.check([a[1:]], DisclosurePolicy(min_cell_count=2)) == DIFFERENCING
    assert guard.check([a[2:]], DisclosurePolicy(min_cell_count=2)) is None


def test_a_restarted_site_remembers(tmp_path: Path) -> None:
    where = tmp_path / "audit" / "basel.guard"
    a, b = _cohort(1000), _cohort(800)
    first = DifferencingGuard("basel", where)
    first.record([a, b])
    first.record([a])
    files = sorted(p.name for p in where.iterdir())
    assert len(files) == 2 and all(f.endswith(".npy") for f in files)
    assert {f.split("-")[0] for f in files} == {"1000", "800"}
    again = DifferencingGuard("basel", where)  # a new process, the same directory
    assert len(again) == 2
    assert again.check([a[1:]], POLICY) == DIFFERENCING
    assert again.check([b[:-3]], POLICY) == DIFFERENCING
    assert again.check([a], POLICY) is None
    stored = {len(x): x for x in (np.load(where / f) for f in files)}
    assert np.array_equal(stored[1000], np.sort(a)) and np.array_equal(stored[800], np.sort(b))
    again.forget()
    assert list(where.iterdir()) == []
    assert DifferencingGuard("basel", where).check([a[1:]], POLICY) is None


def test_two_processes_of_one_site_share_what_was_released(tmp_path: Path) -> None:
    serving, cli = DifferencingGuard("basel", tmp_path), DifferencingGuard("basel", tmp_path)
    a = _cohort(64)
    serving.record([a])
    assert cli.check([a[:-1]], POLICY) == DIFFERENCING  # recorded after cli was made


def test_two_hundred_thousand_persons_are_checked_quickly(tmp_path: Path) -> None:
    guard = DifferencingGuard("big", tmp_path / "guard")
    base = _cohort(200_000, 50_000_000)
    released = [base[i * 1000 :] for i in range(10)]  # ten nested cohorts, 1000 apart
    released.append(_cohort(200_002, 50_000_000))
    start = time.process_time()
    guard.record(released)
    recorded = time.process_time() - start
    near = np.r_[base[3000:], [60_000_000]]  # 197,001 persons: 1 more than released[3]
    start = time.process_time()
    assert guard.check([near], POLICY) == DIFFERENCING
    assert guard.check([base[3000:]], POLICY) is None  # identical to released[3]
    assert guard.check([base[3500:]], POLICY) is None  # 500 from its neighbours
    checked = time.process_time() - start
    assert recorded < 5.0 and checked < 3.0, (recorded, checked)


def test_person_set_handles_any_id_column() -> None:
    assert person_set(pd.Series([3, 1, None, 3], dtype="Int64")).tolist() == [1, 3]
    assert person_set(pd.Series([2.0, 1.0])).tolist() == [1, 2]
    text = person_set(pd.Series(["p-1", "p-2", "p-1"]))
    assert len(text) == 2 and text.dtype == np.int64
    assert np.array_equal(text, person_set(["p-2", "p-1"]))


# ---------------------------------------------------------------------- cohort_persons


def test_cohort_persons_of_a_table_site_follow_its_transforms() -> None:
    df = pd.DataFrame({"person_id": np.arange(100, 160), "age": np.arange(60) % 7})
    site = TableSite("a", POLICY, df)
    (persons,) = cohort_persons(site, None, None, None)
    assert persons.tolist() == list(range(100, 160))
    older = site.with_transform(lambda d: d[d["age"] > 0], "age > 0")
    (kept,) = cohort_persons(site, None, None, older)
    assert kept.tolist() == df.loc[df["age"] > 0, "person_id"].tolist()
    guard = DifferencingGuard("a", None)
    guard.record([persons])
    assert guard.check([kept], POLICY) is None  # 9 persons dropped: far enough
    one_out = site.with_transform(lambda d: d.iloc[1:], "drop one")
    assert guard.check(cohort_persons(site, None, None, one_out), POLICY) == DIFFERENCING


def test_cohort_persons_without_ids_are_row_positions() -> None:
    site = TableSite("a", POLICY, pd.DataFrame({"t": np.arange(40.0), "e": 1}))
    (rows,) = cohort_persons(site, None, None, None)
    assert rows.tolist() == list(range(40))


def test_cohort_persons_of_a_lazy_table_are_computed_in_its_database() -> None:
    con = ibis.duckdb.connect()
    df = pd.DataFrame({"subject_id": [5, 5, 9, 11], "x": [1, 2, 3, 4]})
    site = TableSite("a", POLICY, con.create_table("rows", df))
    (persons,) = cohort_persons(site, None, None, site)
    assert persons.tolist() == [5, 9, 11]
    site.release()
    con.disconnect()


@pytest.fixture(scope="module")
def catalog(small_build: BuildResult) -> Catalog:
    return Catalog.load(small_build.catalog_path)


def test_cohort_persons_on_a_cdm_are_the_cohorts_subjects(catalog: Catalog) -> None:
    site = catalog.site("basel")
    target = builtin_definition("ms_high_efficacy_start")
    comparator = builtin_definition("ms_platform_start")
    expected = {
        name: set(compile_cohort(d, site).cohort.to_pandas()["subject_id"].astype(int))
        for name, d in (("t", target), ("c", comparator))
    }
    (persons,) = cohort_persons(site, None, target, None)
    assert set(persons.tolist()) == expected["t"] and len(persons) == len(expected["t"])
    spec = CharacterizeSpec(target=target, comparator=comparator)
    both = cohort_persons(site, None, spec, None)
    assert [set(p.tolist()) for p in both] == [expected["t"], expected["c"]]
    assert cohort_persons(site, None, "no cohorts here", None) == []
    # outcome and event cohorts are what happens to the population: not compared
    relapse = builtin_definition("ms_relapse")
    (only_target,) = cohort_persons(site, None, IncidenceSpec(target, relapse), None)
    assert set(only_target.tolist()) == expected["t"]
    events = {"natalizumab": ConceptSet(include=(c.NATALIZUMAB,))}
    pathway = PathwaysSpec(comparator, events)  # type: ignore[arg-type]
    assert [set(p.tolist()) for p in cohort_persons(site, None, pathway, None)] == [expected["c"]]
    tte = comparison("ms_high_efficacy_vs_platform")
    roles = tte.definitions()
    arms = cohort_persons(site, None, tte, None)
    assert [len(p) for p in arms] == [
        compile_cohort(roles[r], site).cohort.to_pandas()["subject_id"].nunique()
        for r in ("target", "comparator")
    ]


def test_a_refusal_names_the_rule_and_the_site_never_the_count() -> None:
    df = pd.DataFrame({"person_id": np.arange(37), "arm": np.arange(37) % 2})
    guard = DifferencingGuard("homburg", None)
    everyone, all_but_one = TableSite("homburg", POLICY, df), TableSite("homburg", POLICY, df[1:])
    first = SiteRuntime(everyone, guard=guard)
    request = SiteRequest("release", "tester", CountStep(), CountSpec(by=("arm",)))
    released = Payload.from_arrow(first.execute(request).data)
    assert released.refused is None and int(released.tables["counts"]["persons"].sum()) == 37
    minus_one = SiteRuntime(all_but_one, guard=guard)
    response = minus_one.execute(request)
    refused = Payload.from_arrow(response.data)
    assert (refused.site, refused.analysis, refused.refused) == ("homburg", "cohort", DIFFERENCING)
    assert dict(refused.tables) == {} and dict(refused.values) == {}
    text = Payload.to_json(refused).decode()
    assert "36" not in text and "37" not in text
