"""Treatment pathways: hand-made CDMs, an independent day-by-day path builder, the demo federation.

The reference builder below works on a grid of days (which events are active on each day),
unlike the library, which cuts intervals at their start and end dates inside the database.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Mapping
from itertools import pairwise
from pathlib import Path

import duckdb
import holoviews as hv
import ibis
import pandas as pd
import pytest
import yaml

from clinnova_explore.analysis.incidence import CohortTable
from clinnova_explore.analysis.pathways import (
    NO_EVENT,
    EventRef,
    PathwaysResult,
    PathwaysSpec,
    pathways,
    person_paths,
)
from clinnova_explore.catalog import Catalog, DisclosurePolicy, Site
from clinnova_explore.cdm import concepts as c
from clinnova_explore.cdm.schema import create_cdm_tables
from clinnova_explore.cdm.vocabulary import descendants, write_vocabulary
from clinnova_explore.cohort.library import builtin_definition
from clinnova_explore.pipeline import BuildResult
from clinnova_explore.viz.pathways import sankey_edges

D = dt.date.fromisoformat
OPEN = DisclosurePolicy(min_cell_count=1, min_cohort_size=1)
Span = tuple[int, dt.date, dt.date]

# ---------------------------------------------------------------------- reference builder


def reference_paths(
    target: Iterable[Span],
    events: Mapping[str, Iterable[Span]],
    *,
    era_pad: int,
    combination_window: int,
    max_length: int,
    allow_repeats: bool,
) -> dict[int, str]:
    """Each person's path, computed on a grid of days."""
    window: dict[int, tuple[dt.date, dt.date]] = {}
    for pid, s, e in sorted(target):
        window.setdefault(pid, (s, e))
    one = dt.timedelta(days=1)
    # days each event covers, then gaps of at most era_pad days filled; era start per day
    era_start: dict[int, dict[str, dict[dt.date, dt.date]]] = {}
    for name, rows in events.items():
        covered: dict[int, set[dt.date]] = {}
        for pid, s, e in rows:
            if pid not in window or not window[pid][0] <= s <= window[pid][1]:
                continue
            e = min(max(e, s), window[pid][1])
            covered.setdefault(pid, set()).update(s + i * one for i in range((e - s).days + 1))
        for pid, day_set in covered.items():
            ordered = sorted(day_set)
            starts = {ordered[0]: ordered[0]}
            for prev, day in pairwise(ordered):
                gap = (day - prev).days - 1
                current = day if gap > era_pad else starts[prev]
                for i in range(1, gap + 1 if gap <= era_pad else 1):
                    starts[prev + i * one] = current
                starts[day] = current
            era_start.setdefault(pid, {})[name] = starts
    paths = {}
    for pid, by_event in era_start.items():
        days = sorted({d for starts in by_event.values() for d in starts})
        runs: list[list] = []  # [first day, last day, frozenset of events]
        for day in days:
            active = frozenset(n for n, starts in by_event.items() if day in starts)
            if runs and runs[-1][2] == active and (day - runs[-1][1]).days == 1:
                runs[-1][1] = day
            else:
                runs.append([day, day, active])
        steps: list[tuple[str, dt.date, dt.date]] = []
        for first, last, active in runs:
            if len(active) > 1 and (last - first).days + 1 < combination_window:
                latest = max(by_event[n][first] for n in active)
                active = frozenset(n for n in active if by_event[n][first] == latest)
            label = "+".join(sorted(active))
            gap = bool(steps) and (first - steps[-1][2]).days > 1
            if steps and steps[-1][0] == label and not (allow_repeats and gap):
                steps[-1] = (label, steps[-1][1], last)
            else:
                steps.append((label, first, last))
        paths[pid] = " > ".join(s[0] for s in steps[:max_length])
    return paths


def test_reference_builder_on_a_hand_example() -> None:
    """The reference itself, on a case worked out by hand."""
    a = [(1, D("2020-01-10"), D("2020-05-01")), (1, D("2020-06-15"), D("2020-07-01"))]
    b = [(1, D("2020-02-01"), D("2020-12-01"))]
    target = [(1, D("2020-01-01"), D("2022-12-31"))]
    got = reference_paths(
        target,
        {"A": a, "B": b},
        era_pad=30,
        combination_window=30,
        max_length=5,
        allow_repeats=False,
    )
    # A alone, A+B for 91 days, B alone, a 17-day overlap where A restarts (a switch to A), B
    assert got == {1: "A > A+B > B > A > B"}


# ---------------------------------------------------------------------- tiny CDMs


def tiny_site(
    path: Path,
    target: Iterable[Span],
    events: Mapping[str, Iterable[Span]],
    *,
    drugs: Iterable[tuple[int, int, str, str]] = (),
    site_id: str = "tiny",
    policy: DisclosurePolicy = OPEN,
) -> Site:
    """Target rows as cohort 1, event ``i`` as cohort ``10 + i``, optional drug exposures."""
    con = ibis.duckdb.connect(str(path))
    create_cdm_tables(con)
    write_vocabulary(con)
    con.disconnect()
    target = list(target)
    with duckdb.connect(str(path)) as db:
        for pid in sorted({pid for pid, _, _ in target}):
            db.execute(
                "insert into person (person_id, gender_concept_id, year_of_birth) values (?,?,?)",
                [pid, c.FEMALE, 1980],
            )
            db.execute(
                "insert into observation_period values (?, ?, '2010-01-01', '2030-12-31', 32817)",
                [pid, pid],
            )
        rows = [(1, *t) for t in target]
        rows += [(10 + i, *r) for i, spans in enumerate(events.values()) for r in spans]
        db.executemany("insert into cohort values (?, ?, ?, ?)", rows)
        for i, (pid, concept, start, end) in enumerate(drugs, 1):
            db.execute(
                "insert into drug_exposure (drug_exposure_id, person_id, drug_concept_id, "
                "drug_exposure_start_date, drug_exposure_end_date, drug_type_concept_id, "
                "drug_source_concept_id) values (?, ?, ?, ?, ?, 32817, 0)",
                [i, pid, concept, D(start), D(end)],
            )
    return Site(id=site_id, name=site_id, country="LU", location=str(path), policy=policy)


def library_paths(site: Site, n_events: int, **params: object) -> dict[int, str]:
    events = {name: CohortTable(10 + i) for i, name in enumerate("ABC"[:n_events])}
    spec = PathwaysSpec(target=CohortTable(1), events=events, **params)  # type: ignore[arg-type]
    df = person_paths(site, spec).to_pandas()
    return dict(zip(df.subject_id.astype(int), df.path, strict=True))


def spans(*rows: tuple[int, str, str]) -> list[Span]:
    return [(pid, D(s), D(e)) for pid, s, e in rows]


DEFAULTS = {"era_pad": 30, "combination_window": 30, "max_length": 5, "allow_repeats": False}


@pytest.mark.parametrize(
    ("events", "params", "expected"),
    [
        # combination: 122-day overlap -> A+B; a wider window turns it into a switch
        (
            {"A": [(1, "2020-01-01", "2020-06-30")], "B": [(1, "2020-03-01", "2020-12-31")]},
            {},
            "A > A+B > B",
        ),
        (
            {"A": [(1, "2020-01-01", "2020-06-30")], "B": [(1, "2020-03-01", "2020-12-31")]},
            {"combination_window": 200},
            "A > B",
        ),
        # pad: a 28-day gap continues the era with era_pad 30, splits it with era_pad 10
        ({"A": [(1, "2020-01-01", "2020-01-31"), (1, "2020-02-29", "2020-03-31")]}, {}, "A"),
        (
            {"A": [(1, "2020-01-01", "2020-01-31"), (1, "2020-02-29", "2020-03-31")]},
            {"era_pad": 10, "allow_repeats": True},
            "A > A",
        ),
        (
            {"A": [(1, "2020-01-01", "2020-01-31"), (1, "2020-02-29", "2020-03-31")]},
            {"era_pad": 10},
            "A",
        ),
        # repeats that are not consecutive stay; max length cuts the path
        (
            {
                "A": [(1, "2020-01-01", "2020-02-01"), (1, "2020-09-01", "2020-10-01")],
                "B": [(1, "2020-04-01", "2020-05-01")],
                "C": [(1, "2020-06-01", "2020-07-01")],
            },
            {},
            "A > B > C > A",
        ),
        (
            {
                "A": [(1, "2020-01-01", "2020-02-01"), (1, "2020-09-01", "2020-10-01")],
                "B": [(1, "2020-04-01", "2020-05-01")],
                "C": [(1, "2020-06-01", "2020-07-01")],
            },
            {"max_length": 2},
            "A > B",
        ),
        # events before the target era are ignored; one running past its end is cut
        (
            {"A": [(1, "2019-06-01", "2020-03-01")], "B": [(1, "2021-12-01", "2023-06-01")]},
            {},
            "B",
        ),
    ],
    ids=[
        "combination",
        "window",
        "pad-joins",
        "pad-splits-repeat",
        "pad-splits",
        "repeats",
        "max-length",
        "target-window",
    ],
)
def test_hand_made_paths(
    tmp_path: Path, events: dict[str, list], params: dict, expected: str
) -> None:
    target = spans((1, "2020-01-01", "2022-12-31"))
    site = tiny_site(tmp_path / "p.duckdb", target, {k: spans(*v) for k, v in events.items()})
    got = library_paths(site, len(events), **{**DEFAULTS, **params})
    ref = reference_paths(
        target, {k: spans(*v) for k, v in events.items()}, **{**DEFAULTS, **params}
    )
    assert got == ref == {1: expected}


def random_federation(seed: int, persons: int = 60) -> tuple[list[Span], dict[str, list[Span]]]:
    rng = random.Random(seed)
    base = D("2020-01-01")
    target: list[Span] = []
    events: dict[str, list[Span]] = {"A": [], "B": [], "C": []}
    for pid in range(1, persons + 1):
        start = base + dt.timedelta(days=rng.randint(0, 90))
        target.append((pid, start, start + dt.timedelta(days=rng.randint(200, 700))))
        if rng.random() < 0.2:  # a second, later target era (ignored: first era only)
            later = start + dt.timedelta(days=800)
            target.append((pid, later, later + dt.timedelta(days=100)))
        for name in events:
            for _ in range(rng.choice([0, 1, 1, 2, 3, 4])):
                s = base + dt.timedelta(days=rng.randint(-60, 700))
                events[name].append(
                    (pid, s, s + dt.timedelta(days=rng.choice([0, 5, 20, 40, 120])))
                )
    return target, events


@pytest.mark.parametrize("seed", [1, 2])
def test_library_equals_day_grid_reference(tmp_path: Path, seed: int) -> None:
    target, events = random_federation(seed)
    site = tiny_site(tmp_path / f"r{seed}.duckdb", target, events)
    grid = [
        {"era_pad": 0, "combination_window": 0, "max_length": 5, "allow_repeats": False},
        {"era_pad": 30, "combination_window": 30, "max_length": 5, "allow_repeats": False},
        {"era_pad": 7, "combination_window": 60, "max_length": 3, "allow_repeats": True},
        {"era_pad": 90, "combination_window": 10, "max_length": 10, "allow_repeats": True},
    ]
    seen: set[str] = set()
    for params in grid:
        ref = reference_paths(target, events, **params)  # type: ignore[arg-type]
        got = library_paths(site, 3, **params)
        assert got == ref, params
        seen.update(ref.values())
    steps = [p.split(" > ") for p in seen]
    assert any("+" in p for p in seen)  # combinations are covered
    assert any(a == b for s in steps for a, b in pairwise(s))  # repeats too
    assert any(len(s) == 5 for s in steps) and any(len(s) > 5 for s in steps)


def test_counts_no_event_and_percentages(tmp_path: Path) -> None:
    target, events = random_federation(3, persons=40)
    target.append((99, D("2020-01-01"), D("2020-12-31")))  # no events at all
    site = tiny_site(tmp_path / "n.duckdb", target, events)
    r = pathways(CohortTable(1), {n: CohortTable(10 + i) for i, n in enumerate("ABC")}, [site])
    ref = pd.Series(reference_paths(target, events, **DEFAULTS)).value_counts()  # type: ignore[arg-type]
    s = r.paths()
    got = dict(zip(s.path, s.persons, strict=True))
    assert got.pop(NO_EVENT) == 41 - ref.sum() > 0
    assert got == ref.to_dict()
    assert s.pct.sum() == pytest.approx(100.0)
    assert s.pct.iloc[0] == pytest.approx(100 * s.persons.iloc[0] / 41)
    assert r.target_persons == 41
    step_cols = [col for col in s.columns if col.startswith("step")]
    for _, one in s[s.path != NO_EVENT].iterrows():
        assert " > ".join(one[step_cols].dropna()) == one.path


def test_concept_set_events_use_descendants(tmp_path: Path) -> None:
    target = spans((1, "2020-01-01", "2022-12-31"), (2, "2020-01-01", "2022-12-31"))
    drugs = [
        (1, c.INTERFERON_BETA_1A, "2020-02-01", "2020-08-01"),
        (1, c.NATALIZUMAB, "2020-09-01", "2021-03-01"),
        (2, c.FINGOLIMOD, "2020-02-01", "2020-04-01"),
        (2, c.OCRELIZUMAB, "2020-04-15", "2020-04-15"),  # same class, 13 days later: one era
        (2, c.METHOTREXATE, "2020-03-01", "2020-06-01"),  # not an MS drug
    ]
    site = tiny_site(tmp_path / "d.duckdb", target, {}, drugs=drugs)
    events: dict[str, EventRef] = {
        "platform": c.MS_DMT_PLATFORM,
        "high efficacy": [c.MS_DMT_HIGH_EFFICACY],
    }
    assert c.NATALIZUMAB in descendants(c.MS_DMT_HIGH_EFFICACY)
    r = pathways(CohortTable(1), events, [site])
    got = dict(zip(r.paths().path, r.paths().persons, strict=True))
    assert got == {"platform > high efficacy": 1, "high efficacy": 1, NO_EVENT: 0}


def test_invalid_parameters_are_explained(tmp_path: Path) -> None:
    site = tiny_site(tmp_path / "x.duckdb", spans((1, "2020-01-01", "2020-12-31")), {})
    with pytest.raises(ValueError, match="event name"):
        pathways(CohortTable(1), {"A+B": 1}, [site])
    with pytest.raises(ValueError, match="max_length"):
        pathways(CohortTable(1), {"A": 1}, [site], max_length=0)
    with pytest.raises(TypeError, match="drug concept id"):
        pathways(CohortTable(1), {"A": "natalizumab"}, [site])  # type: ignore[dict-item]


# ---------------------------------------------------------------------- demo federation

MS_DMT = {
    "interferon": c.INTERFERON_BETA_1A,
    "glatiramer": c.GLATIRAMER,
    "teriflunomide": c.TERIFLUNOMIDE,
    "dimethyl fumarate": c.DIMETHYL_FUMARATE,
    "fingolimod": c.FINGOLIMOD,
    "natalizumab": c.NATALIZUMAB,
    "ocrelizumab": c.OCRELIZUMAB,
}


def open_catalog(build: BuildResult, tmp_path: Path, **policy: int) -> Catalog:
    raw = yaml.safe_load(build.catalog_path.read_text(encoding="utf-8"))
    for site in raw["sites"]:
        site["location"] = str((build.catalog_path.parent / site["location"]).resolve())
        site["policy"] = {**site.get("policy", {}), **policy}
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return Catalog.load(path)


@pytest.fixture(scope="module")
def open_cat(small_build: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return open_catalog(
        small_build, tmp_path_factory.mktemp("pw"), min_cell_count=1, min_cohort_size=1
    )


def test_demo_site_matches_reference(open_cat: Catalog) -> None:
    site = open_cat.site("basel")
    ms = builtin_definition("ms_diagnosis")
    from clinnova_explore.cohort.compile import compile_cohort

    cohort = compile_cohort(ms, site).cohort.to_pandas()
    target = [
        (
            int(r.subject_id),
            pd.Timestamp(r.cohort_start_date).date(),
            pd.Timestamp(r.cohort_end_date).date(),
        )
        for r in cohort.itertuples()
    ]
    with duckdb.connect(site.resolved_location(), read_only=True) as db:
        drugs = db.sql(
            "select person_id, drug_concept_id, drug_exposure_start_date s, "
            "coalesce(drug_exposure_end_date, drug_exposure_start_date) e from drug_exposure"
        ).df()
    events = {
        name: [
            (int(r.person_id), pd.Timestamp(r.s).date(), pd.Timestamp(r.e).date())
            for r in drugs[drugs.drug_concept_id.isin(descendants(cid))].itertuples()
        ]
        for name, cid in MS_DMT.items()
    }
    r = pathways(ms, MS_DMT, [site])
    ref = pd.Series(reference_paths(target, events, **DEFAULTS)).value_counts()  # type: ignore[arg-type]
    got = r.paths().set_index("path").persons
    assert got.pop(NO_EVENT) == len(cohort) - ref.sum()
    assert got.sort_index().to_dict() == ref.sort_index().to_dict()
    assert len(ref) > 3 and any(" > " in p for p in ref.index)


@pytest.fixture(scope="module")
def federated(open_cat: Catalog) -> PathwaysResult:
    return pathways(builtin_definition("ms_diagnosis"), MS_DMT, open_cat)


def test_pooled_equals_federated(open_cat: Catalog, federated: PathwaysResult) -> None:
    pooled = pathways(
        builtin_definition("ms_diagnosis"), MS_DMT, open_cat, mode="pooled", transport="json"
    )
    f = federated.paths().set_index("path")
    p = pooled.paths().set_index("path")
    assert set(federated.summary.site) == {"overall", *open_cat.site_ids}
    assert set(pooled.summary.site) == {"overall"}
    assert f.persons.sort_index().to_dict() == p.persons.sort_index().to_dict()
    pd.testing.assert_series_equal(f.pct.sort_index(), p.pct.sort_index(), rtol=1e-12)
    assert federated.target_persons == pooled.target_persons
    sites = federated.summary[federated.summary.site != "overall"]
    assert sites.groupby("path").persons.sum().to_dict() == f.persons.sort_index().to_dict()


def test_suppression_by_policy_and_parameter(
    small_build: BuildResult, open_cat: Catalog, federated: PathwaysResult
) -> None:
    ms = builtin_definition("ms_diagnosis")
    opened = federated.summary
    strict = pathways(ms, MS_DMT, Catalog.load(small_build.catalog_path))
    merged = opened.merge(strict.summary, on=["site", "path"], suffixes=("", "_strict"))
    assert len(merged) == len(opened) == len(strict.summary)
    small = merged.site.ne("overall") & merged.persons.between(1, 4)
    assert small.any()
    assert merged.persons_strict[small].isna().all() and merged.suppressed_strict[small].all()
    kept = ~merged.suppressed_strict
    assert (merged.persons[kept] == merged.persons_strict[kept]).all()
    assert any("paths" in cell for cell in strict.provenance.suppressed)
    two = [open_cat.site("basel"), open_cat.site("homburg")]
    over = pathways(ms, MS_DMT, two, min_cell_count=10).paths()
    low = over.persons.isna()
    assert low.any() and over.suppressed[low].all()
    shown = over.persons.dropna()
    assert ((shown >= 10) | (shown == 0)).all()


def test_each_parameter_changes_the_paths(tmp_path: Path) -> None:
    target, events = random_federation(4)
    site = tiny_site(tmp_path / "e.duckdb", target, events)
    refs = {n: CohortTable(10 + i) for i, n in enumerate("ABC")}

    def table(**kw: object) -> dict[str, int]:
        r = pathways(CohortTable(1), refs, [site], **kw)  # type: ignore[arg-type]
        return dict(zip(r.paths().path, r.paths().persons, strict=True))

    base = table()
    for params in ({"era_pad": 0}, {"combination_window": 0}, {"allow_repeats": True}):
        changed = table(**params)
        ref = pd.Series(reference_paths(target, events, **{**DEFAULTS, **params})).value_counts()  # type: ignore[arg-type]
        assert (
            changed != base and {k: v for k, v in changed.items() if k != NO_EVENT} == ref.to_dict()
        )
    short = table(max_length=1)
    assert {len(p.split(" > ")) for p in short} == {1} != {len(p.split(" > ")) for p in base}
    assert sum(short.values()) == sum(base.values())
    capped = table(min_cell_count=3)
    assert all(v is pd.NA or v >= 3 or v == 0 for v in capped.values())
    assert any(v is pd.NA for v in capped.values())


def test_result_plot_and_html(federated: PathwaysResult) -> None:
    r = federated
    plot = r.plot()
    assert isinstance(plot, hv.Sankey)
    hv.render(plot, backend="bokeh")
    edges = sankey_edges(r.paths())
    first = r.paths().dropna(subset=["step1"])
    first = first[first.persons.notna()]
    from_first = edges[edges.source.str.startswith("1. ")]
    assert from_first.persons.sum() == first.persons.sum()
    onward = from_first[~from_first.target.str.endswith(". end")].persons.sum()
    assert onward == first[first.step2.notna()].persons.sum()
    assert "Provenance" in r._repr_html_()
    assert set(r.provenance.definition_hashes) == {"target"}
    basel = r.paths("basel")
    assert basel.pct.sum() == pytest.approx(100.0) or basel.suppressed.any()
