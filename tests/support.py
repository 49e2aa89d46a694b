"""Test support: real external parts (a throwaway PostgreSQL cluster, headless Chromium).

Under ``CI=true`` a missing PostgreSQL or Chromium is a failure; elsewhere the tests that need
them are skipped with the reason printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from clinnova_explore.cdm.pg_cluster import (
    ClusterError,
    free_port,
    init_cluster,
    server_bin,
    start_cluster,
    stop_cluster,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def in_ci() -> bool:
    """True when running under CI (``CI=true``)."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(condition: bool, reason: str) -> None:
    """Skip (locally) or fail (under CI) when an external part is missing."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI requires this test to run, but: {reason}")
    pytest.skip(reason)


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a private PostgreSQL cluster on a free loopback port; yield its URL.

    As root, the cluster runs as the ``postgres`` system user (PostgreSQL refuses root).
    The cluster and its files are removed afterwards.
    """
    bindir = server_bin()
    need(bindir is not None, "PostgreSQL server binaries (initdb) not installed")
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="clx-pg-"))  # recreated readable by `postgres`
    try:
        init_cluster(root, bindir)
        url = start_cluster(root, bindir, free_port(), durable=False)
    except ClusterError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(str(exc))
    try:
        yield url
    finally:
        stop_cluster(root, bindir, mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def served_dashboard(
    name: str, catalog_path: Path, log_dir: Path, *, timeout: float = 180
) -> Iterator[str]:
    """Serve ``dashboards/<name>.py`` with ``panel serve`` on a free port; yield its URL.

    The first page load runs the app script (imports, state), so a loaded machine gets up to
    ``timeout`` seconds; a server that exits or never answers fails the test with its log.
    """
    import sys
    import urllib.request

    from clinnova_explore.catalog import PROJECT_ROOT

    port = free_port()
    env = {**os.environ, "CLINNOVA_CATALOG": str(catalog_path)}
    log_path = log_dir / f"serve-{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "panel",
                "serve",
                str(PROJECT_ROOT / "dashboards" / f"{name}.py"),
                "--address",
                "127.0.0.1",
                "--port",
                str(port),
                "--allow-websocket-origin",
                f"127.0.0.1:{port}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        url = f"http://127.0.0.1:{port}/{name}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=timeout) as r:
                        if r.status == 200:
                            break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"panel serve did not come up: {log_path.read_text()[-3000:]}")
                    time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=20)
