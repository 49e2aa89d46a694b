"""The federation dashboard: its state without a browser (policies against the catalog, audit
rows against the logs that real releases wrote, previews against the payloads released later,
a site that is down as a row saying so), the survival dashboard's preview pane, and the served
page in headless Chromium."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import panel as pn
import pytest
import yaml

from clinnova_explore.analysis.contract import release
from clinnova_explore.analysis.counts import COHORT_COUNTS, count_cohort
from clinnova_explore.analysis.survival.presets import comparison
from clinnova_explore.catalog import Catalog
from clinnova_explore.cohort import builtin_definition
from clinnova_explore.federated.audit import AuditLog
from clinnova_explore.pipeline import BuildResult
from clinnova_explore.viz import federation_views as views
from clinnova_explore.viz import survival_views
from clinnova_explore.viz.federation_state import (
    FederationState,
    audit_rows,
    preview_rows,
    runner_from_env,
)
from clinnova_explore.viz.survival_state import Problem, SurvivalState
from tests.characterize_reference import catalog_copy
from tests.support import CHROMIUM, CHROMIUM_ARGS, need, served_dashboard

RELAXED = {"min_cell_count": 1, "min_cohort_size": 1, "max_params_per_obs": 1.0}
COHORT = "ms_high_efficacy_start"
MS = "ms_high_efficacy_vs_platform"
RA = "ra_anti_tnf_vs_other_moa"
SERVED = ["basel", "freiburg", "homburg"]


def _ok(value: Any) -> Any:
    assert not isinstance(value, Problem), value.message
    return value


@pytest.fixture
def catalog(small_build: BuildResult, tmp_path: Path) -> Iterator[Catalog]:
    """Three sites, each with its own policy, audit logs in a fresh folder."""
    policies: dict[str, dict[str, Any]] = {
        "basel": {"min_cell_count": 3, "min_cohort_size": 20},
        "freiburg": {"km_time_bin_days": 30, "allowed_analyses": ["survival", "cox"]},
        "*": {"min_cell_count": 5},
    }
    path = catalog_copy(small_build, tmp_path, policies, ["basel", "freiburg", "homburg"])
    cat = Catalog.load(path)
    yield cat
    cat.close()


@pytest.fixture
def make_state(catalog: Catalog) -> Iterator[Callable[..., FederationState]]:
    """States on :func:`catalog`, closed (their sites' kept rows released) before it is."""
    made: list[FederationState] = []

    def make(**params: Any) -> FederationState:
        made.append(FederationState(catalog, **params))
        return made[-1]

    yield make
    for state in made:
        state.close()


def test_policies_are_the_catalogs(catalog: Catalog) -> None:
    rows = FederationState(catalog).policies().set_index("site")
    assert list(rows.index) == ["basel", "freiburg", "homburg"]
    for site in catalog.sites:
        for rule, value in site.policy.model_dump().items():
            shown = rows.at[site.id, rule]
            if rule == "allowed_analyses":
                assert shown.split(", ") == list(value)
            else:
                assert shown == value or (value is None and pd.isna(shown))
    assert rows.at["basel", "min_cell_count"] == 3 and rows.at["homburg", "min_cell_count"] == 5
    assert rows.at["freiburg", "allowed_analyses"] == "survival, cox"


def test_status_has_one_row_per_site_with_versions(catalog: Catalog) -> None:
    from clinnova_explore.federated.audit import policy_version

    rows = FederationState(catalog).status().set_index("site")
    assert list(rows.index) == catalog.site_ids
    assert set(rows["state"]) == {"ok"}
    assert set(rows["engine"]) == {"duckdb"}
    for site in catalog.sites:
        assert rows.at[site.id, "name"] == site.name
        assert rows.at[site.id, "cdm_version"] == site.cdm_version
        assert rows.at[site.id, "policy_version"] == policy_version(site.policy)
    assert (rows["engine_version"] != "").all() and (rows["library_version"] != "").all()


def test_a_site_that_is_down_is_a_row(small_build: BuildResult, tmp_path: Path) -> None:
    path = catalog_copy(small_build, tmp_path, {}, ["basel", "homburg"])
    doc = yaml.safe_load(path.read_text())
    doc["sites"][1]["location"] = str(tmp_path / "gone.duckdb")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    cat = Catalog.load(path)
    rows = FederationState(cat).status().set_index("site")
    cat.close()
    assert rows.at["basel", "state"] == "ok"
    assert rows.at["homburg", "state"] in {"down", "error"}
    assert rows.at["homburg", "name"] == cat.site("homburg").name
    assert rows.at["homburg", "detail"] and "Traceback" not in rows.at["homburg", "detail"]
    shown = views.status_view(FederationState(cat))()
    note = shown[1].object
    assert "homburg" in note and "basel" not in note


@pytest.mark.slow
def test_site_processes_one_killed(small_build: BuildResult, tmp_path: Path) -> None:
    """Behind the process-per-site runner (the dashboard's runner with ``$CLINNOVA_SITES``),
    a killed site is a ``down`` row in the status and the preview, and the others answer."""
    from clinnova_explore.federated.process_runner import ProcessRunner

    path = catalog_copy(small_build, tmp_path, {}, ["basel", "homburg"])
    cat = Catalog.load(path)
    with ProcessRunner.start(cat, timeout=60) as runner:
        state = FederationState(cat, runner=runner, analysis="count", cohort=COHORT)
        assert set(state.status()["state"]) == {"ok"}
        os.kill(runner.pids["homburg"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(runner.pids["homburg"]):
            time.sleep(0.1)
        rows = state.status().set_index("site")
        rows_preview = _ok(state.preview_table()).set_index("site")
    cat.close()
    assert rows.at["basel", "state"] == "ok" and rows.at["basel", "engine"] == "duckdb"
    assert rows.at["homburg", "state"] == "down" and rows.at["homburg", "detail"]
    assert rows.at["homburg", "name"] == cat.site("homburg").name
    assert rows_preview.at["homburg", "status"].startswith("down")
    assert set(rows_preview.loc["basel", "table"]) == {"counts", "attrition"}
    for text in (rows.at["homburg", "detail"], rows_preview.at["homburg", "status"]):
        assert "Traceback" not in text and "\n" not in text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_runner_from_env() -> None:
    assert runner_from_env({}) is None
    with pytest.raises(ValueError, match="CLINNOVA_SITE_KEY"):
        runner_from_env({"CLINNOVA_SITES": "basel=127.0.0.1:7401"})
    env = {
        "CLINNOVA_SITES": "basel=127.0.0.1:7401, homburg=localhost:7402",
        "CLINNOVA_SITE_KEY": "k",
    }
    runner: Any = runner_from_env(env)
    assert runner.addresses == {"basel": ("127.0.0.1", 7401), "homburg": ("localhost", 7402)}
    assert runner.authkey == b"k" and runner.remote
    runner.close()
    with pytest.raises(ValueError, match="'basel=7401' is not site=host:port"):
        runner_from_env({**env, "CLINNOVA_SITES": "basel=7401"})


def test_audit_rows_are_the_releases(catalog: Catalog) -> None:
    defn = builtin_definition(COHORT)
    count_cohort(defn, catalog)
    count_cohort(defn, catalog)  # a second request: two entries per site
    state = FederationState(catalog, site="basel", last=5)
    rows = _ok(state.audit())
    entries = AuditLog(catalog.site("basel").audit_path(), site="basel").entries()
    assert len(entries) == len(rows) == 2
    assert rows["seq"].tolist() == [2, 1]  # newest first
    payload = release(COHORT_COUNTS, defn, catalog.site("basel"))
    shapes = "; ".join(f"{n} {r}x{c}" for n, (r, c) in payload.shapes().items())
    assert rows["released"].str.startswith(shapes).all()
    assert set(rows["analysis"]) == {"cohort"} and set(rows["kind"]) == {"release"}
    assert rows["payload"].str.len().eq(12).all()
    # freiburg does not allow cohort counts: its entries are refusals naming the rule
    state.site = "freiburg"
    refused = _ok(state.audit())
    assert refused["released"].tolist() == ["refused: allowed_analyses"] * 2
    assert (refused["payload"] == "").all()
    state.last = 1
    assert len(_ok(state.audit())) == 1
    assert "2 entries" in state.audit_summary() and "verified" in state.audit_summary()
    status = state.status().set_index("site")
    assert status["audit_entries"].tolist() == [2, 2, 2]
    assert set(status["audit"]) == {"verified"}
    count_cohort(defn, catalog)  # the logs are read again on every call (and on refresh)
    assert state.audit_summary().startswith("freiburg: 3 entries")
    assert state.status().set_index("site").at["basel", "audit_entries"] == 3
    for method in ("status", "audit", "audit_summary"):  # the refresh button redraws them
        assert "refresh" in [d.name for d in state.param.method_dependencies(method)]


def test_a_tampered_log_is_shown_broken(catalog: Catalog) -> None:
    count_cohort(builtin_definition(COHORT), catalog)
    count_cohort(builtin_definition("ms_platform_start"), catalog)
    path = catalog.site("homburg").audit_path()
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    first["requester"] = "someone else"
    lines[0] = json.dumps(first)
    path.write_text("\n".join(lines) + "\n")
    state = FederationState(catalog, site="homburg")
    assert not state.audit_check().ok
    assert "BROKEN at line 1" in state.audit_summary() and "edited" in state.audit_summary()
    shown = views.audit_view(state)()
    assert shown[0].alert_type == "danger"
    status = state.status().set_index("site")
    assert status.at["homburg", "audit"] == "broken" and status.at["basel", "audit"] == "verified"
    state.site = "basel"  # the other logs are intact
    assert state.audit_check().ok


def test_audit_rows_format() -> None:
    entries = [
        {"seq": 1, "kind": "release", "released": None, "refused": "min_cohort_size"},
        {
            "seq": 2,
            "kind": "preview",
            "released": {"payload": "ab" * 32, "shapes": {"events": [12, 5]}, "values": ["n"]},
            "refused": None,
        },
    ]
    rows = audit_rows(entries)
    assert rows["seq"].tolist() == [2, 1]
    assert rows["released"].tolist() == ["events 12x5; values: n", "refused: min_cohort_size"]
    assert rows["payload"].tolist() == ["ab" * 6, ""]


def _released_since(log: AuditLog, before: int) -> list[dict[str, Any]]:
    return [e for e in log.entries()[before:] if e.get("kind", "release") == "release"]


def test_count_preview_is_what_a_release_sends(catalog: Catalog) -> None:
    state = FederationState(catalog, analysis="count", cohort=COHORT)
    logs = {s.id: AuditLog(s.audit_path(), site=s.id) for s in catalog.sites}
    rows = _ok(state.preview_table())
    assert state.preview() is state.preview()  # computed once per choice
    for log in logs.values():  # the preview released nothing, and was recorded
        entries = log.entries()
        assert [e.get("kind") for e in entries] == ["preview"]
    assert rows.set_index("site").loc["freiburg", "refused"] == "allowed_analyses"
    result = count_cohort(builtin_definition(COHORT), catalog)
    for site_id, log in logs.items():
        released = _released_since(log, 1)
        assert len(released) == 1
        mine = rows[rows["site"] == site_id]
        if released[0]["refused"]:
            assert mine["refused"].tolist() == [released[0]["refused"]]
            continue
        shapes = {
            t: [r, len(c.split(", "))]
            for t, r, c in zip(mine["table"], mine["rows"], mine["columns"], strict=True)
        }
        assert shapes == released[0]["released"]["shapes"]
    assert result.provenance.refused == {"freiburg": "allowed_analyses"}


def test_km_preview_matches_the_released_event_tables(
    catalog: Catalog, make_state: Callable[..., FederationState]
) -> None:
    state = make_state(analysis="kaplan_meier", comparison=MS)
    rows = _ok(state.preview_table())
    assert "Kaplan-Meier of" in state.pending()
    assert set(rows["site"]) == set(catalog.site_ids)
    sent = rows.drop_duplicates("site").set_index("site")["bytes"]
    from clinnova_explore.analysis.contract import InProcessRunner
    from clinnova_explore.federated import Federation
    from clinnova_explore.federated.site_transforms import with_outcome

    runner = InProcessRunner()
    with Federation.from_cdm(catalog, comparison(MS), runner=runner) as fed:
        fed.transform(with_outcome, "outcome").kaplan_meier(
            duration="duration", event="outcome", group="treatment"
        )
    got = {t.site: t.nbytes for t in runner.traffic}
    assert got == sent.to_dict()
    log = AuditLog(catalog.site("homburg").audit_path(), site="homburg")
    kinds = [(e["analysis"], e["kind"]) for e in log.entries()]
    assert kinds == [("survival", "preview"), ("survival", "release")]
    state.comparison = RA  # another comparison: another preview, recorded as such
    assert state.pending().startswith("Kaplan-Meier of RA")
    assert _ok(state.preview()) is not _ok(state.preview_table())
    entries = log.entries()
    assert (
        entries[-1]["kind"] == "preview" and entries[-1]["parameters"] != entries[0]["parameters"]
    )


def test_switching_the_analysis_changes_the_preview(
    catalog: Catalog, make_state: Callable[..., FederationState]
) -> None:
    state = make_state(analysis="table1", cohort=COHORT)
    table1 = _ok(state.preview_table())
    assert set(table1.loc[table1["refused"] == "", "table"]) == {"counts", "moments"}
    state.analysis = "count"
    count = _ok(state.preview_table())
    assert set(count.loc[count["refused"] == "", "table"]) == {"counts", "attrition"}
    assert count.set_index("site").loc["freiburg", "refused"] == "allowed_analyses"
    state.cohort = "ms_platform_start"
    assert state.pending() == f"Cohort count of {builtin_definition('ms_platform_start').name}"
    assert _ok(state.preview_table()) is not count
    state.analysis = "cox"  # freiburg allows Cox models, so nobody refuses
    cox = _ok(state.preview_table())
    assert (cox["refused"] == "").all() and set(cox["site"]) == set(catalog.site_ids)
    shown: Any = views.preview_view(state)()
    text = shown[0][0].object
    assert text.startswith(f"**{state.pending()}**") and "Newton round" in text
    state.analysis = "count"
    shown = views.preview_view(state)()
    text = shown[0][0].object
    assert "freiburg (allowed_analyses)" in text.split("\n\n")[1]  # the "Would refuse" line
    assert "Not answering" not in text


def test_survival_preview_pane(small_build: BuildResult, tmp_path: Path) -> None:
    path = catalog_copy(small_build, tmp_path, {"*": RELAXED}, ["basel", "freiburg"])
    cat = Catalog.load(path)
    state = SurvivalState(cat, comparison=MS, stratify_by="site")
    previews = state.release_preview()
    km = preview_rows(_ok(previews["Kaplan-Meier"]))
    assert set(km["site"]) == {"basel", "freiburg"} and (km["refused"] == "").all()
    fed = _ok(state.federation())
    state.km()
    sent = {t.site: t.nbytes for t in fed.runner.traffic if t.analysis == "survival"}
    assert sent == km.drop_duplicates("site").set_index("site")["bytes"].to_dict()
    # the dashboard's kept rows still belong to their sites: both steps are in their logs
    for site in cat:
        entries = AuditLog(site.audit_path(), site=site.id).entries()
        kinds = {(e["analysis"], e["kind"]) for e in entries}
        assert {("survival", "preview"), ("cox", "preview"), ("survival", "release")} <= kinds
    pane: Any = survival_views.preview_tab(state)()
    assert isinstance(pane, pn.Column)
    frame: Any = pane[0]
    assert "Kaplan-Meier (federated)" in frame[0].object
    cat.close()


# ---------------------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def served(small_build: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("federation-served")
    path = catalog_copy(small_build, folder, {"*": RELAXED}, SERVED)
    cat = Catalog.load(path)
    count_cohort(builtin_definition(COHORT), cat)  # one release per site in the logs
    cat.close()
    with served_dashboard("federation", path, tmp_path_factory.mktemp("panel-fed")) as url:
        yield url


_ALL_TEXT = """() => {
  const out = [];
  const walk = (node) => {
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) out.push(child.textContent);
      else if (!["STYLE", "SCRIPT"].includes(child.nodeName)) walk(child);
    }
  };
  walk(document.body);
  return out.join(" ");
}"""
"""Every text on the page, inside Panel's shadow roots too."""


def _cells(page: Any, selector: str) -> list[str]:
    return [c.strip() for c in page.locator(f"{selector} .tabulator-cell").all_inner_texts()]


@pytest.mark.browser
@pytest.mark.slow
def test_served_page_shows_sites_audit_and_preview(served: str, tmp_path: Path) -> None:
    need(CHROMIUM.exists(), f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    sites = list(SERVED)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(served)
        page.locator(".site-status .tabulator-row").first.wait_for(timeout=120_000)
        status = _cells(page, ".site-status")
        assert all(s in status for s in sites) and "ok" in status and "duckdb" in status
        assert "All sites answered." in page.locator(".status-note p").inner_text()
        assert all(s in _cells(page, ".site-policies") for s in sites)
        text = page.evaluate(_ALL_TEXT)  # each tab's text while it is shown
        page.locator(".bk-tab", has_text="Audit").click()
        page.locator(".audit-entries .tabulator-row").first.wait_for(timeout=60_000)
        assert "cohort" in _cells(page, ".audit-entries")
        assert "verified" in page.locator(".audit-chain p").inner_text()
        text += page.evaluate(_ALL_TEXT)
        page.locator(".bk-tab", has_text="What would leave").click()
        page.locator(".preview-table .tabulator-row").first.wait_for(timeout=120_000)
        deadline = time.monotonic() + 30
        while not all(s in _cells(page, ".preview-table") for s in sites):
            assert time.monotonic() < deadline, _cells(page, ".preview-table")
            time.sleep(0.3)
        assert "events" in _cells(page, ".preview-table")  # the event tables KM would send
        text += page.evaluate(_ALL_TEXT)
        page.screenshot(path=str(tmp_path / "federation.png"), full_page=True)
        browser.close()
    assert not errors, errors
    assert "All sites answered" in text and "hash chain verified" in text
    assert "Kaplan-Meier of MS" in text
    for bad in ("Traceback", "Error", "unexpected", "No preview"):
        assert bad not in text
