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
import sys
import time
from pathlib import Path

import yaml

from clinnova_explore.cdm.pg_cluster import (
    ClusterError,
    answers,
    cluster_url,
    free_port,
    init_cluster,
    is_running,
    port_open,
    server_bin,
    start_cluster,
    stop_cluster,
)
from clinnova_explore.cdm.to_postgres import LoadError, load_site

CATALOG = "data_catalog.yaml"
PG_CATALOG = "data_catalog_pg.yaml"


class DemoError(RuntimeError):
    """The demo cluster cannot be used (the message says why)."""


def env_var(site: str) -> str:
    """The environment variable holding the URL of ``site``'s PostgreSQL database."""
    return f"CLINNOVA_PG_{site.upper()}"


def ensure_cluster(root: Path, bindir: Path) -> str:
    """Start (or reuse) the cluster under ``root``; return its URL.

    A running cluster that answers on the port it recorded (``root/port``) is reused; one that
    runs but does not answer there is restarted, on a new free port if its old one is taken.

    Raises
    ------
    DemoError
        If the cluster cannot be created or started (the message ends with the server log).
    """
    port_file = root / "port"
    try:
        if not (root / "data" / "PG_VERSION").exists():
            init_cluster(root, bindir)
        port = int(port_file.read_text()) if port_file.exists() else 0
        if is_running(root, bindir):
            if port and answers(port):
                return cluster_url(port)
            stop_cluster(root, bindir)  # alive but not answering where we expect
        if not port or port_open(port):
            port = free_port()
        port_file.write_text(str(port))
        return start_cluster(root, bindir, port)
    except ClusterError as exc:
        raise DemoError(str(exc)) from None


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
