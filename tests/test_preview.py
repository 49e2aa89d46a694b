"""Preview: what each site would release (shapes, suppressed cells, refusals), releasing nothing."""

from __future__ import annotations

import pandas as pd
import pytest

from clinnova_explore.analysis.contract import (
    InProcessRunner,
    plan,
    preview,
    run,
    suppressed_cells,
)
from clinnova_explore.analysis.counts import COHORT_COUNTS, count_cohort
from clinnova_explore.analysis.payload import Payload
from clinnova_explore.catalog import Catalog, DisclosurePolicy
from clinnova_explore.cohort import builtin_definition
from clinnova_explore.federated import Federation, Preview, TableSite
from clinnova_explore.federated.audit import AuditLog
from clinnova_explore.federated.protocol import SiteInfo, SiteStatus
from clinnova_explore.federated.runtime import site_preview
from clinnova_explore.federated.steps import (
    CountSpec,
    CountStep,
    DesignSpec,
    DesignStep,
    EventTableSpec,
    EventTableStep,
)
from clinnova_explore.pipeline import BuildResult
from tests.test_runtime import Loopback, frame

POLICY = DisclosurePolicy(min_cell_count=5, min_cohort_size=10)


@pytest.fixture
def tables() -> dict[str, pd.DataFrame]:
    """Two sites with a rare level (small cells at ``a``) and a third too small to analyse."""
    a = frame(1).assign(level=["rare"] * 3 + ["common"] * 77)
    b = frame(2).assign(level="common")
    c = frame(3, n=6).assign(level="common")
    return {"a": a, "b": b, "c": c}


def shapes(payload: Payload) -> dict[str, tuple[int, int]]:
    return dict(payload.shapes())


def test_preview_shapes_equal_the_released_payloads(tables: dict[str, pd.DataFrame]) -> None:
    fed = Federation.from_tables(tables, policy=POLICY)
    cases = [
        (
            "kaplan_meier",
            {"duration": "t", "event": "e", "group": "g"},
            EventTableStep(),
            EventTableSpec("t", "e", ("g",)),
        ),
        (
            "logrank",
            {"duration": "t", "event": "e", "group": "g"},
            EventTableStep(),
            EventTableSpec("t", "e", ("g",)),
        ),
        ("count", {"by": "level", "event": "e"}, CountStep(), CountSpec(("level",), "e")),
        (
            "cox",
            {"duration": "t", "event": "e", "covariates": ["x", "level"]},
            DesignStep("cox"),
            DesignSpec(("t", "e", "x", "level", "site"), ("x", "level"), "e"),
        ),
        (
            "logistic",
            {"outcome": "e", "covariates": ["x"]},
            DesignStep("logistic"),
            DesignSpec(("e", "x"), ("x",), "e"),
        ),
    ]
    for method, kwargs, step, spec in cases:
        shown = fed.preview(method, **kwargs)
        released = fed.collect(step, spec)
        assert [p.site for p in shown] == ["a", "b", "c"], method
        for item, payload in zip(shown, released, strict=True):
            assert dict(item.shapes) == shapes(payload), (method, item.site)
            assert item.refused == payload.refused
            assert set(item.values) == set(payload.values)
            for name, df in payload.tables.items():
                assert item.columns[name] == tuple(df.columns)
        assert shown.refusals == {"c": "min_cohort_size"}, method
    cox = fed.preview("cox", duration="t", event="e", covariates=["x", "level"])
    assert "1 + p + p^2" in cox.notes[0] and "at least 2" in cox.notes[0]
    with pytest.raises(ValueError, match="cannot preview 'rmst'"):
        fed.preview("rmst", duration="t")
    with pytest.raises(TypeError, match="unexpected argument"):
        fed.preview("count", group="g")


def test_suppressed_cells_and_refusals_are_listed(tables: dict[str, pd.DataFrame]) -> None:
    fed = Federation.from_tables(tables, policy=POLICY)
    shown = fed.preview("count", by="level")
    counts = fed.count(by="level")
    # "rare" (3 persons) is suppressed at a, with one complementary cell
    assert shown.suppressed == tuple(counts.attrs["provenance"]["suppressed"])
    assert any("level=rare" in cell for cell in shown.suppressed)
    # a released table's labels may quote its (released) counts; a preview's never do
    table = pd.DataFrame(
        {
            "sex": ["F", "M"],
            "persons": pd.array([None, 40], dtype="Int64"),
            "records": [12, 55],  # released numbers, no missing value: a label column
            "suppressed": [True, False],
        }
    )
    payload = Payload("cohort", "basel", {"counts": table})
    assert suppressed_cells(payload) == ["basel: counts sex=F, records=12"]
    assert site_preview(payload, 100).suppressed == ("basel: counts sex=F",)
    summary = shown.summary
    assert list(summary.columns) == [
        "site",
        "status",
        "table",
        "rows",
        "columns",
        "suppressed",
        "refused",
        "bytes",
    ]
    by_site = summary.set_index("site")
    assert by_site.loc["a", "suppressed"] == len(shown.site("a").suppressed) >= 1
    assert by_site.loc["b", "suppressed"] == 0
    assert by_site.loc["c", "refused"] == "min_cohort_size" and by_site.loc["c", "rows"] == 0
    assert by_site.loc["a", "status"] == "ok" and by_site.loc["c", "status"].startswith("refused")
    assert (by_site.loc[["a", "b"], "bytes"] > 0).all()
    text = str(shown)
    assert "c: refused (min_cohort_size)" in text and "suppressed cell" in text
    page = shown._repr_html_()
    assert "nothing released" in page and "level=rare" in page


def test_preview_releases_nothing_and_the_audit_says_preview(
    small_build: BuildResult, tmp_path_factory: pytest.TempPathFactory
) -> None:
    audit = tmp_path_factory.mktemp("preview_audit")
    base = Catalog.load(small_build.catalog_path)
    sites = tuple(
        s.model_copy(
            update={
                "audit": str(audit / f"{s.id}.jsonl"),
                "policy": s.policy.model_copy(update={"analysis_tables": ("person",)}),
            }
        )
        for s in base
    )
    catalog = base.model_copy(update={"sites": sites})
    runner = InProcessRunner(requester="preview-test")
    fed = Federation.from_site_tables(catalog, "person", runner=runner)
    shown = fed.preview("count", by="gender_concept_id")
    assert runner.traffic == []  # no payload crossed
    logs = [AuditLog(s.audit_path(), site=s.id) for s in catalog]
    for log in logs:
        (entry,) = log.entries()
        assert entry["kind"] == "preview" and entry["requester"] == "preview-test"
        assert entry["analysis"] == "cohort"
    released = fed.collect(CountStep(), CountSpec(("gender_concept_id",)))
    for item, payload, log in zip(shown, released, logs, strict=True):
        assert dict(item.shapes) == shapes(payload)
        first, second = log.entries()
        assert second["kind"] == "release"
        # the preview recorded exactly what the release then sent
        assert first["released"] == second["released"]
    assert len(runner.traffic) == len(catalog.site_ids)

    # the CDM analyses: preview(analysis, spec, sites) and plan(public function, ...)
    defn = builtin_definition("ms_diagnosis")
    direct = preview(COHORT_COUNTS, defn, catalog)
    planned = plan(count_cohort, defn, catalog)
    assert planned.analysis is COHORT_COUNTS and planned.spec == defn
    again = planned.preview()
    assert isinstance(direct, Preview) and direct.analysis == "cohort"
    assert [dict(p.shapes) for p in direct] == [dict(p.shapes) for p in again]
    result = run(COHORT_COUNTS, defn, catalog)
    assert [p.site for p in direct] == list(result.provenance.sites)
    assert all(len(log.entries()) == 5 for log in logs)  # + preview, preview, release
    with pytest.raises(TypeError, match="did not run an analysis"):
        plan(lambda: None)


def test_a_site_that_does_not_answer_is_a_row_of_the_preview() -> None:
    sites = {k: TableSite(k, POLICY, frame(i).assign(site=k)) for i, k in enumerate("ab")}
    fed = Federation(list(sites.values()), runner=Loopback(sites, down={"b"}))
    shown = fed.preview("kaplan_meier", duration="t", event="e")
    assert [p.site for p in shown] == ["a"]
    assert shown.failed == {"b": "down: connection refused"}
    row = shown.summary.set_index("site").loc["b"]
    assert row["status"] == "down: connection refused" and row["rows"] == 0
    assert "b: down: connection refused" in str(shown)
    assert shown.summary.set_index("site").loc["a", "bytes"] > 0
    info, down = fed.status()
    assert isinstance(info, SiteInfo) and info.engine == "pandas" and info.site == "a"
    assert info.policy_version and info.audit_path is None
    assert down == SiteStatus("b", "down", "connection refused")
