"""A private PostgreSQL cluster on a loopback port (the demo's PostgreSQL site, the tests' server).

Debian's server binaries (``initdb``, ``pg_ctl``) create and run a cluster in a folder of its
own (``data``, ``sock``, ``log`` inside); as root every command runs as the ``postgres`` system
user, because PostgreSQL refuses to run as root. Nothing here is started by the system: a
cluster lives as long as whoever started it wants.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

__all__ = [
    "ClusterError",
    "answers",
    "cluster_url",
    "free_port",
    "init_cluster",
    "is_running",
    "port_open",
    "server_bin",
    "start_cluster",
    "stop_cluster",
]


class ClusterError(RuntimeError):
    """The cluster cannot be created or started (the message ends with the server's words)."""


def server_bin() -> Path | None:
    """The directory holding PostgreSQL's ``initdb`` and ``pg_ctl``, or None when not installed
    (Debian's versioned ``/usr/lib/postgresql/N/bin`` first, then ``PATH``)."""
    root = Path("/usr/lib/postgresql")
    found = sorted(root.glob("*/bin/initdb"), reverse=True) if root.exists() else []
    if found:
        return found[0].parent
    which = shutil.which("initdb")
    return Path(which).parent if which and shutil.which("pg_ctl") else None


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def cluster_url(port: int) -> str:
    """The URL of the ``postgres`` database of a cluster on ``port`` (trust authentication)."""
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def answers(port: int) -> bool:
    """Whether a PostgreSQL server on ``port`` runs a query."""
    import psycopg

    try:
        with psycopg.connect(cluster_url(port), connect_timeout=3) as con:
            con.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def init_cluster(root: Path, bindir: Path) -> None:
    """Create an empty cluster under ``root`` (replacing whatever the folder held).

    Raises
    ------
    ClusterError
        Running as root without a ``postgres`` system user, or ``initdb`` failed.
    """
    shutil.rmtree(root, ignore_errors=True)
    (root / "sock").mkdir(parents=True)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise ClusterError("running as root but there is no `postgres` system user") from None
        for path in (root, root / "sock"):
            shutil.chown(path, "postgres", "postgres")
        root.chmod(0o755)
    r = _run(
        str(bindir / "initdb"),
        *("-D", str(root / "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"),
    )
    if r.returncode != 0:
        raise ClusterError(f"initdb failed: {r.stderr.strip()[-800:]}")


def start_cluster(root: Path, bindir: Path, port: int, *, durable: bool = True) -> str:
    """Start the cluster under ``root`` on 127.0.0.1:``port``; return its URL.

    ``durable=False`` turns off fsync and full-page writes (a throwaway test server).

    Raises
    ------
    ClusterError
        ``pg_ctl start`` failed or the server does not answer (with the log's tail).
    """
    log = root / "log"
    opts = f"-p {port} -k {root / 'sock'} -c listen_addresses=127.0.0.1"
    if not durable:
        opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    pg_ctl = str(bindir / "pg_ctl")
    r = _run(
        pg_ctl, "-D", str(root / "data"), "-o", opts, "-l", str(log), "-w", "-t", "60", "start"
    )
    if r.returncode != 0 or not answers(port):
        tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        raise ClusterError(f"pg_ctl start failed: {r.stderr.strip()[-400:]} {tail}")
    return cluster_url(port)


def is_running(root: Path, bindir: Path) -> bool:
    """Whether the cluster under ``root`` exists and its server runs."""
    data = root / "data"
    if not (data / "PG_VERSION").exists():
        return False
    return _run(str(bindir / "pg_ctl"), "-D", str(data), "status").returncode == 0


def stop_cluster(root: Path, bindir: Path, *, mode: str = "fast") -> bool:
    """Stop the cluster under ``root`` if it runs (``mode``: pg_ctl's ``fast`` or
    ``immediate``); return whether it was running."""
    if not is_running(root, bindir):
        return False
    _run(str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", mode, "-w", "stop")
    return True
