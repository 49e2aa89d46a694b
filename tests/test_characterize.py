"""Table 1 (characterize): every number against an independent pandas computation.

The reference (``tests/characterize_reference.py``) reads each site's raw CDM tables with
duckdb and aggregates one row per cohort entry with plain pandas. Here: every cell per site,
the exact overall, pooled == federated, SMDs, suppression, refusals, payload contents and the
rendered table and plot. Options and other CDMs: ``test_characterize_options.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import holoviews as hv
import numpy as np
import pandas as pd
import pytest
from great_tables import GT

from clinnova_explore.analysis.characterize import Characterize, CharacterizeSpec, characterize
from clinnova_explore.analysis.smd import smd_binary, smd_continuous
from clinnova_explore.analysis.table1 import Table1Result
from clinnova_explore.catalog import Catalog
from clinnova_explore.cohort import CohortDefinition
from clinnova_explore.cohort.library import builtin_definition
from clinnova_explore.pipeline import BuildResult
from tests.characterize_reference import (
    ROLES,
    assert_matches,
    catalog_copy,
    cohort_entries,
    features,
    read_raw,
    rows_of,
    smd_reference,
    summarize,
)

# ---------------------------------------------------------------------- catalogs and runs


@pytest.fixture(scope="module")
def catalog(small_build: BuildResult) -> Iterator[Catalog]:
    cat = Catalog.load(small_build.catalog_path)
    yield cat
    cat.close()


@pytest.fixture(scope="module")
def open_catalog(
    small_build: BuildResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Catalog]:
    """Every site with min_cell_count = min_cohort_size = 1: nothing is suppressed."""
    folder = tmp_path_factory.mktemp("open_catalog")
    policy = {"*": {"min_cell_count": 1, "min_cohort_size": 1}}
    cat = Catalog.load(catalog_copy(small_build, folder, policy))
    yield cat
    cat.close()


@pytest.fixture(scope="module")
def target() -> CohortDefinition:
    return builtin_definition("ms_high_efficacy_start")


@pytest.fixture(scope="module")
def comparator() -> CohortDefinition:
    return builtin_definition("ms_platform_start")


@pytest.fixture(scope="module")
def federated(open_catalog: Catalog, target: CohortDefinition, comparator: CohortDefinition):
    return characterize(target, open_catalog, comparator=comparator)


@pytest.fixture(scope="module")
def pooled(open_catalog: Catalog, target: CohortDefinition, comparator: CohortDefinition):
    return characterize(target, open_catalog, comparator=comparator, mode="pooled")


@pytest.fixture(scope="module")
def guarded(catalog: Catalog, target: CohortDefinition, comparator: CohortDefinition):
    """The default policies (min_cell_count 5, min_cohort_size 10)."""
    return characterize(target, catalog, comparator=comparator)


# ---------------------------------------------------------------------- the reference


@pytest.fixture(scope="module")
def raw(open_catalog: Catalog) -> dict[str, dict[str, pd.DataFrame]]:
    return read_raw(open_catalog)


@pytest.fixture(scope="module")
def expected(raw, open_catalog: Catalog, target, comparator):
    """{(role, site or 'overall'): expected rows} for the default spec."""
    spec = CharacterizeSpec(target=target, comparator=comparator)
    out = {}
    for role, definition in [("target", target), ("comparator", comparator)]:
        feats = []
        for site in open_catalog:
            feat = features(raw[site.id], cohort_entries(definition, site), spec)
            out[(role, site.id)] = summarize(feat)
            feats.append(feat.assign(subject=site.id + ":" + feat["subject"].astype(str)))
        out[(role, "overall")] = summarize(pd.concat(feats, ignore_index=True))
    return out


# ---------------------------------------------------------------------- every number


def test_every_cell_matches_the_reference_per_site(
    federated: Table1Result, expected: dict, open_catalog: Catalog
) -> None:
    assert federated.sites == open_catalog.site_ids
    assert not federated.data["suppressed"].any()
    for role in ROLES:
        for site in open_catalog.site_ids:
            got = rows_of(federated, role, site)
            assert_matches(got, expected[(role, site)])
            assert got.loc[("Age at index (years)", ""), "median"] == pytest.approx(
                expected[(role, site)].loc[("Age at index (years)", ""), "median"]
            )


def test_overall_is_exact_and_quartiles_only_pooled(
    federated: Table1Result, pooled: Table1Result, expected: dict
) -> None:
    for role in ROLES:
        got = rows_of(federated, role, "overall")
        assert_matches(got, expected[(role, "overall")], quantiles=False)
        assert got[["median", "q1", "q3"]].isna().all().all()
        assert_matches(rows_of(pooled, role, "overall"), expected[(role, "overall")])
    assert any("not combinable" in n for n in federated.notes)
    assert list(pooled.data["site"].unique()) == ["overall"]
    assert not any("not combinable" in n for n in pooled.notes)


def test_pooled_equals_federated_for_combinable_cells(
    federated: Table1Result, pooled: Table1Result
) -> None:
    fed = federated.data[federated.data["site"] == "overall"].set_index(
        ["cohort", "variable", "level"]
    )
    pool = pooled.data.set_index(["cohort", "variable", "level"]).reindex(fed.index)
    assert (fed["n"] == pool["n"]).all() and (fed["kind"] == pool["kind"]).all()
    assert (fed["missing"].fillna(-1) == pool["missing"].fillna(-1)).all()
    for col in ["percent", "mean", "sd", "missing_percent"]:
        np.testing.assert_allclose(fed[col], pool[col], rtol=1e-9, atol=1e-12, err_msg=col)
    np.testing.assert_allclose(
        federated.smd["overall"], pooled.smd["overall"].reindex(federated.smd.index), rtol=1e-9
    )


def test_smds_match_austin_per_site_and_overall(
    federated: Table1Result, expected: dict, open_catalog: Catalog
) -> None:
    assert list(federated.smd.columns) == [*open_catalog.site_ids, "overall"]
    for site in [*open_catalog.site_ids, "overall"]:
        t = rows_of(federated, "target", site)
        want = smd_reference(t, rows_of(federated, "comparator", site))
        got = federated.smd[site].reindex(want.index)
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=site)
        # and from the reference statistics, not the library's
        ref = smd_reference(expected[("target", site)], expected[("comparator", site)])
        both = ref.index.intersection(got.dropna().index)
        assert len(both) > 20
        np.testing.assert_allclose(got[both], ref[both], rtol=1e-9, err_msg=site)
    # high-efficacy starters have a high-efficacy drug in the window, platform starters do not
    he = ("Drugs, days -365 to 0", "MS high-efficacy therapy")
    assert federated.smd.loc[he, "overall"] == math.inf
    assert federated.summary[("smd", "overall", "smd")].loc[he] == math.inf


def test_smd_formulas() -> None:
    # hand-computed: (0.5-0.3)/sqrt((0.25+0.21)/2) and 4/sqrt((100+144)/2)
    assert smd_binary(0.5, 0.3) == pytest.approx(0.2 / math.sqrt(0.23))
    assert smd_continuous(52, 10, 48, 12) == pytest.approx(4 / math.sqrt(122))
    assert smd_binary(0.3, 0.5) == pytest.approx(-smd_binary(0.5, 0.3))
    np.testing.assert_array_equal(smd_binary([0, 1, 0], [0, 1, 1]), [0, 0, -math.inf])
    assert np.isnan(smd_binary(np.nan, 0.5)) and np.isnan(smd_continuous(1, np.nan, 1, 1))


# ---------------------------------------------------------------------- disclosure


def test_default_policy_suppresses_small_cells_and_their_complements(
    guarded: Table1Result, expected: dict, catalog: Catalog
) -> None:
    """Same files and cohorts as the open catalog, so the same reference applies."""
    answered = [s for s in catalog.site_ids if s not in guarded.provenance.refused]
    assert answered and guarded.data["suppressed"].any()
    for role in ROLES:
        for site in answered:
            got = rows_of(guarded, role, site)
            want = expected[(role, site)].reindex(got.index)
            assert_matches(got, want)
            n = want["n"].fillna(0).astype(int)
            total = int(want.loc[("Cohort entries", ""), "n"])
            small = (n > 0) & (n < 5)
            other = want["missing"].where(want["kind"] == "continuous", total - n)
            pair_small = (other > 0) & (other < 5) & want["kind"].isin(["binary", "continuous"])
            hidden = got["suppressed"].astype(bool)
            assert (hidden[small]).all(), "every small count is hidden"
            assert (hidden[pair_small]).all(), "a count whose complement is small is hidden"
            for variable in ["Age group", "Sex", "Index year"]:
                group = want.index.get_level_values(0) == variable
                n_small = int(small[group].sum())
                extra = hidden[group] & ~small[group]
                if n_small == 1 and ((n[group] >= 5).any()):
                    assert extra.sum() == 1
                    assert n[group][extra].iloc[0] == n[group][n[group] >= 5].min()
                else:
                    assert extra.sum() == 0, (site, variable)
            binary_or_cont = want["kind"].isin(["binary", "continuous"])
            assert (hidden[binary_or_cont] == (small | pair_small)[binary_or_cont]).all()
            # values are shown unless the observed count itself is small
            cont = want["kind"] == "continuous"
            assert got.loc[cont & small, ["mean", "sd", "median"]].isna().all().all()
            shown = cont & ~small & (want["n"] > 1)
            assert got.loc[shown, ["mean", "sd", "median"]].notna().all().all()
    released = guarded.data["n"].dropna()
    assert not ((released > 0) & (released < 5)).any()
    assert not ((guarded.data["missing"] > 0) & (guarded.data["missing"] < 5)).any()


def test_overall_cell_with_a_suppressed_part_is_na(guarded: Table1Result) -> None:
    d = guarded.data
    sites = d[d["site"] != "overall"]
    any_hidden = sites.groupby(["cohort", "variable", "level"], sort=False)["suppressed"].any()
    overall = d[d["site"] == "overall"].set_index(["cohort", "variable", "level"])
    assert any_hidden.any()
    assert (overall["suppressed"].reindex(any_hidden.index) == any_hidden).all()
    assert overall.loc[any_hidden[any_hidden].index, "n"].isna().all()
    assert guarded.provenance.suppressed
    assert any("suppressed" in n.lower() for n in guarded.notes)


def test_small_cohort_is_refused_by_name(
    guarded: Table1Result, catalog: Catalog, comparator: CohortDefinition
) -> None:
    sizes = {s.id: len(cohort_entries(comparator, s)) for s in catalog}
    small = {s for s, k in sizes.items() if k < 10}
    assert small, "the fixture should have a site with fewer than 10 platform starters"
    assert dict(guarded.provenance.refused) == dict.fromkeys(small, "min_cohort_size")
    assert not set(guarded.sites) & small
    assert all(any(s in n and "refused" in n for n in guarded.notes) for s in small)


def test_payload_holds_only_suppressed_aggregates(
    catalog: Catalog, target: CohortDefinition
) -> None:
    site = catalog.site("freiburg")
    payload = Characterize().local(site, CharacterizeSpec(target=target))
    assert set(payload.tables) == {"counts", "moments"}
    counts, moments = payload.tables["counts"], payload.tables["moments"]
    assert list(counts.columns) == ["cohort", "variable", "level", "part", "n", "suppressed"]
    assert list(moments.columns) == [
        "cohort",
        "variable",
        "level",
        "sum",
        "sumsq",
        "mean",
        "sd",
        "q1",
        "median",
        "q3",
        "suppressed",
    ]
    assert set(counts["part"]) == {"n", "present", "observed", "missing"}
    n = counts["n"].dropna()
    assert not ((n > 0) & (n < site.policy.min_cell_count)).any()
    assert len(counts) < 200 and len(moments) < 20
    roundtrip = type(payload).from_arrow(payload.to_arrow())
    assert roundtrip.equals(payload)


# ---------------------------------------------------------------------- rendering


def test_great_table_and_html_show_the_numbers(guarded: Table1Result) -> None:
    gt = guarded.to_great_table()
    assert isinstance(gt, GT)
    page = gt.as_raw_html()
    female = rows_of(guarded, "target", "overall").loc[("Sex", "Female")]
    assert f"{int(female['n']):,} ({female['percent']:.1f}%)" in page
    for name in guarded.cohorts.values():
        assert name in page
    assert "SMD (overall)" in page and "suppressed" in page
    html = guarded._repr_html_()
    assert "Provenance" in html and "min_cohort_size" in html
    overall_only = guarded.to_great_table(per_site=False).as_raw_html()
    assert "freiburg" in page and "freiburg</th>" not in overall_only


def test_smd_plot_draws_the_overall_smds(federated: Table1Result) -> None:
    plot = federated.plot()
    assert isinstance(plot, hv.Overlay)
    points = [el for el in plot if isinstance(el, hv.Points)]
    overall = points[-1].data
    smd = federated.smd["overall"]
    finite = smd[np.isfinite(smd) & (smd.abs() > 0)]
    assert len(overall) == len(finite)
    np.testing.assert_allclose(np.sort(overall["smd"]), np.sort(finite.to_numpy()))
    assert "infinite" in plot.opts.get().kwargs["title"]
    lines = sorted(el.data for el in plot if isinstance(el, hv.VLine))
    assert lines == [-0.1, 0, 0.1]
    wider = federated.plot(threshold=0.25, per_site=False, hide_zero=False)
    assert sorted(el.data for el in wider if isinstance(el, hv.VLine)) == [-0.25, 0, 0.25]
    (everything,) = [el for el in wider if isinstance(el, hv.Points)]
    assert len(everything.data) == int(np.isfinite(smd).sum()) > len(overall)


def test_values_leave_when_their_count_is_hidden_only_as_a_complement(
    small_build: BuildResult, tmp_path: Path, expected: dict, target: CohortDefinition
) -> None:
    """A few entries without a value hide the count of those with one, but not its mean."""
    meas = "Measurements (latest), days -365 to 0"
    picked = None
    for (role, site), want in expected.items():
        if role != "target" or site == "overall":
            continue
        rows = want.loc[want.index.get_level_values(0) == meas]
        ok = rows[(rows["missing"] > 0) & (rows["n"] > rows["missing"] + 1)]
        if not ok.empty:
            picked = (site, ok.index[0][1], int(ok.iloc[0]["missing"]))
            break
    assert picked is not None
    site_id, label, missing = picked
    policy = {"min_cell_count": missing + 1, "min_cohort_size": 1}
    cat = Catalog.load(catalog_copy(small_build, tmp_path, {site_id: policy}))
    cov = next(v for v in CharacterizeSpec(target=target).covariates if v.label == label)
    payload = Characterize().local(
        cat.site(site_id), CharacterizeSpec(target=target, covariates=(cov,))
    )
    res = characterize(target, [cat.site(site_id)], covariates=(cov,))
    cat.close()
    got = rows_of(res, "target", site_id).loc[(meas, label)]
    want = expected[("target", site_id)].loc[(meas, label)]
    assert got["suppressed"] and pd.isna(got["n"]) and pd.isna(got["missing"])
    assert got["mean"] == pytest.approx(want["mean"], rel=1e-9)
    assert got["sd"] == pytest.approx(want["sd"], rel=1e-9)
    assert got["median"] == pytest.approx(want["median"])
    assert "n suppressed" in res.to_great_table().as_raw_html()
    row = payload.tables["moments"].set_index("level").loc[label]
    assert pd.isna(row["sum"]) and pd.isna(row["sumsq"]) and row["suppressed"]
