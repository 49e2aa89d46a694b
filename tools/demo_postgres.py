"""Put one demo site on a real PostgreSQL server, for ``make demo``.

When PostgreSQL's server binaries (``initdb``, ``pg_ctl``) are installed, this keeps a private
cluster under ``DEMO/pg`` listening on a spare loopback port, loads one site's CDM from its
DuckDB file into the schema named after the site, and writes ``DEMO/data_catalog_pg.yaml``: the
demo catalog with that site as ``backend: postgres`` and ``location_env: CLINNOVA_PG_<SITE>``.
The connection URL is printed on stdout (and nowhere else); ``make demo`` puts it in that
environment variable. Without the binaries, or if the server cannot start, it prints why on
stderr and nothing on stdout, and ``make demo`` serves the all-DuckDB catalog.

Running it again reuses the cluster (a running one as is; a stopped or stale one is started
again, on a new port if its old one was taken) and reloads the site, so the server always holds
the current build. As root, the cluster runs as the ``postgres`` system user (PostgreSQL refuses
to run as root).

Usage::

    python tools/demo_postgres.py --demo demo --site homburg   # prints the URL
    python tools/demo_postgres.py --demo demo --stop           # stops the cluster
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from clinnova_explore.cdm.to_postgres import LoadError, load_site, server_bin

CATALOG = "data_catalog.yaml"
PG_CATALOG = "data_catalog_pg.yaml"


class DemoError(RuntimeError):
    """The demo cluster cannot be used (the message says why)."""


def env_var(site: str) -> str:
    """The environment variable holding the URL of ``site``'s PostgreSQL database."""
    return f"CLINNOVA_PG_{site.upper()}"


def _as_root() -> bool:
    return os.geteuid() == 0


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["runuser", "-u", "postgres", "--", *args] if _as_root() else list(args)
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _url(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def _answers(port: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(_url(port), connect_timeout=3) as con:
            con.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _owned(path: Path) -> None:
    if _as_root():
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise DemoError("running as root but there is no `postgres` system user") from None
        shutil.chown(path, "postgres", "postgres")


def ensure_cluster(root: Path, bindir: Path) -> str:
    """Start (or reuse) the cluster under ``root``; return its URL.

    Parameters
    ----------
    root
        The cluster's folder (``data``, ``sock``, ``log`` and ``port`` inside).
    bindir
        The directory holding ``initdb`` and ``pg_ctl``.

    Raises
    ------
    DemoError
        If ``initdb`` or ``pg_ctl`` fails (the message ends with the server log's tail).
    """
    data, sock, log, port_file = root / "data", root / "sock", root / "log", root / "port"
    pg_ctl = str(bindir / "pg_ctl")
    if not (data / "PG_VERSION").exists():
        shutil.rmtree(root, ignore_errors=True)
        sock.mkdir(parents=True)
        for p in (root, sock):
            _owned(p)
        root.chmod(0o755)
        r = _run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )
        if r.returncode != 0:
            raise DemoError(f"initdb failed: {r.stderr.strip()[-800:]}")
    port = int(port_file.read_text()) if port_file.exists() else 0
    running = _run(pg_ctl, "-D", str(data), "status").returncode == 0
    if running and port and _answers(port):
        return _url(port)
    if running:  # alive but not answering where we expect: restart it cleanly
        _run(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop")
    if not port or _port_open(port):
        port = _free_port()
    port_file.write_text(str(port))
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1"
    r = _run(pg_ctl, "-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "60", "start")
    if r.returncode != 0 or not _answers(port):
        tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        raise DemoError(f"pg_ctl start failed: {r.stderr.strip()[-400:]} {tail}")
    return _url(port)


def stop_cluster(root: Path, bindir: Path) -> bool:
    """Stop the cluster under ``root`` if it runs; return whether it was running."""
    data = root / "data"
    if not (data / "PG_VERSION").exists():
        return False
    pg_ctl = str(bindir / "pg_ctl")
    if _run(pg_ctl, "-D", str(data), "status").returncode != 0:
        return False
    _run(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop")
    return True


def write_catalog(demo: Path, site: str, schema: str) -> Path:
    """``DEMO/data_catalog_pg.yaml``: the demo catalog with ``site`` on PostgreSQL.

    Raises
    ------
    DemoError
        If the demo catalog is missing or has no such site.
    """
    src = demo / CATALOG
    if not src.exists():
        raise DemoError(f"{src} not found; build the demo first (`make build-demo`)")
    doc = yaml.safe_load(src.read_text(encoding="utf-8"))
    entries = [s for s in doc["sites"] if s["id"] == site]
    if not entries:
        known = ", ".join(s["id"] for s in doc["sites"])
        raise DemoError(f"{src} has no site {site!r}; known: {known}")
    entry = entries[0]
    entry.pop("location", None)
    entry.update(backend="postgres", location_env=env_var(site), schema=schema)
    entry["name"] = f"{entry['name']} (PostgreSQL)"
    out = demo / PG_CATALOG
    head = (
        f"# The demo catalog with {site} on PostgreSQL (written by tools/demo_postgres.py).\n"
        f"# Its connection URL is read from ${env_var(site)}; `make demo` sets it.\n"
    )
    out.write_text(head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), "utf-8")
    return out


def _duckdb_file(demo: Path, site: str) -> Path:
    """The site's DuckDB file, as the demo catalog locates it."""
    from clinnova_explore.catalog import Catalog, CatalogError

    try:
        entry = Catalog.load(demo / CATALOG).site(site)
    except CatalogError as exc:
        raise DemoError(str(exc)) from None
    except KeyError as exc:
        raise DemoError(str(exc.args[0])) from None
    if entry.backend != "duckdb":
        raise DemoError(f"site {site!r} is not a DuckDB site in {demo / CATALOG}")
    path = Path(entry.resolved_location())
    if not path.exists():
        raise DemoError(f"{path} not found; build the demo first (`make build-demo`)")
    return path


def prepare(demo: Path, site: str) -> str:
    """Start or reuse the cluster, load ``site`` into it, write the catalog; return the URL.

    Raises
    ------
    DemoError
        When PostgreSQL is not installed or the cluster, the load or the catalog fails.
    """
    bindir = server_bin()
    if bindir is None:
        raise DemoError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    duck = _duckdb_file(demo, site)
    url = ensure_cluster((demo / "pg").resolve(), bindir)
    started = time.perf_counter()
    try:
        result = load_site(duck, url, schema=site, site_id=site)
    except LoadError as exc:
        raise DemoError(str(exc)) from None
    write_catalog(demo, site, site)
    rows = sum(result.rows.values())
    print(
        f"PostgreSQL site {site}: {len(result.rows)} tables, {rows:,} rows loaded "
        f"in {time.perf_counter() - started:.1f} s ({url})",
        file=sys.stderr,
    )
    return url


def main(argv: list[str] | None = None) -> int:
    """Command line: print the URL (or nothing, with the reason on stderr)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, default=Path("demo"), help="The demo folder.")
    parser.add_argument("--site", default="homburg", help="The site to put on PostgreSQL.")
    parser.add_argument("--stop", action="store_true", help="Stop the demo cluster and exit.")
    args = parser.parse_args(argv)
    if args.stop:
        bindir = server_bin()
        stopped = bindir is not None and stop_cluster((args.demo / "pg").resolve(), bindir)
        print(
            "demo PostgreSQL stopped" if stopped else "demo PostgreSQL not running", file=sys.stderr
        )
        return 0
    try:
        url = prepare(args.demo, args.site)
    except DemoError as exc:
        print(f"PostgreSQL not used ({exc}); every site stays on DuckDB", file=sys.stderr)
        return 0
    print(url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
