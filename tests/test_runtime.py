"""The site runtime: audit per release/refusal/preview, the site's own policy, partial results."""

from __future__ import annotations

import dataclasses
import functools
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clinnova_explore.analysis.contract import (
    SiteUnavailableError,
    Traffic,
    record_traffic,
    run,
)
from clinnova_explore.analysis.counts import COHORT_COUNTS
from clinnova_explore.analysis.payload import Payload, PayloadError
from clinnova_explore.catalog import Catalog, DisclosurePolicy, Site
from clinnova_explore.cohort import builtin_definition
from clinnova_explore.federated import Federation, FederationError, SiteRuntime, TableSite
from clinnova_explore.federated.audit import AuditLog, parameters_hash, payload_hash, policy_version
from clinnova_explore.federated.protocol import (
    SiteInfo,
    SiteRequest,
    SiteResponse,
    SiteStatus,
    TableRecipe,
)
from clinnova_explore.federated.runtime import request_parameters, runtime_for
from clinnova_explore.federated.steps import (
    CountSpec,
    CountStep,
    CoxStep,
    EventTableSpec,
    EventTableStep,
)
from clinnova_explore.pipeline import BuildResult

OPEN = DisclosurePolicy(min_cell_count=1, min_cohort_size=1)


def frame(seed: int, n: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "t": np.ceil(rng.exponential(30 * np.exp(-0.5 * x))).astype("int64"),
            "e": rng.binomial(1, 0.7, n).astype("int64"),
            "x": x,
            "g": rng.integers(0, 2, n).astype("int64"),
        }
    )


@dataclass
class Loopback:
    """A remote-style runner for tests: requests and answers cross as pickles.

    ``sites`` are the site-side sources (the coordinator's sources are ignored, as over a
    network); ids in ``down`` do not answer.
    """

    sites: dict[str, Any]
    down: set[str] = field(default_factory=set)
    requester: str = "tester"
    remote: bool = True
    traffic: list[Traffic] = field(default_factory=list)

    def exchange(
        self, requests: dict[str, tuple[Any, SiteRequest]], *, strict: bool
    ) -> dict[str, SiteResponse | SiteStatus]:
        out: dict[str, SiteResponse | SiteStatus] = {}
        for site_id, (_, request) in requests.items():
            if site_id in self.down:
                out[site_id] = SiteStatus(site_id, "down", "connection refused")
                continue
            sent = pickle.loads(pickle.dumps(request))
            answer = runtime_for(self.sites[site_id]).handle(sent)
            record_traffic(self.traffic, site_id, sent, answer)
            out[site_id] = pickle.loads(pickle.dumps(answer))
        return out


@pytest.fixture(scope="module")
def catalog(small_build: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """The small build's catalog with audit logs in a folder of this module's own."""
    audit = tmp_path_factory.mktemp("audit")
    base = Catalog.load(small_build.catalog_path)
    shared = {"analysis_tables": ("person",)}  # the tests name `person` as an analysis table
    sites = tuple(
        s.model_copy(
            update={
                "audit": str(audit / f"{s.id}.jsonl"),
                "policy": s.policy.model_copy(update=shared),
            }
        )
        for s in base
    )
    return base.model_copy(update={"sites": sites})


# ---------------------------------------------------------------------- audit


def test_release_refusal_and_preview_are_audited_with_payload_hashes(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl", site="a")
    site = TableSite("a", OPEN, frame(1).assign(site="a"))
    runtime = SiteRuntime(site, audit=log)
    spec = EventTableSpec("t", "e", ("g",))
    release = SiteRequest("release", "ana", EventTableStep(), spec, transport="json")
    answer = runtime.execute(release)
    payload = Payload.from_json(answer.data)
    assert payload.site == "a" and payload.refused is None and payload.tables["events"].shape[0] > 5

    preview = runtime.execute(SiteRequest("preview", "ana", EventTableStep(), spec))
    assert preview.data == b"" and preview.preview is not None
    assert dict(preview.preview.shapes) == dict(payload.shapes())

    strict = SiteRuntime(
        TableSite("a", DisclosurePolicy(min_cohort_size=1000), site.data), audit=log
    )
    refused = strict.execute(release)
    assert Payload.from_json(refused.data).refused == "min_cohort_size"

    entries = log.entries()
    assert [e["kind"] for e in entries] == ["release", "preview", "release"]
    assert [e["requester"] for e in entries] == ["ana"] * 3
    assert entries[0]["released"]["payload"] == payload_hash(payload)
    assert entries[1]["released"]["payload"] == payload_hash(payload)  # what would have left
    assert entries[0]["released"]["shapes"] == {"events": list(payload.tables["events"].shape)}
    assert entries[2]["released"] is None and entries[2]["refused"] == "min_cohort_size"
    assert entries[2]["policy"] == policy_version(DisclosurePolicy(min_cohort_size=1000))
    assert entries[0]["policy"] == policy_version(OPEN)
    assert log.verify().ok and log.verify().entries == 3
    # the request's parameters are hashed, never written out
    assert entries[0]["parameters"] == parameters_hash(request_parameters(release))
    assert request_parameters(release)["spec"]["by"] == ["g"]


def test_catalog_sites_audit_every_round_of_a_federated_analysis(catalog: Catalog) -> None:
    logs = {s.id: AuditLog(s.audit_path(), site=s.id) for s in catalog}
    before = {k: len(v.entries()) for k, v in logs.items()}
    with Federation.from_site_tables(catalog, "person") as fed:
        fed.count(by="gender_concept_id")
        payloads = fed.collect(CountStep(), CountSpec(("year_of_birth",)))
    for p in payloads:
        new = logs[p.site].entries()[before[p.site] :]
        assert [e["analysis"] for e in new] == ["cohort", "cohort"]
        assert all(e["kind"] == "release" and e["site"] == p.site for e in new)
        assert new[0]["parameters"] != new[1]["parameters"]  # two different requests
        if p.refused is None:
            assert new[-1]["released"]["payload"] == payload_hash(p)
        else:
            assert new[-1]["refused"] == p.refused
        assert logs[p.site].verify().ok


def test_status_describes_the_site_and_its_audit(catalog: Catalog) -> None:
    fed = Federation.from_site_tables(catalog, "person")
    infos = fed.status()
    assert [i.site for i in infos] == catalog.site_ids
    first = infos[0]
    assert isinstance(first, SiteInfo)
    assert first.engine == "duckdb" and first.engine_version
    assert first.name == catalog.sites[0].name and first.country == catalog.sites[0].country
    assert first.policy == catalog.sites[0].policy.model_dump(mode="json")
    assert first.policy_version == policy_version(catalog.sites[0].policy)
    assert first.audit_path == str(catalog.sites[0].audit_path()) and first.audit_ok
    persons = fed.count()
    assert persons["persons"].sum() == sum(
        int(s.table("person").count().execute()) for s in catalog
    )


# ---------------------------------------------------------------------- the site's own policy


def test_remote_sites_build_their_table_and_apply_their_own_policy(catalog: Catalog) -> None:
    from clinnova_explore.analysis.survival.presets import comparison

    spec = comparison("ms_high_efficacy_vs_platform")
    # what the coordinator believes: every site open; what the sites enforce: their catalog
    # policy, and one site that analyses nobody
    believed = [
        Site.model_validate({**s.model_dump(by_alias=True), "policy": OPEN, "base_dir": s.base_dir})
        for s in catalog
    ]
    strict_id = catalog.site_ids[1]
    actual = {
        s.id: (
            s.model_copy(update={"policy": DisclosurePolicy(min_cohort_size=10**6)})
            if s.id == strict_id
            else s
        )
        for s in catalog
    }
    runner = Loopback(actual)
    fed = Federation.from_cdm(believed, spec, runner=runner)
    assert all(s.data is None and s.recipe == TableRecipe("time_to_event", spec) for s in fed.sites)
    km = fed.kaplan_meier(duration="duration", event="event", group="treatment")
    assert km.provenance.refused == {strict_id: "min_cohort_size"}
    assert km.provenance.site_status[strict_id] == "refused: min_cohort_size"
    # the coordinator opened no connection; the sites did
    assert all("_con" not in s.__dict__ for s in believed)
    # the curve starts with everyone at the answering sites (each built its table itself)
    recipe = fed.sites[0].request_recipe()
    rows = {
        k: runtime_for(v).site_for(recipe).n_rows() for k, v in actual.items() if k != strict_id
    }
    left = km.summary["n_events"].sum() + km.summary["n_censored"].sum()
    dropped = [c for c in km.provenance.suppressed if "not released" in c]
    total = sum(rows.values())
    assert 0 < left <= total
    assert (left == total) == (not dropped)  # only a withheld site/arm table loses persons
    assert {t.site for t in runner.traffic} == set(actual)
    with pytest.raises(FederationError, match="stay at the sites"):
        fed.pooled()
    # the sites keep their tables until the coordinator says forget
    kept = runtime_for(actual[catalog.site_ids[0]])._tables
    assert len(kept) == 1
    fed.close()
    assert not kept


# ---------------------------------------------------------------------- failures


@pytest.fixture
def broken() -> dict[str, pd.DataFrame]:
    """Three sites; ``c`` lacks the covariate column, so every model or count on it raises."""
    return {"a": frame(1), "b": frame(2), "c": frame(3).drop(columns=["x"])}


def test_allow_partial_equals_the_pooled_fit_of_the_other_sites(
    broken: dict[str, pd.DataFrame],
) -> None:
    fed = Federation.from_tables(broken, policy=OPEN, on_failure="allow_partial")
    rest = Federation.from_tables({k: broken[k] for k in "ab"}, policy=OPEN)
    fit = fed.cox(duration="t", event="e", covariates=["x", "g"])
    ref = rest.pooled().cox(duration="t", event="e", covariates=["x", "g"])
    np.testing.assert_allclose(fit.summary.to_numpy(), ref.summary.to_numpy(), atol=1e-8)
    assert fit.n == len(broken["a"]) + len(broken["b"])
    prov = fit.provenance
    assert prov.partial and prov.refused == {}
    assert prov.site_status["a"] == prov.site_status["b"] == "ok"
    # the status names the failure's type; the message (a builtin's) stays at the site
    assert prov.site_status["c"] == "error: KeyError (details stay at the site)"
    logit = fed.logistic(outcome="e", covariates=["x"])
    assert logit.provenance.partial
    # statuses belong to each analysis: site c can count (it has ``g``)
    counts = fed.count(by="g")
    assert sorted(counts["site"].unique()) == ["a", "b", "c"]
    assert counts.attrs["provenance"]["partial"] is False
    assert counts.attrs["provenance"]["site_status"] == {"a": "ok", "b": "ok", "c": "ok"}


def test_require_all_sites_names_the_failing_site(broken: dict[str, pd.DataFrame]) -> None:
    fed = Federation.from_tables(broken, policy=OPEN)
    # in process the site's own exception comes through, saying where it happened
    with pytest.raises(KeyError, match="site 'c'"):
        fed.cox(duration="t", event="e", covariates=["x"])
    # across a boundary: the coordinator's error names site, state and detail
    sites = {k: TableSite(k, OPEN, v.assign(site=k)) for k, v in broken.items()}
    remote = Federation(list(sites.values()), runner=Loopback(sites))
    with pytest.raises(
        SiteUnavailableError, match=r"site 'c' is error in analysis 'cox'.*KeyError"
    ):
        remote.cox(duration="t", event="e", covariates=["x"])
    ok = {k: sites[k] for k in "ab"}
    down = Federation(list(sites.values()), runner=Loopback(sites, down={"c"}))
    with pytest.raises(SiteUnavailableError, match="site 'c' is down") as info:
        down.kaplan_meier(duration="t", event="e")
    assert info.value.site == "c" and info.value.status.state == "down"
    partial = Federation(
        list(sites.values()), runner=Loopback(sites, down={"c"}), on_failure="allow_partial"
    )
    km = partial.kaplan_meier(duration="t", event="e")
    expected = Federation(list(ok.values())).kaplan_meier(duration="t", event="e")
    pd.testing.assert_frame_equal(km.summary, expected.summary)
    assert dict(km.provenance.site_status) == {
        "a": "ok",
        "b": "ok",
        "c": "down: connection refused",
    }
    assert km.provenance.to_dict()["partial"] is True


def test_run_allow_partial_over_a_catalog_with_a_missing_database(
    catalog: Catalog, tmp_path: Path
) -> None:
    ghost = Site(id="ghost", name="Ghost", country="LU", location=str(tmp_path / "missing.duckdb"))
    sites = [*catalog.sites, ghost]
    defn = builtin_definition("ms_diagnosis")
    with pytest.raises(Exception, match="ghost"):
        run(COHORT_COUNTS, defn, sites)
    result = run(COHORT_COUNTS, defn, sites, on_failure="allow_partial")
    full = run(COHORT_COUNTS, defn, catalog)
    assert result.provenance.partial and not full.provenance.partial
    assert result.provenance.site_status["ghost"].startswith("error: ")
    assert all(
        result.provenance.site_status[s] in ("ok",)
        or result.provenance.site_status[s].startswith("refused")
        for s in catalog.site_ids
    )
    pd.testing.assert_frame_equal(result.summary, full.summary)


def test_handle_never_raises_and_execute_does() -> None:
    runtime = SiteRuntime(TableSite("z", OPEN, frame(4).assign(site="z")))
    bad = SiteRequest("release", "ana", CountStep(), CountSpec(("nope",)))
    answer = runtime.handle(bad)
    assert not answer.ok and answer.error == "KeyError (details stay at the site)"
    with pytest.raises(KeyError):
        runtime.execute(bad)
    unknown = runtime.handle(
        SiteRequest("release", "ana", CountStep(), CountSpec(), transport="xml")
    )
    assert unknown.error == "ValueError (details stay at the site)"


def test_the_guard_refuses_a_near_duplicate_also_after_a_preview(tmp_path: Path) -> None:
    from clinnova_explore.federated.guard import DifferencingGuard

    policy = DisclosurePolicy(min_cell_count=5, min_cohort_size=10, differencing_guard=True)
    rows = frame(5, n=100).assign(person_id=np.arange(100), site="a")
    guard = DifferencingGuard("a", None)
    log = AuditLog(tmp_path / "a.jsonl", site="a")
    everyone = SiteRuntime(TableSite("a", policy, rows), audit=log, guard=guard)
    fewer = TableSite("a", policy, rows.iloc[2:].reset_index(drop=True))
    minus_two = SiteRuntime(fewer, audit=log, guard=guard)

    def ask(runtime: SiteRuntime, kind: str) -> SiteResponse:
        return runtime.execute(SiteRequest(kind, "ana", CountStep(), CountSpec(("g",))))

    # a preview counts as a release for the guard: otherwise its refusals would answer
    # "is this person in the cohort?" as often as asked, without a trace in any release
    assert ask(everyone, "preview").preview.refused is None  # type: ignore[union-attr]
    assert Payload.from_arrow(ask(minus_two, "release").data).refused == "differencing"
    assert ask(minus_two, "preview").preview.refused == "differencing"  # type: ignore[union-attr]
    assert Payload.from_arrow(ask(everyone, "release").data).refused is None  # same cohort
    entries = log.entries()
    assert [(e["kind"], e["refused"]) for e in entries] == [
        ("preview", None),
        ("release", "differencing"),
        ("preview", "differencing"),
        ("release", None),
    ]
    # the guard keeps person sets, never in the log: the log holds hashes and shapes only
    assert "person_id" not in (tmp_path / "a.jsonl").read_text()


# ---------------------------------------------------------------------- what a request can do


def test_a_site_error_keeps_data_values_at_the_site(tmp_path: Path) -> None:
    rows = frame(1).assign(site="a", name="Jane Doe")
    log = AuditLog(tmp_path / "a.jsonl", site="a")
    runtime = SiteRuntime(TableSite("a", OPEN, rows), audit=log)
    request = SiteRequest("release", "ana", CountStep(), CountSpec(("g",), "name"))
    answer = runtime.handle(request)  # the count step casts `name` to integers and fails
    assert not answer.ok and answer.error == "ValueError (details stay at the site)"
    assert "Jane" not in answer.error
    (entry,) = log.entries()  # the failure is in the site's log, as a refusal
    assert (entry["refused"], entry["analysis"], entry["released"]) == ("error", "cohort", None)
    # the package's own errors name columns and rules, and keep their message
    missing = SiteRequest("release", "ana", CountStep(), CountSpec(("nope",)))
    assert runtime.handle(missing).error.startswith("KeyError (details")  # a builtin: kept back
    step = SiteRequest("release", "ana", CoxStep(name="cohort"), None)
    error = runtime.handle(step).error
    assert error.startswith("PayloadError: site 'a': a CoxStep step runs as 'cox', not 'cohort'")


def test_a_renamed_step_cannot_pass_allowed_analyses() -> None:
    only_counts = OPEN.model_copy(update={"allowed_analyses": ("cohort",)})
    runtime = SiteRuntime(TableSite("a", only_counts, frame(1).assign(site="a")))
    renamed = dataclasses.replace(EventTableStep(), name="cohort")
    request = SiteRequest("release", "ana", renamed, EventTableSpec("t", "e", ("g",)))
    with pytest.raises(PayloadError, match="EventTableStep step runs as 'survival', not 'cohort'"):
        runtime.execute(request)
    honest = SiteRequest("release", "ana", EventTableStep(), EventTableSpec("t", "e", ("g",)))
    refused = Payload.from_arrow(runtime.execute(honest).data)
    assert refused.refused == "allowed_analyses"


def test_only_tables_the_site_shares_can_be_named(catalog: Catalog) -> None:
    with Federation.from_site_tables(catalog, "death") as fed:  # not in analysis_tables
        payloads = fed.collect(CountStep(), CountSpec(()))
    assert {p.refused for p in payloads} == {"analysis_tables"}
    assert all(not p.tables and not p.values for p in payloads)


def test_a_site_keeps_one_table_per_recipe_down_to_the_last_bit() -> None:
    from clinnova_explore.federated.runtime import _recipe_key
    from clinnova_explore.federated.site_transforms import with_outcome

    def recipe(values: list[float]) -> TableRecipe:
        bound = functools.partial(with_outcome, event="event", outcome=np.array(values))
        return TableRecipe("table", "tte", (("outcome", bound),))

    assert _recipe_key(recipe([0.123456789])) == _recipe_key(recipe([0.123456789]))
    assert _recipe_key(recipe([0.123456789])) != _recipe_key(recipe([0.1234568]))
    long = [0.0] * 100
    assert _recipe_key(recipe(long)) != _recipe_key(recipe([*long[:50], 1.0, *long[51:]]))
