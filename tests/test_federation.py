"""Federated analyses equal pooled ones and independent references; site policy applies.

References: lifelines (KaplanMeierFitter, logrank_test, CoxPHFitter with strata, weights,
robust and cluster_col), statsmodels Logit, and hand computations of the binning and
small-cell rules.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import ibis
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.exceptions import StatisticalWarning
from lifelines.statistics import multivariate_logrank_test

from clinnova_explore.analysis.contract import TRANSPORTS, Transport
from clinnova_explore.analysis.logistic import logistic
from clinnova_explore.analysis.payload import Payload
from clinnova_explore.analysis.survival import cox, kaplan_meier, logrank
from clinnova_explore.catalog import Catalog, DisclosurePolicy
from clinnova_explore.federated import Federation, FederationError
from clinnova_explore.federated.bins import binned_event_table, merge_runs
from clinnova_explore.federated.steps import EventTableSpec, EventTableStep
from clinnova_explore.pipeline import BuildResult

OPEN = DisclosurePolicy(min_cell_count=1, min_cohort_size=1, max_params_per_obs=1.0)
SIZES = {"basel": 260, "luxembourg": 180, "nancy": 140}


def _site_rows(site: str, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    treated = rng.integers(0, 2, n)
    sex = rng.choice(["F", "M"], n)
    hazard = np.exp(0.5 * x - 0.6 * treated + 0.3 * (sex == "M") + 0.2 * seed)
    event_time = np.ceil(rng.exponential(120 / hazard))  # whole days: many ties
    censor = rng.integers(1, 400, n)
    return pd.DataFrame(
        {
            "site": site,
            "duration": np.minimum(event_time, censor).astype("int64"),
            "event": (event_time <= censor).astype("int64"),
            "x": x,
            "treated": treated,
            "sex": sex,
            "w": rng.uniform(0.3, 2.5, n),
            "pair": rng.integers(0, n // 2, n),
        }
    )


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return {s: _site_rows(s, n, i) for i, (s, n) in enumerate(SIZES.items())}


@pytest.fixture(scope="module")
def rows(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(tables.values(), ignore_index=True)


@pytest.fixture
def fed(tables: dict[str, pd.DataFrame]) -> Federation:
    return Federation.from_tables(tables, policy=OPEN)


# ---------------------------------------------------------------------- Kaplan-Meier, log-rank


def test_kaplan_meier_federated_equals_pooled_and_lifelines(
    fed: Federation, rows: pd.DataFrame
) -> None:
    federated = fed.kaplan_meier(duration="duration", event="event", group="treated")
    pooled = fed.pooled().kaplan_meier(duration="duration", event="event", group="treated")
    local = kaplan_meier(rows, duration="duration", event="event", group="treated")
    cols = ["time", "n_at_risk", "n_events", "n_censored", "survival", "std_err", "lower", "upper"]
    for other in (pooled, local):
        assert list(federated.summary["group"]) == list(other.summary["group"])
        np.testing.assert_allclose(
            federated.summary[cols].to_numpy(float), other.summary[cols].to_numpy(float), atol=1e-12
        )
    for arm in (0, 1):
        part = rows[rows["treated"] == arm]
        kmf = KaplanMeierFitter().fit(part["duration"], part["event"])
        mine = federated.summary[federated.summary["group"] == arm].set_index("time")["survival"]
        ref = kmf.survival_function_["KM_estimate"].reindex(mine.index)
        np.testing.assert_allclose(mine.to_numpy(), ref.to_numpy(), atol=1e-12)
    assert federated.provenance is not None
    assert federated.provenance.mode == "federated"
    assert federated.provenance.sites == tuple(SIZES)
    assert pooled.provenance is not None and pooled.provenance.mode == "pooled"


def test_weighted_kaplan_meier_equals_pooled_and_lifelines(
    fed: Federation, rows: pd.DataFrame
) -> None:
    federated = fed.kaplan_meier(duration="duration", event="event", weights="w")
    pooled = fed.pooled().kaplan_meier(duration="duration", event="event", weights="w")
    np.testing.assert_allclose(
        federated.summary["survival"], pooled.summary["survival"], atol=1e-12
    )
    with pytest.warns(StatisticalWarning, match="weights are not integers"):
        kmf = KaplanMeierFitter().fit(rows["duration"], rows["event"], weights=rows["w"])
    ref = kmf.survival_function_["KM_estimate"].reindex(federated.summary["time"])
    np.testing.assert_allclose(federated.summary["survival"], ref.to_numpy(), atol=1e-10)
    unweighted = fed.kaplan_meier(duration="duration", event="event")
    assert not np.allclose(unweighted.summary["survival"], federated.summary["survival"])


def test_logrank_federated_equals_pooled_and_lifelines(fed: Federation, rows: pd.DataFrame) -> None:
    federated = fed.logrank(duration="duration", event="event", group="treated")
    pooled = fed.pooled().logrank(duration="duration", event="event", group="treated")
    ref = multivariate_logrank_test(rows["duration"], rows["treated"], rows["event"])
    assert federated.statistic == pytest.approx(pooled.statistic, abs=1e-10)
    assert federated.statistic == pytest.approx(ref.test_statistic, rel=1e-9)
    assert federated.p_value == pytest.approx(ref.p_value, rel=1e-8)
    stratified = fed.logrank(duration="duration", event="event", group="treated", strata="site")
    local = logrank(rows, duration="duration", event="event", group="treated", strata="site")
    assert stratified.statistic == pytest.approx(local.statistic, abs=1e-10)
    assert stratified.statistic != pytest.approx(federated.statistic, rel=1e-3)


# ---------------------------------------------------------------------- Cox


def _lifelines_cox(df: pd.DataFrame, **kw: object) -> CoxPHFitter:
    design = df[["duration", "event", "site", "x", "treated"]].assign(
        male=(df["sex"] == "M").astype(float)
    )
    for col in (kw.get("weights_col"), kw.get("cluster_col")):
        if col is not None:
            design[col] = df[col]
    return CoxPHFitter().fit(
        design, "duration", "event", strata=["site"], fit_options={"precision": 1e-12}, **kw
    )


COVARIATES = ["x", "treated", "sex"]


def test_cox_federated_equals_pooled_local_and_lifelines(
    fed: Federation, rows: pd.DataFrame
) -> None:
    federated = fed.cox(duration="duration", event="event", covariates=COVARIATES)
    pooled = fed.pooled().cox(duration="duration", event="event", covariates=COVARIATES)
    local = cox(rows, duration="duration", event="event", covariates=COVARIATES, strata="site")
    for other in (pooled, local):
        np.testing.assert_allclose(
            federated.summary.to_numpy(), other.summary.to_numpy(), atol=1e-8
        )
        assert federated.loglik == pytest.approx(other.loglik, abs=1e-8)
    assert (federated.n, federated.events) == (local.n, local.events)
    ref = _lifelines_cox(rows)
    np.testing.assert_allclose(federated.summary["coef"], ref.params_.to_numpy(), atol=1e-6)
    np.testing.assert_allclose(federated.summary["se"], ref.standard_errors_.to_numpy(), atol=1e-6)
    assert list(federated.summary.index) == ["x", "treated", "sex[M]"]
    assert federated.provenance is not None and federated.provenance.analysis == "cox"
    breslow = fed.cox(duration="duration", event="event", covariates=COVARIATES, ties="breslow")
    assert not np.allclose(breslow.summary["coef"], federated.summary["coef"], atol=1e-6)


@pytest.fixture(scope="module")
def untied(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The same sites with continuous (untied) durations.

    Robust variances under Efron ties differ between R-style and lifelines' score residuals
    on tied data; without ties every method agrees, so lifelines is an exact reference.
    """
    rng = np.random.default_rng(99)
    return {
        s: df.assign(duration=df["duration"] - rng.uniform(0, 1, len(df)))
        for s, df in tables.items()
    }


def test_weighted_robust_cox_equals_pooled_and_lifelines(
    tables: dict[str, pd.DataFrame], untied: dict[str, pd.DataFrame]
) -> None:
    kw = {"duration": "duration", "event": "event", "covariates": COVARIATES, "weights": "w"}
    for data in (tables, untied):
        fed = Federation.from_tables(data, policy=OPEN)
        rows = pd.concat(data.values(), ignore_index=True)
        federated = fed.cox(**kw, robust=True)  # type: ignore[arg-type]
        pooled = fed.pooled().cox(**kw, robust=True)  # type: ignore[arg-type]
        local = cox(rows, **kw, strata="site", robust=True)  # type: ignore[arg-type]
        for other in (pooled, local):
            np.testing.assert_allclose(
                federated.summary.to_numpy(), other.summary.to_numpy(), atol=1e-8
            )
        assert federated.robust
        ref = _lifelines_cox(rows, weights_col="w", robust=True)
        np.testing.assert_allclose(federated.summary["coef"], ref.params_.to_numpy(), atol=1e-6)
        if data is untied:
            np.testing.assert_allclose(
                federated.summary["se"], ref.standard_errors_.to_numpy(), atol=1e-6
            )
        naive = fed.cox(**kw)  # type: ignore[arg-type]
        np.testing.assert_allclose(naive.summary["coef"], federated.summary["coef"], atol=1e-10)
        assert not np.allclose(naive.summary["se"], federated.summary["se"], atol=1e-4)


def test_clustered_cox_takes_clusters_within_site(untied: dict[str, pd.DataFrame]) -> None:
    fed = Federation.from_tables(untied, policy=OPEN)
    rows = pd.concat(untied.values(), ignore_index=True)
    kw = {"duration": "duration", "event": "event", "covariates": COVARIATES}
    federated = fed.cox(**kw, cluster="pair")  # type: ignore[arg-type]
    pooled = fed.pooled().cox(**kw, cluster="pair")  # type: ignore[arg-type]
    np.testing.assert_allclose(federated.summary.to_numpy(), pooled.summary.to_numpy(), atol=1e-8)
    keyed = rows.assign(pair_key=rows["site"] + "|" + rows["pair"].astype(str))
    ref = _lifelines_cox(keyed, cluster_col="pair_key")
    np.testing.assert_allclose(federated.summary["se"], ref.standard_errors_.to_numpy(), atol=1e-6)
    # pair numbers repeat across sites; pooling them across sites would change the answer
    crossed = cox(rows, **kw, strata="site", cluster="pair")  # type: ignore[arg-type]
    assert not np.allclose(crossed.summary["se"], federated.summary["se"], atol=1e-6)


def test_cox_strata(fed: Federation, rows: pd.DataFrame) -> None:
    kw = {"duration": "duration", "event": "event", "covariates": ["x", "treated"]}
    with pytest.raises(FederationError, match="must be stratified by site"):
        fed.cox(**kw, strata=None)  # type: ignore[arg-type]
    with pytest.raises(FederationError, match="must be stratified by site"):
        fed.cox(**kw, strata="sex")  # type: ignore[arg-type]
    unstratified = fed.pooled().cox(**kw, strata=None)  # type: ignore[arg-type]
    local = cox(rows, duration="duration", event="event", covariates=["x", "treated"])
    np.testing.assert_allclose(unstratified.summary.to_numpy(), local.summary.to_numpy(), atol=1e-8)
    both = fed.cox(**kw, strata=["site", "sex"])  # type: ignore[arg-type]
    ref = cox(
        rows.assign(cell=rows["site"] + rows["sex"]),
        duration="duration",
        event="event",
        covariates=["x", "treated"],
        strata="cell",
    )
    np.testing.assert_allclose(both.summary.to_numpy(), ref.summary.to_numpy(), atol=1e-8)
    assert both.strata == ("site", "sex")


# ---------------------------------------------------------------------- logistic


def test_logistic_federated_equals_pooled_and_statsmodels(
    fed: Federation, rows: pd.DataFrame
) -> None:
    covs = ["x", "sex", "site"]
    federated = fed.logistic(outcome="treated", covariates=covs)
    pooled = fed.pooled().logistic(outcome="treated", covariates=covs)
    local = logistic(rows, outcome="treated", covariates=covs)
    for other in (pooled, local):
        np.testing.assert_allclose(
            federated.summary.to_numpy(), other.summary.to_numpy(), atol=1e-8
        )
    design = pd.DataFrame(
        {
            "const": 1.0,
            "x": rows["x"],
            "male": (rows["sex"] == "M").astype(float),
            "lux": (rows["site"] == "luxembourg").astype(float),
            "nancy": (rows["site"] == "nancy").astype(float),
        }
    )
    ref = sm.Logit(rows["treated"], design).fit(disp=0, method="newton", tol=1e-14)
    np.testing.assert_allclose(federated.summary["coef"], ref.params.to_numpy(), atol=1e-8)
    np.testing.assert_allclose(federated.summary["se"], ref.bse.to_numpy(), atol=1e-8)
    assert federated.n == len(rows)
    assert federated.provenance is not None and federated.provenance.analysis == "logistic"
    weighted = fed.logistic(outcome="treated", covariates=covs, weights="w")
    local_w = logistic(rows, outcome="treated", covariates=covs, weights="w")
    np.testing.assert_allclose(weighted.summary.to_numpy(), local_w.summary.to_numpy(), atol=1e-8)
    # a federated fit predicts at any site with the pooled coefficients
    np.testing.assert_allclose(federated.predict(rows), local.predict(rows), atol=1e-10)


# ---------------------------------------------------------------------- transport


def test_every_payload_crosses_as_bytes(tables: dict[str, pd.DataFrame]) -> None:
    seen: list[tuple[str, str]] = []

    def decode(data: bytes) -> Payload:
        payload = Payload.from_arrow(data)
        seen.append((payload.site, payload.analysis))
        return payload

    counting = Transport("arrow", Payload.to_arrow, decode)
    fed = Federation.from_tables(tables, policy=OPEN, transport=counting)
    fit = fed.cox(duration="duration", event="event", covariates=["x"])
    # design round, probe round at 0, one per Newton step (the last may repeat a point)
    assert seen.count(("basel", "cox")) >= fit.iterations + 1
    assert {s for s, _ in seen} == set(SIZES)
    traffic = fed.runner.traffic  # type: ignore[attr-defined]
    assert len(traffic) == len(seen) and all(t.nbytes > 0 for t in traffic)
    json_fed = Federation.from_tables(tables, policy=OPEN, transport=TRANSPORTS["json"])
    again = json_fed.cox(duration="duration", event="event", covariates=["x"])
    np.testing.assert_array_equal(again.summary.to_numpy(), fit.summary.to_numpy())


def test_ibis_tables_stay_lazy_and_give_the_same_answers(
    tables: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    lazy = {}
    for site, df in tables.items():
        con = ibis.duckdb.connect(str(tmp_path / f"{site}.duckdb"))
        con.create_table("rows", df.drop(columns="site"))
        lazy[site] = con.table("rows")
    fed = Federation.from_tables(lazy, policy=OPEN)
    plain = Federation.from_tables(tables, policy=OPEN)
    km = fed.kaplan_meier(duration="duration", event="event", group="treated")
    ref = plain.kaplan_meier(duration="duration", event="event", group="treated")
    np.testing.assert_allclose(km.summary["survival"], ref.summary["survival"], atol=1e-12)
    fit = fed.cox(duration="duration", event="event", covariates=COVARIATES)
    ref_fit = plain.cox(duration="duration", event="event", covariates=COVARIATES)
    np.testing.assert_allclose(fit.summary.to_numpy(), ref_fit.summary.to_numpy(), atol=1e-10)


# ---------------------------------------------------------------------- refusals


def test_refusals_name_rule_and_site(tables: dict[str, pd.DataFrame]) -> None:
    no_cox = OPEN.model_copy(update={"allowed_analyses": ("survival", "logistic")})
    fed = Federation.from_tables(
        tables, policy={"basel": OPEN, "luxembourg": no_cox, "nancy": OPEN}
    )
    fit = fed.cox(duration="duration", event="event", covariates=["x"])
    assert fit.provenance is not None
    assert dict(fit.provenance.refused) == {"luxembourg": "allowed_analyses"}
    without = Federation.from_tables(
        {k: v for k, v in tables.items() if k != "luxembourg"}, policy=OPEN
    ).cox(duration="duration", event="event", covariates=["x"])
    np.testing.assert_allclose(fit.summary.to_numpy(), without.summary.to_numpy(), atol=1e-12)
    km = fed.kaplan_meier(duration="duration", event="event")
    assert km.provenance is not None and not km.provenance.refused

    big = OPEN.model_copy(update={"min_cohort_size": 200})
    fed = Federation.from_tables(tables, policy=big)
    km = fed.kaplan_meier(duration="duration", event="event")
    assert km.provenance is not None
    assert dict(km.provenance.refused) == {
        "luxembourg": "min_cohort_size",
        "nancy": "min_cohort_size",
    }
    assert km.summary["n_at_risk"].iloc[0] == SIZES["basel"]

    tight = OPEN.model_copy(update={"max_params_per_obs": 3 / 150})
    fed = Federation.from_tables(tables, policy=tight)
    fit = fed.cox(duration="duration", event="event", covariates=COVARIATES)
    assert fit.provenance is not None
    assert dict(fit.provenance.refused) == {"nancy": "max_params_per_obs"}
    assert fit.n == SIZES["basel"] + SIZES["luxembourg"]
    small = fed.cox(duration="duration", event="event", covariates=["x"])
    assert small.provenance is not None and not small.provenance.refused

    nobody = Federation.from_tables(tables, policy=OPEN.model_copy(update={"allowed_analyses": ()}))
    with pytest.raises(FederationError, match=r"every site refused.*allowed_analyses"):
        nobody.logistic(outcome="treated", covariates=["x"])
    with pytest.raises(FederationError, match="every site refused"):
        nobody.kaplan_meier(duration="duration", event="event")


def test_a_site_refusing_the_model_leaves_with_its_levels(tables: dict[str, pd.DataFrame]) -> None:
    """A site that answers the design round but refuses the probe takes no coefficient along:
    its own category level (here its site) would otherwise have no rows, a singular fit."""
    tight = OPEN.model_copy(update={"max_params_per_obs": 4 / 150})
    fit = Federation.from_tables(tables, policy=tight).logistic(
        outcome="treated", covariates=["x", "site"]
    )
    assert fit.provenance is not None
    assert dict(fit.provenance.refused) == {"nancy": "max_params_per_obs"}
    rest = pd.concat([tables["basel"], tables["luxembourg"]], ignore_index=True)
    rest["site"] = ["basel"] * len(tables["basel"]) + ["luxembourg"] * len(tables["luxembourg"])
    local = logistic(rest, outcome="treated", covariates=["x", "site"])
    assert list(fit.summary.index) == list(local.summary.index)
    np.testing.assert_allclose(fit.summary.to_numpy(), local.summary.to_numpy(), atol=1e-8)


# ---------------------------------------------------------------------- binning


def test_binning_rounds_up_in_both_modes(
    tables: dict[str, pd.DataFrame], rows: pd.DataFrame
) -> None:
    weekly = OPEN.model_copy(update={"km_time_bin_days": 7})
    fed = Federation.from_tables(tables, policy=weekly)
    km = fed.kaplan_meier(duration="duration", event="event", group="treated")
    pooled = fed.pooled().kaplan_meier(duration="duration", event="event", group="treated")
    assert (km.summary["time"] % 7 == 0).all()
    by_hand = rows.assign(duration=np.ceil(rows["duration"] / 7) * 7)
    ref = kaplan_meier(by_hand, duration="duration", event="event", group="treated")
    for other in (pooled, ref):
        np.testing.assert_allclose(km.summary["survival"], other.summary["survival"], atol=1e-12)
        np.testing.assert_array_equal(km.summary["time"], other.summary["time"])
    # day 1..7 -> 7, 8 -> 14; day 0 stays 0
    small = pd.DataFrame({"t": [0, 1, 7, 8], "e": [1, 1, 1, 1]})
    table, _, _ = binned_event_table(small, duration="t", event="e", bin_days=7)
    assert table["time"].tolist() == [0.0, 7.0, 14.0]
    assert table["n_events"].tolist() == [1, 2, 1]
    # fractional days move to the end of their day with the default bin of 1
    frac = pd.DataFrame({"t": [0.2, 1.0, 1.5], "e": [1, 0, 1], "site": "a"})
    one = Federation.from_tables({"a": frac}, policy=OPEN).kaplan_meier(duration="t", event="e")
    assert one.summary["time"].tolist() == [1.0, 2.0]


# ---------------------------------------------------------------------- small cells


def _runs(events: list[int], censored: list[int], k: int) -> list[int] | None:
    out = merge_runs(np.array(events), np.array(censored), k)
    return None if out is None else out.tolist()


def test_merge_runs_by_hand() -> None:
    # events 1,2 -> run of 3; then 0 events with 3 censored; then 5 events
    assert _runs([1, 2, 0, 5], [0, 0, 3, 0], 3) == [0, 0, 1, 2]
    # a small remainder joins the runs before it
    assert _runs([3, 0, 1], [0, 0, 3], 3) == [0, 0, 0]
    assert _runs([4, 1], [0, 0], 3) == [0, 0]
    # too few events (or censorings) in the whole cell: nothing releasable
    assert _runs([1, 1], [5, 5], 3) is None
    assert _runs([3, 0, 1], [0, 0, 1], 3) is None
    # k = 1 never merges
    assert _runs([1, 0, 2], [0, 1, 0], 1) == [0, 1, 2]


def test_default_policy_releases_no_small_counts(
    tables: dict[str, pd.DataFrame], rows: pd.DataFrame
) -> None:
    policy = DisclosurePolicy()  # min_cell_count 5
    fed = Federation.from_tables(tables, policy=policy)
    spec = EventTableSpec("duration", "event", ("treated",))
    payloads = fed.collect(EventTableStep(), spec)
    for p in payloads:
        events = p.tables["events"]
        for col in ("n_events", "n_censored"):
            v = events[col]
            assert not ((v > 0) & (v < 5)).any(), (p.site, col)
        # nothing lost: every row is counted once, events only move later
        site = rows[rows["site"] == p.site]
        assert events["n_events"].sum() == site["event"].sum()
        assert events["n_events"].sum() + events["n_censored"].sum() == len(site)
        for arm, part in events.groupby("treated"):
            cum = part.sort_values("time").set_index("time")["n_events"].cumsum()
            raw = site[(site["treated"] == arm) & (site["event"] == 1)]["duration"]
            for t, c in cum.items():
                assert c <= (raw <= t).sum()
    km = fed.kaplan_meier(duration="duration", event="event", group="treated")
    s = km.summary["survival"]
    assert ((s >= 0) & (s <= 1)).all()
    assert km.provenance is not None
    assert any("merged into later ones" in note for note in km.provenance.suppressed)
    pooled = fed.pooled().kaplan_meier(duration="duration", event="event", group="treated")
    by_hand = binned_event_table(
        rows, duration="duration", event="event", by=("treated",), min_cell_count=5
    )[0]
    merged_times = by_hand.groupby("treated")["time"].apply(list)
    got = pooled.summary.groupby("group")["time"].apply(list)
    assert got.to_dict() == merged_times.to_dict()


def test_cells_that_cannot_qualify_are_not_released() -> None:
    df = pd.DataFrame(
        {
            "t": [3, 5, 9, 11, 2, 4, 6, 8, 10, 12],
            "e": [1, 0, 1, 0, 1, 1, 1, 1, 1, 0],
            "g": ["a", "a", "a", "a", "b", "b", "b", "b", "b", "b"],
        }
    )
    policy = DisclosurePolicy(min_cell_count=2, min_cohort_size=1)
    fed = Federation.from_tables({"s": df}, policy=policy)
    km = fed.kaplan_meier(duration="t", event="e", group="g")
    assert km.groups == [
        "a"
    ]  # b has a single censoring: not releasable; a has 2 events, 2 censored
    assert km.provenance is not None
    assert any("g=b" in note for note in km.provenance.suppressed)


# ---------------------------------------------------------------------- transform, count


def test_transform_runs_at_each_site(fed: Federation, rows: pd.DataFrame) -> None:
    def centre(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(xc=df["x"] - df["x"].mean())

    derived = fed.transform(centre, "centre x within site")
    assert derived.transforms == ("centre x within site",)
    fit = derived.cox(duration="duration", event="event", covariates=["xc", "treated"])
    by_hand = rows.assign(xc=rows["x"] - rows.groupby("site")["x"].transform("mean"))
    ref = cox(
        by_hand, duration="duration", event="event", covariates=["xc", "treated"], strata="site"
    )
    np.testing.assert_allclose(fit.summary.to_numpy(), ref.summary.to_numpy(), atol=1e-8)
    pooled = derived.pooled().cox(duration="duration", event="event", covariates=["xc", "treated"])
    np.testing.assert_allclose(fit.summary.to_numpy(), pooled.summary.to_numpy(), atol=1e-8)


def test_count_suppresses_small_cells(tables: dict[str, pd.DataFrame]) -> None:
    fed = Federation.from_tables(tables, policy=DisclosurePolicy(min_cell_count=60))
    out = fed.count(by="treated", event="event")
    assert list(out.columns) == ["site", "treated", "persons", "events", "suppressed"]
    for (site, arm), row in out.set_index(["site", "treated"]).iterrows():
        df = tables[str(site)]
        part = df[df["treated"] == arm]
        persons, events = len(part), int(part["event"].sum())
        if pd.notna(row["persons"]):
            assert row["persons"] == persons
        if pd.notna(row["events"]):
            assert row["events"] == events
        assert row["persons"] is pd.NA or row["persons"] >= 60
        assert row["events"] is pd.NA or row["events"] >= 60 or row["events"] == 0
    assert out["suppressed"].any()
    assert out.attrs["provenance"]["suppressed"]
    open_counts = Federation.from_tables(tables, policy=OPEN).count()
    assert open_counts["persons"].tolist() == list(SIZES.values())


def test_provenance_is_replaceable(fed: Federation) -> None:
    fit = fed.cox(duration="duration", event="event", covariates=["x"])
    assert fit.provenance is not None
    again = dataclasses.replace(fit, provenance=None)
    assert again.provenance is None
    assert np.isnan(fit.concordance)


# ---------------------------------------------------------------------- from the CDM


def test_from_cdm_on_small_build(small_build: BuildResult) -> None:
    from clinnova_explore.analysis.survival.presets import comparison
    from clinnova_explore.analysis.survival.tte import time_to_event

    catalog = Catalog.load(small_build.catalog_path)
    spec = comparison("ms_high_efficacy_vs_platform")
    fed = Federation.from_cdm(catalog, spec)
    assert [s.id for s in fed.sites] == catalog.site_ids
    assert all(isinstance(s.data, ibis.Table) for s in fed.sites)  # lazy, at the site
    assert fed.catalog == str(catalog.path)
    # the catalog's own policy: released, suppressed event tables
    km = fed.kaplan_meier(duration="duration", event="event", group="treatment")
    # the reference rows: each site's time_to_event table (as computed once at the site)
    rows = pd.concat([s.relation().to_pandas() for s in fed.sites], ignore_index=True)
    direct = time_to_event(catalog.sites[0], spec).to_pandas()
    pd.testing.assert_frame_equal(
        rows[rows["site"] == catalog.site_ids[0]].reset_index(drop=True), direct
    )
    rows["event1"] = (rows["event"] == 1).astype("int64")
    assert km.provenance is not None
    assert km.provenance.sites == tuple(catalog.site_ids)
    assert "time_to_event" in km.provenance.definition_hashes

    # an open policy at every site: federated == pooled == pandas on the concatenated rows
    open_fed = Federation([s.with_policy(OPEN) for s in fed.sites], catalog=fed.catalog).transform(
        lambda df: df.assign(event1=(df["event"] == 1).astype("int64")), "outcome"
    )
    federated = open_fed.kaplan_meier(duration="duration", event="event1", group="treatment")
    local = kaplan_meier(rows, duration="duration", event="event1", group="treatment")
    np.testing.assert_allclose(federated.summary["survival"], local.summary["survival"], atol=1e-12)
    covs = ["treatment", "female", "age"]
    fit = open_fed.cox(duration="duration", event="event1", covariates=covs)
    pooled = open_fed.pooled().cox(duration="duration", event="event1", covariates=covs)
    ref = cox(rows, duration="duration", event="event1", covariates=covs, strata="site")
    for other in (pooled, ref):
        np.testing.assert_allclose(fit.summary.to_numpy(), other.summary.to_numpy(), atol=1e-8)
    assert fit.n == len(rows)


def test_kaplan_meier_options_and_fit_controls(fed: Federation, rows: pd.DataFrame) -> None:
    options: list[tuple[Literal["log-log", "plain"], float]] = [("log-log", 0.1), ("plain", 0.01)]
    for conf_type, alpha in options:
        kw = {"duration": "duration", "event": "event"}
        got = fed.kaplan_meier(**kw, conf_type=conf_type, alpha=alpha)
        ref = kaplan_meier(rows, **kw, conf_type=conf_type, alpha=alpha)
        np.testing.assert_allclose(got.summary["lower"], ref.summary["lower"], atol=1e-12)
        np.testing.assert_allclose(got.summary["upper"], ref.summary["upper"], atol=1e-12)
        assert (got.conf_type, got.alpha) == (conf_type, alpha)
    with pytest.raises(RuntimeError, match="did not converge"):
        fed.cox(duration="duration", event="event", covariates=["x"], max_iter=1)
    wide = fed.cox(duration="duration", event="event", covariates=["x"], alpha=0.01)
    narrow = fed.cox(duration="duration", event="event", covariates=["x"])
    assert wide.summary["hr_lower"].iloc[0] < narrow.summary["hr_lower"].iloc[0]


def test_strata_crossing_sites_are_rejected(tables: dict[str, pd.DataFrame]) -> None:
    same = {s: df.assign(site="everywhere") for s, df in tables.items()}
    fed = Federation.from_tables(same, policy=OPEN)
    with pytest.raises(ValueError, match="strata must not cross sites"):
        fed.cox(duration="duration", event="event", covariates=["x"])


def test_small_event_counts_are_not_released(tables: dict[str, pd.DataFrame]) -> None:
    few = dict(tables)
    few["nancy"] = tables["nancy"].assign(event=0)
    few["nancy"].loc[:1, "event"] = 1  # two events at nancy
    fed = Federation.from_tables(few, policy=OPEN.model_copy(update={"min_cell_count": 3}))
    fit = fed.cox(duration="duration", event="event", covariates=["x"])
    rows = pd.concat(few.values(), ignore_index=True)
    ref = cox(rows, duration="duration", event="event", covariates=["x"], strata="site")
    np.testing.assert_allclose(fit.summary.to_numpy(), ref.summary.to_numpy(), atol=1e-8)
    assert fit.events == ref.events - 2
    assert fit.provenance is not None
    assert "nancy: cox events (min_cell_count)" in fit.provenance.suppressed
