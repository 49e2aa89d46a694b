"""The process-per-site runner: the wire's strict reader, and real site processes.

The runner tests start three site processes once for the module (on a copy of three sites of
the session's 800-person federation, with an open policy and a small ``survival`` table) and
compare every answer with the in-process runner over the same sites: the payload bytes, and
so the results, are identical.
"""

from __future__ import annotations

import datetime
import functools
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clinnova_explore import pipeline
from clinnova_explore.analysis.contract import InProcessRunner, Traffic
from clinnova_explore.analysis.survival.presets import comparison
from clinnova_explore.catalog import Catalog, DisclosurePolicy
from clinnova_explore.cohort.library import builtin_definition, builtin_definition_names
from clinnova_explore.federated import Federation, rpc
from clinnova_explore.federated.audit import AuditLog
from clinnova_explore.federated.process_runner import ProcessRunner
from clinnova_explore.federated.protocol import (
    SiteInfo,
    SitePreview,
    SiteRequest,
    SiteResponse,
    SiteStatus,
    TableRecipe,
)
from clinnova_explore.federated.steps import EventTableSpec, EventTableStep
from clinnova_explore.pipeline import BuildResult, build
from tests.fault_sites import survival_catalog

SITES = ("strasbourg", "basel", "freiburg")
OPEN = {"min_cell_count": 1, "min_cohort_size": 1, "max_params_per_obs": 1.0}
SPEC = comparison("ms_high_efficacy_vs_platform")


# ---------------------------------------------------------------------- the strict reader


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "i": np.arange(3, dtype="int64"),
            "f": [0.5, np.nan, 2.0],
            "s": ["a", "b", None],
            "n": pd.array([1, None, 3], dtype="Int64"),
            "b": pd.array([True, None, False], dtype="boolean"),
            "c": pd.Categorical(["x", "y", "x"]),
            "t": pd.to_datetime(["2020-01-01", None, "2021-06-30"]),
            "z": pd.to_datetime(["2020-01-01"] * 3).tz_localize("UTC"),
            "d": pd.to_timedelta([1, 2, 3], unit="D"),
            "u": pd.array(["p", None, "q"], dtype="string"),
        },
        index=pd.Index([10, 20, 30], name="row"),
    )


def test_reader_rebuilds_what_requests_and_answers_carry() -> None:
    df = _frame()
    pd.testing.assert_frame_equal(rpc.loads(rpc.dumps(df)), df)
    series = pd.Series([1.5, 2.5], index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)]))
    pd.testing.assert_series_equal(rpc.loads(rpc.dumps(series)), series)
    arrays = [np.arange(6.0).reshape(2, 3), np.array(["a", None], dtype=object), np.int64(7)]
    for value in arrays:
        np.testing.assert_array_equal(rpc.loads(rpc.dumps(value)), value)
    plain = [
        datetime.date(2020, 1, 2),
        datetime.datetime(2020, 1, 2, 3, tzinfo=datetime.UTC),
        OrderedDict(a=1),
        {1, 2},
        frozenset({"x"}),
        complex(1, 2),
        range(3),
        Path("/tmp/x"),
        pd.Timestamp("2020-01-01"),
        pd.NaT,
        pd.NA,
        DisclosurePolicy(min_cell_count=3),
        SPEC,
        *(builtin_definition(n) for n in builtin_definition_names()),
    ]
    for value in plain:
        back = rpc.loads(rpc.dumps(value))
        assert back is value if value is pd.NA or value is pd.NaT else back == value
    request = SiteRequest(
        "release",
        "someone",
        EventTableStep(),
        EventTableSpec("duration", "event", ("treatment",)),
        TableRecipe("time_to_event", SPEC, (("label", functools.partial(rpc.loads)),)),
    )
    back = rpc.loads(rpc.dumps(request))
    assert isinstance(back, SiteRequest) and back.spec == request.spec
    assert back.recipe is not None and back.recipe.spec == SPEC
    transform = back.recipe.transforms[0][1]
    assert isinstance(transform, functools.partial) and transform.func is rpc.loads
    preview = SitePreview("basel", "survival", None, {"events": (3, 4)}, {"events": ("a",)})
    info = SiteInfo("basel", "Basel", "CH", "duckdb", "1", "5.4", "0", {"a": 1}, "v1")
    answer = SiteResponse("basel", "status", info=info, preview=preview, data=b"\x00" * 10)
    assert rpc.loads(rpc.dumps(answer)) == answer


class _Calls:
    """Pickles as a call of ``func(*args)`` (what an attacker would send)."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def _global(module: str, name: str) -> bytes:
    """A protocol-4 pickle of one global, written by hand (pickle would refuse some)."""

    def text(value: str) -> bytes:
        raw = value.encode()
        return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw

    return pickle.PROTO + b"\x04" + text(module) + text(name) + pickle.STACK_GLOBAL + pickle.STOP


@pytest.mark.parametrize(
    ("message", "named"),
    [
        (lambda marker: pickle.dumps(_Calls(os.system, f"touch {marker}")), "posix.system"),
        (lambda marker: pickle.dumps(_Calls(eval, f"open({str(marker)!r}, 'w')")), "builtins.eval"),
        (lambda marker: pickle.dumps(_Calls(getattr, "text", "upper")), "builtins.getattr"),
        (lambda marker: pickle.dumps(_Calls(subprocess.Popen, ["touch", marker])), "subprocess"),
        # a function outside the package, even a harmless one
        (
            lambda marker: pickle.dumps(_Calls(_global, "os", "system")),
            "test_process_runner._global",
        ),
        # the package's own functions may be referenced (transforms) but never called
        (lambda marker: pickle.dumps(_Calls(build, marker)), "clinnova_explore.pipeline.build"),
        (
            lambda marker: pickle.dumps(_Calls(rpc.dumps, marker)),
            "clinnova_explore.federated.rpc.dumps",
        ),
        # names reached through a package module: imported modules, dotted attribute paths
        (lambda marker: _global("clinnova_explore.catalog", "os"), "clinnova_explore.catalog.os"),
        (lambda marker: _global("clinnova_explore.catalog", "os.system"), "catalog.os.system"),
        (
            lambda marker: _global("clinnova_explore.catalog", "Path"),
            "clinnova_explore.catalog.Path",
        ),
        (lambda marker: pickle.dumps(_Calls(np.memmap, marker, "uint8", "w+", 0, (4,))), "memmap"),
        (lambda marker: pickle.dumps(EventTableSpec("t", "e"), protocol=0), "copy_reg"),
        # what it would take to rebuild a lambda's code on the other side
        (lambda marker: _global("types", "FunctionType"), "types.FunctionType"),
        (lambda marker: _global("marshal", "loads"), "marshal.loads"),
    ],
)
def test_reader_refuses_other_globals_before_anything_runs(
    message: Any, named: str, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(rpc.ForbiddenGlobalError, match=named.replace(".", r"\.")):
        rpc.loads(message(marker))
    assert not marker.exists()


def test_lambdas_and_closures_cannot_be_sent() -> None:
    recipe = TableRecipe("table", "data", (("add one", lambda df: df.assign(x=1)),))
    request = SiteRequest("release", "someone", EventTableStep(), None, recipe)
    with pytest.raises(rpc.NotSendableError, match="lambdas and closures only work in process"):
        rpc.request_message(request)
    with pytest.raises(rpc.RpcError, match="not a valid message"):
        rpc.loads(b"not a pickle")


# ---------------------------------------------------------------------- real site processes


@pytest.fixture(scope="module")
def catalog(small_build: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """Three sites of the session federation with an open policy and a ``survival`` table."""
    folder = tmp_path_factory.mktemp("process_runner")
    return Catalog.load(survival_catalog(small_build.catalog_path, folder, SITES, OPEN))


@pytest.fixture(scope="module")
def runner(catalog: Catalog) -> Iterator[ProcessRunner]:
    with ProcessRunner.start(catalog, timeout=60, requester="remote tester") as started:
        yield started


def test_each_site_is_its_own_process(runner: ProcessRunner, catalog: Catalog) -> None:
    assert runner.remote is True
    assert list(runner.pids) == list(SITES) == list(runner.addresses)
    pids = set(runner.pids.values())
    assert len(pids) == len(SITES) and os.getpid() not in pids
    for pid in pids:
        assert Path(f"/proc/{pid}").exists()
    assert all(host == "127.0.0.1" for host, _ in runner.addresses.values())
    requests = {s: (None, SiteRequest("status", "tester")) for s in SITES}
    answers = runner.exchange(requests)
    assert catalog.path is not None
    folder = catalog.path.parent  # the sites' own folder: their audit logs are theirs
    for site in catalog:
        info = answers[site.id]
        assert isinstance(info, SiteResponse) and info.ok and info.info is not None
        assert info.info.site == site.id and info.info.engine == "duckdb"
        assert info.info.policy["min_cell_count"] == 1
        assert info.info.audit_path == str(folder / "audit" / f"{site.id}.jsonl")


def _same_traffic(remote: list[Traffic], local: list[Traffic]) -> None:
    assert [(t.site, t.analysis, t.transport, t.nbytes) for t in remote] == [
        (t.site, t.analysis, t.transport, t.nbytes) for t in local
    ]
    assert all(t.nbytes > 0 for t in remote)


def test_federated_km_from_the_cdm_equals_the_in_process_runner(
    runner: ProcessRunner, catalog: Catalog
) -> None:
    # one site: building the cohorts' time-to-event table takes seconds per site
    basel = [catalog.site("basel")]
    remote = Federation.from_cdm(basel, SPEC, runner=runner)
    assert remote.remote and all(s.data is None for s in remote.sites)  # no rows here
    local_runner = InProcessRunner()
    local = Federation.from_cdm(basel, SPEC, runner=local_runner)
    before = len(runner.traffic)
    km = remote.kaplan_meier(duration="duration", event="event", group="treatment")
    reference = local.kaplan_meier(duration="duration", event="event", group="treatment")
    pd.testing.assert_frame_equal(km.summary, reference.summary, check_exact=True)
    assert km.provenance is not None and not km.provenance.partial
    assert dict(km.provenance.site_status) == {"basel": "ok"}
    assert km.provenance.suppressed == reference.provenance.suppressed  # type: ignore[union-attr]
    _same_traffic(runner.traffic[before:], local_runner.traffic)
    wire = runner.wire[-1]
    assert wire.site == "basel" and wire.kind == "release"
    assert wire.received > runner.traffic[-1].nbytes > 0
    remote.close()
    local.close()


def test_federated_cox_and_km_on_site_tables_equal_the_in_process_runner(
    runner: ProcessRunner, catalog: Catalog
) -> None:
    remote = Federation.from_site_tables(catalog, "survival", runner=runner)
    local_runner = InProcessRunner()
    local = Federation.from_site_tables(catalog, "survival", runner=local_runner)
    km = remote.kaplan_meier(duration="duration", event="event", group="female")
    ref_km = local.kaplan_meier(duration="duration", event="event", group="female")
    pd.testing.assert_frame_equal(km.summary, ref_km.summary, check_exact=True)
    before = len(runner.traffic)
    covariates = ["treatment", "female", "age"]
    fit = remote.cox(duration="duration", event="event", covariates=covariates)
    local_runner.traffic.clear()
    ref = local.cox(duration="duration", event="event", covariates=covariates)
    pd.testing.assert_frame_equal(fit.summary, ref.summary, check_exact=True)
    pd.testing.assert_frame_equal(fit.covariance, ref.covariance, check_exact=True)
    assert fit.loglik == ref.loglik and fit.n == ref.n == 120 + 160 + 200
    assert fit.summary.loc["treatment", "coef"] > 0.2  # the simulated effect is 0.5
    # every Newton round: one payload per site, the same bytes as in process
    rounds = runner.traffic[before:]
    _same_traffic(rounds, local_runner.traffic)
    assert len(rounds) % len(SITES) == 0 and len(rounds) >= 3 * len(SITES)
    assert [t.site for t in rounds[: len(SITES)]] == list(SITES)
    remote.close()
    local.close()
    # each site process wrote its own audit log, naming who asked (both runners: one file)
    for site in catalog:
        log = AuditLog(site.audit_path(), site=site.id)
        assert log.verify().ok
        asked = [e for e in log.entries() if e["analysis"] == "cox"]
        assert {e["requester"] for e in asked} == {runner.requester, local_runner.requester}
        assert len(asked) == 2 * len(rounds) // len(SITES)


def test_a_request_carrying_code_is_refused_at_the_site(
    runner: ProcessRunner, catalog: Catalog, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    spec = _Calls(os.system, f"touch {marker}")
    answers = runner.exchange(
        {"basel": (None, SiteRequest("release", "x", EventTableStep(), spec))}
    )
    answer = answers["basel"]
    assert isinstance(answer, SiteResponse) and not answer.ok and answer.kind == "release"
    assert answer.error.startswith("RequestRejected: site 'basel' refused to read the request")
    assert "posix.system is not allowed" in answer.error
    # a transform from outside the package is refused the same way
    recipe = TableRecipe("time_to_event", SPEC, (("label", functools.partial(_global, "os")),))
    request = SiteRequest("release", "x", EventTableStep(), None, recipe)
    answer = runner.exchange({"basel": (None, request)})["basel"]
    assert isinstance(answer, SiteResponse) and "test_process_runner._global" in answer.error
    # so is a package function that is not a site transform (it would rebuild a federation)
    build = functools.partial(pipeline.build, tmp_path / "rebuilt", persons=50)
    recipe = TableRecipe("time_to_event", SPEC, (("label", build),))
    request = SiteRequest("release", "x", EventTableStep(), None, recipe)
    answer = runner.exchange({"basel": (None, request)})["basel"]
    assert isinstance(answer, SiteResponse) and not answer.ok
    assert answer.error.startswith("RequestRejected: site 'basel' runs only derivations marked")
    assert "clinnova_explore.pipeline.build" in answer.error
    last = AuditLog(catalog.site("basel").audit_path(), site="basel").entries()[-1]
    assert (last["refused"], last["requester"], last["released"]) == ("site_transforms", "x", None)
    time.sleep(0.2)
    assert not marker.exists() and not (tmp_path / "rebuilt").exists()
    # the site still serves
    assert runner.exchange({"basel": (None, SiteRequest("status", "x"))})["basel"].ok  # type: ignore[union-attr]


def test_wrong_key_and_unknown_sites(runner: ProcessRunner) -> None:
    with ProcessRunner.connect(runner.addresses, b"wrong key", timeout=5) as other:
        status = other.exchange({"basel": (None, SiteRequest("status", "x"))})["basel"]
        port = runner.addresses["basel"][1]
        assert isinstance(status, SiteStatus) and status.state == "down"
        assert status.detail == f"authentication failed at 127.0.0.1:{port} (wrong site key?)"
    with ProcessRunner.connect(runner.addresses, runner.authkey, timeout=5) as other:
        answer = other.exchange({"basel": (None, SiteRequest("status", "x"))})["basel"]
        assert isinstance(answer, SiteResponse) and answer.ok
        with pytest.raises(ValueError, match=r"'luxembourg'.*not served by this runner"):
            other.exchange({"luxembourg": (None, SiteRequest("status", "x"))})


def test_close_ends_every_site_process(catalog: Catalog) -> None:
    started = time.monotonic()
    runner = ProcessRunner.start(catalog, sites=["basel"])
    pid = runner.pids["basel"]
    assert Path(f"/proc/{pid}").exists()
    runner.close()
    runner.close()  # twice is fine
    assert time.monotonic() - started < 30
    assert not Path(f"/proc/{pid}").exists()  # ended and reaped: no zombie left
    with pytest.raises(RuntimeError, match="closed"):
        runner.exchange({"basel": (None, SiteRequest("status", "x"))})


def test_a_site_that_cannot_start_is_named(catalog: Catalog) -> None:
    with pytest.raises(RuntimeError, match=r"site 'nowhere' failed to start: KeyError: .*known: "):
        ProcessRunner.start(catalog, sites=["nowhere"])
    in_memory = Catalog(sites=catalog.sites)
    with pytest.raises(ValueError, match=r"needs a catalog loaded from a file"):
        ProcessRunner.start(in_memory)


_ORPHAN = """
import os, sys, time
from clinnova_explore.federated.audit import AuditLog
from clinnova_explore.federated.process_runner import ProcessRunner
if __name__ == "__main__":
    runner = ProcessRunner.start(sys.argv[1], sites=["basel"])
    print(runner.pids["basel"], flush=True)
    os.kill(os.getpid(), 9)
"""


def test_site_processes_end_when_the_coordinator_dies(catalog: Catalog, tmp_path: Path) -> None:
    script = tmp_path / "coordinator.py"
    script.write_text(_ORPHAN, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), str(catalog.path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text() if Path(f"/proc/{pid}").exists() else ""
        if "State:\tZ" in status:
            break  # ended; only waiting for init to reap it
        time.sleep(0.1)
    status = Path(f"/proc/{pid}/status").read_text() if Path(f"/proc/{pid}").exists() else ""
    assert not status or "State:\tZ" in status
