"""Incidence rates (CohortIncidence semantics): exact CIs, hand-made CDMs, the demo federation.

Every number is checked against an independent reference: published Poisson limits and
scipy's gamma quantiles for the CIs, statsmodels for Clopper-Pearson, hand-counted days on tiny
CDMs, and a day-by-day pandas computation from the raw CDM tables on the demo federation.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import duckdb
import holoviews as hv
import ibis
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from clinnova_explore.analysis.incidence import (
    CohortTable,
    IncidenceResult,
    TimeAtRisk,
    exact_poisson_ci,
    exact_proportion_ci,
    incidence,
)
from clinnova_explore.catalog import Catalog, DisclosurePolicy, Site
from clinnova_explore.cdm import concepts
from clinnova_explore.cdm.schema import create_cdm_tables
from clinnova_explore.cdm.vocabulary import descendants, write_vocabulary
from clinnova_explore.cohort.library import builtin_definition
from clinnova_explore.pipeline import BuildResult

D = dt.date.fromisoformat
OPEN = DisclosurePolicy(min_cell_count=1, min_cohort_size=1)

# ---------------------------------------------------------------------- tiny CDMs


def tiny_site(
    path: Path,
    persons: Iterable[tuple[int, int, int]],
    periods: Iterable[tuple[int, str, str]],
    cohorts: Iterable[tuple[int, int, str, str]],
    *,
    site_id: str = "tiny",
    policy: DisclosurePolicy = OPEN,
) -> Site:
    """A DuckDB CDM: persons (id, gender, birth year), observation periods, cohort rows."""
    con = ibis.duckdb.connect(str(path))
    create_cdm_tables(con)
    write_vocabulary(con)
    con.disconnect()
    with duckdb.connect(str(path)) as db:
        for pid, gender, year in persons:
            db.execute(
                "insert into person (person_id, gender_concept_id, year_of_birth) values (?,?,?)",
                [pid, gender, year],
            )
        for i, (pid, start, end) in enumerate(periods, 1):
            db.execute(
                "insert into observation_period values (?, ?, ?, ?, 32817)",
                [i, pid, D(start), D(end)],
            )
        for cid, pid, start, end in cohorts:
            db.execute("insert into cohort values (?, ?, ?, ?)", [cid, pid, D(start), D(end)])
    return Site(id=site_id, name=site_id, country="LU", location=str(path), policy=policy)


def row(result: IncidenceResult, site: str = "overall", **levels: object) -> pd.Series:
    s = result.summary
    stratum = " x ".join(levels) if levels else "overall"
    mask = (s.site == site) & (s.stratum == stratum)
    for key, value in levels.items():
        mask &= s[key] == value
    assert mask.sum() == 1, f"expected one row for {site} {levels}, got {mask.sum()}"
    return s[mask].iloc[0]


def days(a: str, b: str) -> int:
    return (D(b) - D(a)).days + 1


# ---------------------------------------------------------------------- exact intervals


def test_poisson_ci_matches_published_limits() -> None:
    # Garwood limits as tabulated (e.g. Ulm 1990; Daly 1992): 0 -> (0, 3.689), 1 -> (0.0253,
    # 5.572), 10 -> (4.795, 18.39), 100 -> (81.36, 121.63)
    lo, hi = exact_poisson_ci([0, 1, 10, 100])
    assert np.allclose(lo, [0.0, 0.02532, 4.795, 81.36], atol=5e-3)
    assert np.allclose(hi, [3.689, 5.572, 18.39, 121.63], atol=5e-3)


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.01])
def test_poisson_ci_equals_gamma_quantiles(alpha: float) -> None:
    k = np.arange(0, 60)
    lo, hi = exact_poisson_ci(k, alpha)
    ref_lo = np.where(k > 0, stats.gamma.ppf(alpha / 2, np.maximum(k, 1)), 0.0)
    ref_hi = stats.gamma.ppf(1 - alpha / 2, k + 1)
    np.testing.assert_allclose(lo, ref_lo, rtol=1e-10)
    np.testing.assert_allclose(hi, ref_hi, rtol=1e-10)


def test_poisson_ci_missing_count_is_nan() -> None:
    lo, hi = exact_poisson_ci(pd.array([3, None], dtype="Int64"))
    assert np.isfinite(lo[0]) and np.isnan(lo[1]) and np.isnan(hi[1])


def test_proportion_ci_equals_statsmodels_clopper_pearson() -> None:
    for x, n in [(0, 10), (3, 10), (10, 10), (1, 250), (47, 120)]:
        lo, hi = exact_proportion_ci([x], [n])
        ref = proportion_confint(x, n, alpha=0.05, method="beta")
        assert lo[0] == pytest.approx(ref[0], abs=1e-12)
        assert hi[0] == pytest.approx(ref[1], abs=1e-12)


# ---------------------------------------------------------------------- tiny hand-counted CDMs


@pytest.fixture
def tiny(tmp_path: Path) -> Site:
    persons = [(1, concepts.MALE, 1980), (2, concepts.FEMALE, 1990), (3, concepts.FEMALE, 2000)]
    periods = [(1, "2019-01-01", "2022-12-31"), (2, "2019-01-01", "2021-06-30")]
    periods += [(3, "2019-01-01", "2022-12-31")]
    cohorts = [
        (1, 1, "2020-06-01", "2021-06-01"),
        (1, 2, "2020-01-01", "2020-03-01"),  # two overlapping eras: one TAR
        (1, 2, "2020-02-01", "2020-12-31"),
        (1, 3, "2020-01-01", "2022-12-31"),
        (2, 1, "2020-07-01", "2020-07-01"),  # outcomes of person 1, 31 days apart
        (2, 1, "2020-08-01", "2020-08-01"),
        (2, 3, "2019-12-20", "2019-12-20"),  # before TAR: its clean window reaches into it
        (2, 2, "2021-01-01", "2021-01-01"),  # after TAR
    ]
    return tiny_site(tmp_path / "tiny.duckdb", persons, periods, cohorts)


def test_hand_counted_clean_window_and_year_split(tiny: Site) -> None:
    r = incidence(CohortTable(1), CohortTable(2), [tiny], clean_window=30)
    blocked_1 = days("2020-07-02", "2020-07-31") + days("2020-08-02", "2020-08-31")
    blocked_3 = days("2020-01-01", "2020-01-19")  # 2019-12-21 .. 2020-01-19, inside the TAR
    p1 = days("2020-06-01", "2021-06-01") - blocked_1
    p2 = days("2020-01-01", "2020-12-31")
    p3 = days("2020-01-01", "2022-12-31") - blocked_3
    o = row(r)
    assert (o.persons_at_risk, o.person_days, o.outcomes, o.person_outcomes) == (
        3,
        p1 + p2 + p3,
        2,
        1,
    )
    assert o.person_years == pytest.approx((p1 + p2 + p3) / 365.25, abs=1e-12)
    assert o.rate_p100py == pytest.approx(100 * 2 / ((p1 + p2 + p3) / 365.25), rel=1e-12)
    assert o.proportion_p100p == pytest.approx(100 / 3, rel=1e-12)
    y2020 = row(r, year=2020)
    assert y2020.person_days == days("2020-06-01", "2020-12-31") - blocked_1 + p2 + 366 - 19
    assert (y2020.persons_at_risk, y2020.outcomes) == (3, 2)
    assert row(r, year=2021).person_days == days("2021-01-01", "2021-06-01") + 365
    assert row(r, year=2022).persons_at_risk == 1
    assert row(r, sex="male").person_days == p1
    assert row(r, age_group="40-49").persons_at_risk == 1  # person 1: 2020 - 1980
    assert row(r, age_group="18-29").person_days == p3  # person 3: 2020 - 2000


def test_without_clean_window_nothing_is_blocked(tiny: Site) -> None:
    r = incidence(CohortTable(1), CohortTable(2), [tiny], clean_window=0)
    total = days("2020-06-01", "2021-06-01") + 366 + days("2020-01-01", "2022-12-31")
    assert row(r).person_days == total
    assert row(r).outcomes == 2


def test_whole_tar_inside_a_clean_window_is_not_at_risk(tmp_path: Path) -> None:
    site = tiny_site(
        tmp_path / "cw.duckdb",
        [(1, concepts.MALE, 1970), (2, concepts.MALE, 1970)],
        [(1, "2018-01-01", "2022-12-31"), (2, "2018-01-01", "2022-12-31")],
        [
            (1, 1, "2020-03-01", "2020-03-10"),
            (1, 2, "2020-03-01", "2020-03-10"),
            (2, 1, "2020-02-20", "2020-02-25"),  # person 1: blocks 02-21 .. 03-16, the whole TAR
            (2, 2, "2020-03-05", "2020-03-05"),  # person 2: counted, then blocks 03-06 .. 03-25
        ],
    )
    o = row(incidence(CohortTable(1), CohortTable(2), [site], clean_window=20))
    assert (o.persons_at_risk, o.person_days, o.person_outcomes, o.outcomes) == (1, 5, 1, 1)
    o = row(incidence(CohortTable(1), CohortTable(2), [site], clean_window=0))
    assert (o.persons_at_risk, o.person_days, o.person_outcomes, o.outcomes) == (2, 20, 1, 1)


def test_time_at_risk_anchors_offsets_and_observation_cap(tmp_path: Path) -> None:
    site = tiny_site(
        tmp_path / "tar.duckdb",
        [(1, concepts.FEMALE, 1980)],
        [(1, "2019-01-01", "2020-12-31")],
        [(1, 1, "2020-01-01", "2020-06-30"), (2, 1, "2020-12-01", "2020-12-01")],
    )
    tar = TimeAtRisk("start", 10, "start", 99)
    assert row(incidence(CohortTable(1), CohortTable(2), [site], tar=tar)).person_days == 90
    tar = TimeAtRisk("end", 1, "end", 365)  # 2020-07-01 .. capped at 2020-12-31
    r = incidence(CohortTable(1), CohortTable(2), [site], tar=tar)
    assert row(r).person_days == days("2020-07-01", "2020-12-31")
    assert row(r).outcomes == 1
    tar = TimeAtRisk("end", 200, "end", 300)  # starts after observation ends: capped to one day
    assert row(incidence(CohortTable(1), CohortTable(2), [site], tar=tar)).person_days == 1
    with pytest.raises(ValueError, match="start_anchor"):
        TimeAtRisk("middle")  # type: ignore[arg-type]


def test_refusal_and_bad_strata(tiny: Site, tmp_path: Path) -> None:
    strict = tiny.model_copy(update={"policy": DisclosurePolicy(min_cohort_size=50)})
    r = incidence(CohortTable(1), CohortTable(2), [strict])
    assert dict(r.provenance.refused) == {"tiny": "min_cohort_size"}
    assert r.sites.refused.tolist() == ["min_cohort_size"]
    with pytest.raises(ValueError, match="not valid"):
        incidence(CohortTable(1), CohortTable(2), [tiny], strata=("bmi",))


def test_crossed_strata_cells_cannot_be_recovered_from_their_margins(tmp_path: Path) -> None:
    # 30-39: 5 women, 1 man; 50-59: 4 women, 4 men (min_cell_count 3). The lone man is
    # hidden; his age group's margin (6) is released, so his female neighbour must be hidden
    # too, or 6 - 5 = 1 gives him away.
    people = [(i, concepts.FEMALE, 1985) for i in range(1, 6)] + [(6, concepts.MALE, 1985)]
    people += [(i, concepts.FEMALE, 1965) for i in range(7, 11)]
    people += [(i, concepts.MALE, 1965) for i in range(11, 15)]
    site = tiny_site(
        tmp_path / "cross.duckdb",
        people,
        [(pid, "2019-01-01", "2022-12-31") for pid, _, _ in people],
        [(1, pid, "2020-01-01", "2020-12-31") for pid, _, _ in people],
        policy=DisclosurePolicy(min_cell_count=3, min_cohort_size=1),
    )
    r = incidence(
        CohortTable(1), CohortTable(2), [site], strata=("age_group", "sex", ("age_group", "sex"))
    )
    s = r.summary
    assert row(r, age_group="30-39").persons_at_risk == 6  # the margin is released
    assert pd.isna(row(r, age_group="30-39", sex="male").persons_at_risk)
    cross = s[s.stratum == "age_group x sex"]
    for margin in ("age_group", "sex"):
        for level, cells in cross.groupby(margin):
            hidden = int(cells.persons_at_risk.isna().sum())
            assert hidden != 1, f"{margin}={level}: one hidden cell = margin - visible cells"
            assert cells.person_days.isna().sum() == hidden


# ---------------------------------------------------------------------- demo federation


def open_catalog(build: BuildResult, tmp_path: Path, **policy: int) -> Catalog:
    """The build's catalog with every site's policy replaced (absolute file locations)."""
    raw = yaml.safe_load(build.catalog_path.read_text(encoding="utf-8"))
    for site in raw["sites"]:
        site["location"] = str((build.catalog_path.parent / site["location"]).resolve())
        site["policy"] = {**site.get("policy", {}), **policy}
    path = tmp_path / f"catalog_{'_'.join(f'{k}{v}' for k, v in policy.items())}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return Catalog.load(path)


def reference_cohorts(site: Site) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """MS diagnosis and relapse cohorts built in pandas from the raw CDM tables."""
    con = duckdb.connect(site.resolved_location(), read_only=True)
    try:
        person = con.sql("select person_id, gender_concept_id, year_of_birth from person").df()
        op = con.sql("select * from observation_period").df()
        cond = con.sql(
            "select person_id, condition_concept_id, condition_start_date from condition_occurrence"
        ).df()
        obs = con.sql(
            "select person_id, observation_concept_id, observation_date from observation"
        ).df()
    finally:
        con.close()
    op["s"] = pd.to_datetime(op.observation_period_start_date)
    op["e"] = pd.to_datetime(op.observation_period_end_date)
    ms = cond[cond.condition_concept_id.isin(descendants(concepts.MULTIPLE_SCLEROSIS))]
    first = ms.assign(d=pd.to_datetime(ms.condition_start_date)).groupby("person_id").d.min()
    first = first.reset_index().merge(op, on="person_id")
    first = first[(first.d >= first.s) & (first.d <= first.e)]
    target = pd.DataFrame({"subject_id": first.person_id, "start": first.d, "end": first.e})
    rel = obs[obs.observation_concept_id == concepts.MS_RELAPSE]
    rel = rel.assign(d=pd.to_datetime(rel.observation_date)).merge(op, on="person_id")
    rel = rel[(rel.d >= rel.s) & (rel.d <= rel.e)]
    rel = rel.assign(end=np.minimum(rel.d + pd.Timedelta(days=30), rel.e))
    eras = []
    for pid, g in rel.sort_values(["person_id", "d", "end"]).groupby("person_id"):
        cur_s, cur_e = None, None
        for s, e in zip(g.d, g.end, strict=True):
            if cur_s is not None and s <= cur_e:
                cur_e = max(cur_e, e)
                continue
            if cur_s is not None:
                eras.append((pid, cur_s, cur_e))
            cur_s, cur_e = s, e
        eras.append((pid, cur_s, cur_e))
    outcome = pd.DataFrame(eras, columns=["subject_id", "start", "end"])
    return person, op, target, outcome


@dataclass
class Cell:
    """Accumulates one stratum level of the reference computation."""

    at_risk: set[int] = field(default_factory=set)
    days: int = 0
    with_outcome: set[int] = field(default_factory=set)
    outcomes: int = 0

    def add(self, pid: int, free: list[pd.Timestamp], hits: list[pd.Timestamp]) -> None:
        if free:
            self.at_risk.add(pid)
        if hits:
            self.with_outcome.add(pid)
        self.days += len(free)
        self.outcomes += len(hits)


def age_group(age: int) -> str:
    for lo, hi in pairwise(AGES):
        if age < hi:
            return f"{lo}-{hi - 1}"
    return f"{AGES[-1]}+"


def reference_incidence(
    person: pd.DataFrame,
    op: pd.DataFrame,
    target: pd.DataFrame,
    outcome: pd.DataFrame,
    tar: TimeAtRisk,
    clean_window: int,
) -> dict[tuple[str, object], list[int]]:
    """Day by day: {(stratum, level): [persons, days, persons with outcome, outcomes]}."""
    one = pd.Timedelta(days=1)
    sex = dict(zip(person.person_id, person.gender_concept_id, strict=True))
    born = dict(zip(person.person_id, person.year_of_birth, strict=True))
    tars: dict[int, list[list[pd.Timestamp]]] = defaultdict(list)
    for t in target.itertuples():
        p = op[(op.person_id == t.subject_id) & (op.s <= t.start) & (op.e >= t.start)].iloc[0]
        base = {"start": t.start, "end": t.end}
        s = min(base[tar.start_anchor] + tar.start_offset * one, p.e)
        e = min(base[tar.end_anchor] + tar.end_offset * one, p.e)
        if s <= e:
            tars[int(t.subject_id)].append([s, e])
    cells: dict[tuple[str, object], Cell] = defaultdict(Cell)
    for pid, spans in tars.items():
        spans.sort()
        merged: list[list[pd.Timestamp]] = []
        for s, e in spans:
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        own = outcome[outcome.subject_id == pid]
        blocked: set[pd.Timestamp] = set()
        if clean_window >= 1:
            for o in own.itertuples():
                blocked.update(pd.date_range(o.start + one, o.end + clean_window * one))
        for s, e in merged:
            free = [d for d in pd.date_range(s, e) if d not in blocked]
            hits = [d for d in own.start if s <= d <= e and d not in blocked]
            label = {concepts.MALE: "male", concepts.FEMALE: "female"}.get(sex[pid], "unknown")
            cells[("overall", None)].add(pid, free, hits)
            cells[("age_group", age_group(s.year - born[pid]))].add(pid, free, hits)
            cells[("sex", label)].add(pid, free, hits)
            for year in {d.year for d in free}:
                in_year = [d for d in free if d.year == year]
                cells[("year", year)].add(pid, in_year, [d for d in hits if d.year == year])
    return {k: [len(c.at_risk), c.days, len(c.with_outcome), c.outcomes] for k, c in cells.items()}


AGES = (0, 18, 30, 40, 50, 60, 70, 80)


@pytest.fixture(scope="module")
def open_cat(small_build: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return open_catalog(
        small_build, tmp_path_factory.mktemp("inc"), min_cell_count=1, min_cohort_size=1
    )


@pytest.mark.parametrize(
    ("tar", "clean_window"),
    [(TimeAtRisk(), 30), (TimeAtRisk("start", 1, "start", 730), 0)],
    ids=["to-obs-end-cw30", "two-years-cw0"],
)
def test_demo_site_matches_day_by_day_pandas(
    open_cat: Catalog, tar: TimeAtRisk, clean_window: int
) -> None:
    site = open_cat.site("basel")
    person, op, target, outcome = reference_cohorts(site)
    ref = reference_incidence(person, op, target, outcome, tar, clean_window)
    r = incidence(
        builtin_definition("ms_diagnosis"),
        builtin_definition("ms_relapse"),
        [site],
        tar=tar,
        clean_window=clean_window,
    )
    s = r.summary
    assert (s.site == "overall").all()
    got = {}
    for x in s.itertuples():
        level = {"overall": None, "age_group": x.age_group, "sex": x.sex, "year": x.year}[x.stratum]
        got[(x.stratum, level)] = [x.persons_at_risk, x.person_days, x.person_outcomes, x.outcomes]
        ref_days = ref.get((x.stratum, level), [0, 0, 0, 0])[1]
        assert x.person_years == pytest.approx(ref_days / 365.25, abs=1e-9)
    ref = {k: v for k, v in ref.items() if v != [0, 0, 0, 0]}
    got = {k: v for k, v in got.items() if v != [0, 0, 0, 0]}
    assert got == ref
    assert ref[("overall", None)][3] > 5  # the comparison covers real outcomes


@pytest.fixture(scope="module")
def federated(open_cat: Catalog) -> IncidenceResult:
    ms, relapse = builtin_definition("ms_diagnosis"), builtin_definition("ms_relapse")
    return incidence(ms, relapse, open_cat, clean_window=30)


def test_pooled_equals_federated(open_cat: Catalog, federated: IncidenceResult) -> None:
    args = (builtin_definition("ms_diagnosis"), builtin_definition("ms_relapse"), open_cat)
    fed = federated
    pooled = incidence(*args, clean_window=30, mode="pooled", transport="json")
    f = fed.summary[fed.summary.site == "overall"].reset_index(drop=True)
    p = pooled.summary.reset_index(drop=True)
    assert set(fed.summary.site) == {"overall", *open_cat.site_ids}
    counts = ["persons_at_risk", "person_days", "person_outcomes", "outcomes"]
    pd.testing.assert_frame_equal(
        f[["stratum", "age_group", "sex", "year", *counts]],
        p[["stratum", "age_group", "sex", "year", *counts]],
    )
    for col in ("person_years", "rate_p100py", "rate_lower", "rate_upper", "proportion_p100p"):
        np.testing.assert_allclose(f[col].astype(float), p[col].astype(float), rtol=1e-9)
    # overall = sum of the sites' rows
    per_site = fed.summary[fed.summary.site != "overall"]
    assert per_site[per_site.stratum == "overall"].person_days.sum() == row(fed).person_days


def test_small_cells_are_suppressed(small_build: BuildResult, open_cat: Catalog) -> None:
    args = (builtin_definition("ms_diagnosis"), builtin_definition("ms_relapse"))
    strict = Catalog.load(small_build.catalog_path)  # min_cell_count 5
    opened = incidence(*args, open_cat, strata=("year", "site")).summary
    result = incidence(*args, strict, strata=("year", "site"))
    closed = result.summary
    assert (opened.site + opened.stratum).tolist() == (closed.site + closed.stratum).tolist()
    small = opened.site.ne("overall") & opened.persons_at_risk.between(1, 4)
    assert small.any()
    assert closed.persons_at_risk[small].isna().all() and closed.suppressed[small].all()
    assert closed.person_days[small].isna().all() and closed.rate_p100py[small].isna().all()
    small_years = set(opened[small].year)
    overall_years = closed[(closed.site == "overall") & closed.year.isin(small_years)]
    assert overall_years.persons_at_risk.isna().all() and overall_years.suppressed.all()
    big = opened.persons_at_risk.ge(5) & ~closed.suppressed
    assert (opened.person_days[big] == closed.person_days[big]).all()
    assert any("strata" in cell for cell in result.provenance.suppressed)


def test_each_parameter_changes_its_numbers(open_cat: Catalog) -> None:
    site = [open_cat.site("freiburg")]
    args = (builtin_definition("ms_diagnosis"), builtin_definition("ms_relapse"), site)
    base = incidence(*args)
    cw = incidence(*args, clean_window=180)
    assert row(cw).person_days < row(base).person_days and row(cw).outcomes < row(base).outcomes
    short = incidence(*args, tar=TimeAtRisk("start", 0, "start", 365))
    assert row(short).person_days < row(base).person_days
    later = incidence(*args, tar=TimeAtRisk("start", 100, "start", 365))
    assert row(later).person_days < row(short).person_days
    first_day = row(incidence(*args, tar=TimeAtRisk("start", 0, "start", 0)))
    assert first_day.person_days == first_day.persons_at_risk == row(base).persons_at_risk
    other = incidence(*args, age_breaks=(0, 50), alpha=0.01, strata=(("age_group", "sex"),))
    assert set(other.summary.stratum) == {"overall", "age_group x sex"}
    assert set(other.summary.age_group.dropna()) == {"0-49", "50+"}
    assert set(base.summary.age_group.dropna()) > {"30-39", "40-49"}
    assert other.summary.person_days.iloc[1:].sum() == row(base).person_days
    assert row(other).rate_upper > row(base).rate_upper
    assert row(other).rate_lower < row(base).rate_lower
    assert row(other).rate_p100py == row(base).rate_p100py


def test_result_shape_plot_and_html(open_cat: Catalog, federated: IncidenceResult) -> None:
    r = federated
    assert isinstance(r.plot(), hv.Overlay) and isinstance(r.plot(by="site"), hv.Overlay)
    hv.render(r.plot(by="age_group"), backend="bokeh")
    html = r._repr_html_()
    assert "Provenance" in html and "rate_p100py" in html
    assert set(r.provenance.definition_hashes) == {"target", "outcome"}
    basel = r.sites.set_index("site").target_persons["basel"]
    assert basel == len(reference_cohorts(open_cat.site("basel"))[2]) > 0


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_site_answers_as_its_duckdb_file(
    small_build: BuildResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Incidence and pathways on one site copied into PostgreSQL equal the DuckDB results.

    The cohorts are written to the ``cohort`` table first (compiled on DuckDB), so this checks
    the incidence and pathways queries themselves on PostgreSQL.
    """
    from clinnova_explore.analysis.pathways import pathways
    from clinnova_explore.cohort.compile import compile_cohort
    from clinnova_explore.transfer import copy_cdm
    from tests.support import throwaway_postgres

    basel = Catalog.load(small_build.catalog_path).site("basel")
    copy = tmp_path / "basel.duckdb"
    shutil.copy(basel.resolved_location(), copy)
    with duckdb.connect(str(copy)) as db:
        for cid, name in ((1, "ms_diagnosis"), (2, "ms_relapse")):
            rows = compile_cohort(builtin_definition(name), basel).cohort.to_pandas()
            rows.insert(0, "cohort_definition_id", cid)
            db.register("rows", rows)
            db.execute("insert into cohort select * from rows")
            db.unregister("rows")
    basel.close()
    duck = Site(id="basel", name="Basel", country="CH", location=str(copy), policy=OPEN)
    with throwaway_postgres() as url:
        src = ibis.duckdb.connect(str(copy), read_only=True)
        dst = ibis.connect(url)
        copy_cdm(src, dst, [t for t in src.list_tables()])
        src.disconnect()
        dst.disconnect()
        monkeypatch.setenv("CLX_TEST_PG", url)
        pg = Site(
            id="basel",
            name="Basel on PostgreSQL",
            country="CH",
            backend="postgres",
            location_env="CLX_TEST_PG",
            policy=OPEN,
        )
        try:
            on_pg = incidence(CohortTable(1), CohortTable(2), [pg], clean_window=30).summary
            on_duck = incidence(CohortTable(1), CohortTable(2), [duck], clean_window=30).summary
            pd.testing.assert_frame_equal(on_pg, on_duck)
            assert row_of(on_pg).outcomes > 5
            events = {"natalizumab": concepts.NATALIZUMAB, "fingolimod": concepts.FINGOLIMOD}
            events |= {"ocrelizumab": concepts.OCRELIZUMAB, "glatiramer": concepts.GLATIRAMER}
            paths_pg = pathways(CohortTable(1), events, [pg]).summary
            paths_duck = pathways(CohortTable(1), events, [duck]).summary
            pd.testing.assert_frame_equal(paths_pg, paths_duck)
            assert paths_pg.path.str.contains(" > ").any()
        finally:
            pg.close()
            duck.close()


def row_of(summary: pd.DataFrame) -> pd.Series:
    return summary[(summary.site == "overall") & (summary.stratum == "overall")].iloc[0]
