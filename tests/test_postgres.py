"""One site loaded into a real PostgreSQL server answers exactly as its DuckDB file does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ibis
import pandas as pd
import pytest

from clinnova_explore import overview
from clinnova_explore.catalog import Catalog
from clinnova_explore.pipeline import BuildResult
from clinnova_explore.transfer import copy_cdm
from tests.support import throwaway_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SITE = "basel"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with throwaway_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def two_catalogs(
    small_build: BuildResult,
    pg_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Catalog, Catalog]]:
    duck = Catalog.load(small_build.catalog_path)
    src = ibis.duckdb.connect(duck.site(SITE).resolved_location(), read_only=True)
    dst = ibis.connect(pg_url)
    names = [t for t in src.list_tables()]
    copied = copy_cdm(src, dst, names)
    for name in names:
        assert copied[name] == src.table(name).count().execute(), name
    src.disconnect()
    dst.disconnect()
    d = tmp_path_factory.mktemp("pgcat")
    p = Path(d) / "data_catalog.yaml"
    p.write_text(
        f"sites:\n  - {{id: {SITE}, name: Basel on PostgreSQL, country: CH, backend: postgres,"
        " location_env: CLX_TEST_PG}\n",
        encoding="utf-8",
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("CLX_TEST_PG", pg_url)
    duck, pg = Catalog.load(small_build.catalog_path), Catalog.load(p)
    try:
        yield duck, pg
    finally:
        duck.close()
        pg.close()
        mp.undo()


def _frame(t: ibis.Table, order: list[str]) -> pd.DataFrame:
    return t.to_pandas().sort_values(order).reset_index(drop=True)


QUERIES = {
    "persons_by_gender": (
        lambda s: (
            s.table("person")
            .group_by("gender_concept_id")
            .aggregate(n=ibis._.count(), mean_yob=ibis._.year_of_birth.mean())
        ),
        ["gender_concept_id"],
    ),
    "measurement_stats": (
        lambda s: (
            s.table("measurement")
            .group_by(["measurement_concept_id", "unit_concept_id"])
            .aggregate(
                n=ibis._.count(),
                total=ibis._.value_as_number.sum(),
                lo=ibis._.value_as_number.min(),
                hi=ibis._.value_as_number.max(),
                first=ibis._.measurement_date.min(),
                last=ibis._.measurement_date.max(),
            )
        ),
        ["measurement_concept_id", "unit_concept_id"],
    ),
    "conditions_by_ancestor": (
        lambda s: (
            s.table("condition_occurrence")
            .join(
                s.table("concept_ancestor"),
                ibis._.condition_concept_id == s.table("concept_ancestor").descendant_concept_id,
            )
            .group_by("ancestor_concept_id")
            .aggregate(persons=ibis._.person_id.nunique())
        ),
        ["ancestor_concept_id"],
    ),
    "drug_days": (
        lambda s: (
            s.table("drug_exposure")
            .mutate(
                days=ibis._.drug_exposure_end_date.delta(
                    ibis._.drug_exposure_start_date, unit="day"
                )
            )
            .group_by("drug_concept_id")
            .aggregate(n=ibis._.count(), days=ibis._.days.sum())
        ),
        ["drug_concept_id"],
    ),
    "visits_per_year": (
        lambda s: (
            s.table("visit_occurrence")
            .mutate(y=ibis._.visit_start_date.year())
            .group_by(["y", "visit_concept_id"])
            .aggregate(n=ibis._.count())
        ),
        ["y", "visit_concept_id"],
    ),
}


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_same_query_same_answer(two_catalogs: tuple[Catalog, Catalog], name: str) -> None:
    duck, pg = two_catalogs
    build_query, order = QUERIES[name]
    a = _frame(build_query(duck.site(SITE)), order)
    b = _frame(build_query(pg.site(SITE)), order)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=False, rtol=1e-12)


def test_overview_aggregates_identical(two_catalogs: tuple[Catalog, Catalog]) -> None:
    duck, pg = two_catalogs
    a = overview.persons_by_disease(duck, [SITE])
    b = overview.persons_by_disease(pg, [SITE])
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert a.persons.sum() > 0
    fa = overview.followup_histogram(duck, [SITE])
    fb = overview.followup_histogram(pg, [SITE])
    pd.testing.assert_frame_equal(fa, fb, check_dtype=False)


def test_quality_checks_identical_on_both_backends(two_catalogs: tuple[Catalog, Catalog]) -> None:
    from clinnova_explore.quality import run_checks

    duck, pg = two_catalogs
    a = run_checks(duck.site(SITE).connect(), SITE).summary
    b = run_checks(pg.site(SITE).connect(), SITE).summary
    cols = ["check_id", "num_violated", "num_denominator", "status"]
    a = a[cols].sort_values("check_id").reset_index(drop=True)
    b = b[cols].sort_values("check_id").reset_index(drop=True)
    assert (a.status == "ERROR").sum() == 0
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
