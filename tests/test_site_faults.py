"""Sites that are down, slow or failing, behind the process-per-site runner.

One runner serves three site processes for the whole module with
:func:`tests.fault_sites.fault_server`: the real site runtime, made slow or failing per request
by the requester's name. Analyses run on each site's ``survival`` table
(:func:`tests.fault_sites.survival_catalog`); a partial result must equal the in-process result
over the sites that answered. The last test kills a site process.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clinnova_explore.analysis.contract import SiteUnavailableError
from clinnova_explore.catalog import Catalog
from clinnova_explore.federated import Federation
from clinnova_explore.federated.process_runner import ProcessRunner
from clinnova_explore.federated.protocol import SiteInfo, SiteRequest, SiteResponse, SiteStatus
from clinnova_explore.pipeline import BuildResult
from tests.fault_sites import SLOW_SECONDS, fault_server, survival_catalog

SITES = ("strasbourg", "basel", "freiburg")
OPEN = {"min_cell_count": 1, "min_cohort_size": 1, "max_params_per_obs": 1.0}
TIMEOUT = 1.5
KM: dict[str, Any] = {"duration": "duration", "event": "event", "group": "treatment"}
COX: dict[str, Any] = {
    "duration": "duration",
    "event": "event",
    "covariates": ["treatment", "female", "age"],
}


@pytest.fixture(scope="module")
def catalog(small_build: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    folder = tmp_path_factory.mktemp("site_faults")
    return Catalog.load(survival_catalog(small_build.catalog_path, folder, SITES, OPEN))


@pytest.fixture(scope="module")
def runner(catalog: Catalog) -> Iterator[ProcessRunner]:
    with ProcessRunner.start(catalog, timeout=60, server=fault_server) as started:
        # the first request opens each site's database; later ones reuse the connection
        _federation(catalog, started).kaplan_meier(**KM)
        started.timeout = TIMEOUT
        yield started


@pytest.fixture(scope="module")
def local(catalog: Catalog) -> Iterator[Federation]:
    """The same federation in process (each site's rows computed once, then reused)."""
    fed = _federation(catalog)
    yield fed
    fed.close()


def _federation(catalog: Catalog, runner: Any = None, **kwargs: Any) -> Federation:
    return Federation.from_site_tables(catalog, "survival", runner=runner, **kwargs)


def _without(local: Federation, site: str) -> Federation:
    """The in-process federation without ``site`` (the reference for a partial result)."""
    return Federation([s for s in local.sites if s.id != site])


@pytest.fixture
def asking(runner: ProcessRunner) -> Iterator[Any]:
    """Set the runner's requester (and so the faults) for one test."""

    def ask(requester: str) -> ProcessRunner:
        runner.requester = requester
        return runner

    yield ask
    runner.requester = "tester"


def test_a_slow_site_times_out_without_hanging(
    catalog: Catalog, local: Federation, asking: Any
) -> None:
    runner = asking("tester slow:basel")
    fed = _federation(catalog, runner, on_failure="allow_partial")
    started = time.monotonic()
    km = fed.kaplan_meier(**KM)
    assert time.monotonic() - started < TIMEOUT + 1.0
    assert km.provenance is not None and km.provenance.partial
    status = dict(km.provenance.site_status)
    assert status["strasbourg"] == status["freiburg"] == "ok"
    assert status["basel"].startswith(f"timeout: no answer within {TIMEOUT:g} s")
    rest = _without(local, "basel").kaplan_meier(**KM)
    pd.testing.assert_frame_equal(km.summary, rest.summary, check_exact=True)

    strict = _federation(catalog, runner)
    started = time.monotonic()
    with pytest.raises(SiteUnavailableError, match="site 'basel' is timeout") as caught:
        strict.kaplan_meier(**KM)
    assert time.monotonic() - started < TIMEOUT + 1.0
    assert caught.value.site == "basel"

    # once the site is done sleeping, its next answer is to the next request, not a stale one
    asking("tester")
    runner.timeout = 2 * SLOW_SECONDS + 5
    try:
        answer = runner.exchange({"basel": (None, SiteRequest("status", "tester"))})["basel"]
    finally:
        runner.timeout = TIMEOUT
    assert isinstance(answer, SiteResponse) and answer.kind == "status" and answer.info is not None


def test_a_failing_site_reports_its_error(catalog: Catalog, local: Federation, asking: Any) -> None:
    runner = asking("tester raise:freiburg")
    fed = _federation(catalog, runner, on_failure="allow_partial")
    km = fed.kaplan_meier(**KM)
    assert km.provenance is not None and km.provenance.partial
    assert km.provenance.site_status["freiburg"] == (
        "error: InjectedFault (details stay at the site)"  # not the package's: no message
    )
    rest = _without(local, "freiburg").kaplan_meier(**KM)
    pd.testing.assert_frame_equal(km.summary, rest.summary, check_exact=True)
    strict = _federation(catalog, runner)
    with pytest.raises(
        SiteUnavailableError, match="site 'freiburg' is error in analysis 'survival': InjectedFault"
    ):
        strict.kaplan_meier(**KM)
    # an analysis the site's own code cannot run: the exception's type comes back
    asking("tester")
    with pytest.raises(SiteUnavailableError, match="'survival': SurvivalInputError") as caught:
        strict.kaplan_meier(duration="no_such_column", event="event")
    assert caught.value.site == "strasbourg"


def test_payload_bytes_are_recorded_per_site_and_round(
    catalog: Catalog, runner: ProcessRunner
) -> None:
    before = len(runner.traffic)
    _federation(catalog, runner).kaplan_meier(**KM)
    sent = runner.traffic[before:]
    assert [t.site for t in sent] == list(SITES)
    assert all(t.analysis == "survival" and t.transport == "arrow" and t.nbytes > 500 for t in sent)


def test_a_killed_site_gives_a_partial_result_or_names_the_site(
    catalog: Catalog, local: Federation, runner: ProcessRunner
) -> None:
    pid = runner.pids["freiburg"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    fed = _federation(catalog, runner, on_failure="allow_partial")
    km = fed.kaplan_meier(**KM)
    assert km.provenance is not None and km.provenance.partial
    assert km.provenance.site_status["freiburg"] == (
        f"down: site process {pid} ended (exit code -9)"
    )
    rest = _without(local, "freiburg")
    pd.testing.assert_frame_equal(km.summary, rest.kaplan_meier(**KM).summary, check_exact=True)
    fit = fed.cox(**COX)
    pd.testing.assert_frame_equal(fit.summary, rest.cox(**COX).summary, check_exact=True)
    assert fit.provenance is not None and fit.provenance.partial
    strict = _federation(catalog, runner)
    with pytest.raises(SiteUnavailableError, match="site 'freiburg' is down") as caught:
        strict.kaplan_meier(**KM)
    assert "allow_partial" in str(caught.value)
    # the federation's status lists the others' details and the dead site's state
    status = {s.site: s for s in strict.status()}
    assert isinstance(status["freiburg"], SiteStatus) and status["freiburg"].state == "down"
    assert all(isinstance(status[s], SiteInfo) for s in ("strasbourg", "basel"))


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()
