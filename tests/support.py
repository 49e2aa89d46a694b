"""Test support: real external parts (a throwaway PostgreSQL cluster, headless Chromium).

Under ``CI=true`` a missing PostgreSQL or Chromium is a failure; elsewhere the tests that need
them are skipped with the reason printed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from clinnova_explore.cdm.to_postgres import server_bin

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


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a private PostgreSQL cluster on a free loopback port; yield its URL.

    As root, the cluster runs as the ``postgres`` system user (PostgreSQL refuses root).
    The cluster and its files are removed afterwards.
    """
    bindir = server_bin()
    need(bindir is not None, "PostgreSQL server binaries (initdb) not installed")
    assert bindir is not None
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="clx-pg-"))
    data, sock, log = root / "data", root / "sock", root / "log"
    sock.mkdir()
    as_root = os.geteuid() == 0
    if as_root:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
        root.chmod(0o755)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=False)

    r = run(
        str(bindir / "initdb"),
        "-D",
        str(data),
        "-A",
        "trust",
        "-U",
        "postgres",
        "--no-sync",
        "-E",
        "UTF8",
    )
    if r.returncode != 0:
        pytest.fail(f"initdb failed: {r.stderr[-2000:]}")
    opts = (
        f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    r = run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w", "start")
    if r.returncode != 0:
        text = log.read_text() if log.exists() else ""
        pytest.fail(f"pg_ctl start failed: {r.stderr[-2000:]} {text[-2000:]}")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
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
