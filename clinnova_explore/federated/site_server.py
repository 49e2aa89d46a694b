"""A site's server: one catalog site answering coordinators' requests over loopback RPC.

:func:`serve_site` is what ``clinnova-explore site serve`` and every process of a
:class:`~clinnova_explore.federated.process_runner.ProcessRunner` run. It opens only its own
catalog entry, answers with the site's
:func:`~clinnova_explore.federated.runtime.runtime_for` runtime (policy, guard, schema check,
audit log), and runs only derivations the package marks as site transforms.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from clinnova_explore.federated import rpc
from clinnova_explore.federated.protocol import SiteRequest, SiteResponse
from clinnova_explore.federated.runtime import SiteRuntime
from clinnova_explore.federated.site_transforms import is_site_transform

__all__ = ["Address", "Server", "serve_site", "site_process"]

Address = tuple[str, int]
Server = Callable[..., None]
SITE_TRANSFORMS = "site_transforms"
"""The rule a request fires when it carries a derivation that is not a site transform."""


def serve_site(
    catalog_path: str | Path,
    site_id: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    authkey: bytes,
    ready: Callable[[Address], None] | None = None,
    lock: threading.Lock | None = None,
) -> None:
    """Serve one catalog site's requests until the process ends.

    Opens only ``site_id``'s entry of the catalog and answers with its
    :func:`~clinnova_explore.federated.runtime.runtime_for` runtime (see
    :func:`~clinnova_explore.federated.rpc.serve` for the other parameters). The wire is
    authenticated (HMAC on ``authkey``) but not encrypted: listen on loopback, or put a TLS
    tunnel or VPN between the site and the coordinator.

    Raises
    ------
    KeyError
        ``site_id`` is not in the catalog (the message lists the known ids).
    """
    from clinnova_explore.catalog import Catalog
    from clinnova_explore.federated.runtime import runtime_for

    site = Catalog.load(catalog_path).site(site_id)
    runtime = runtime_for(site)
    _warm_up(site)
    try:
        rpc.serve(
            _reviewed(runtime),
            site.id,
            authkey=authkey,
            host=host,
            port=port,
            ready=ready,
            lock=lock,
        )
    finally:
        site.close()


def _warm_up(site: Any) -> None:
    """Open the site's database and import the local steps before reporting ready, so that
    the first request costs what later ones do (a site that cannot open says so on request)."""
    import clinnova_explore.analysis.survival.tte
    import clinnova_explore.federated.models
    import clinnova_explore.federated.steps  # noqa: F401

    with contextlib.suppress(Exception):
        site.connect()


def _reviewed(runtime: SiteRuntime) -> Callable[[SiteRequest], SiteResponse]:
    """The runtime's ``handle``, refusing (and auditing) requests whose table recipe carries a
    derivation the package has not marked as a site transform (see
    :mod:`~clinnova_explore.federated.site_transforms`)."""

    def checked(request: SiteRequest) -> SiteResponse:
        for label, fn in request.recipe.transforms if request.recipe is not None else ():
            if not is_site_transform(fn):
                target = getattr(fn, "func", fn)
                module = getattr(target, "__module__", "?")
                name = f"{module}.{getattr(target, '__qualname__', '?')}"
                runtime.log_rejection(request, SITE_TRANSFORMS, f"{label}: {name}")
                return SiteResponse(
                    runtime.id,
                    request.kind,
                    ok=False,
                    error=(
                        f"RequestRejected: site {runtime.id!r} runs only derivations marked as "
                        f"site transforms; {label!r} ({name}) is not one"
                    ),
                )
        return runtime.handle(request)

    return checked


# ---------------------------------------------------------------------- the site process


def _watch(control: Connection, parent_pid: int, lock: threading.Lock) -> None:
    """End this process when told to, or when the coordinator's process is gone."""
    while True:
        try:
            if control.poll(0.5):
                control.recv()
                break
        except (EOFError, OSError):
            break
        if os.getppid() != parent_pid:
            break
    lock.acquire(timeout=2.0)  # let an answer being written (its audit entry) finish
    os._exit(0)


def site_process(
    server: Server,
    catalog_path: str,
    site_id: str,
    host: str,
    authkey: bytes,
    control: Connection,
    parent_pid: int,
) -> None:
    """The body of a site process (spawned; everything it needs comes in its arguments)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lock = threading.Lock()
    threading.Thread(target=_watch, args=(control, parent_pid, lock), daemon=True).start()

    def ready(address: Address) -> None:
        control.send(("ready", address))

    try:
        server(catalog_path, site_id, host=host, port=0, authkey=authkey, ready=ready, lock=lock)
    except BaseException as exc:
        # starting touches the catalog and the connection, no patient data: the whole first
        # line goes to the coordinator that started this process, so it can say what to fix
        lines = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        try:
            control.send(("failed", reason))
        finally:
            os._exit(1)
