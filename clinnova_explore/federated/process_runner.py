"""A runner that puts every site in its own process, behind a small RPC on loopback.

:meth:`ProcessRunner.start` spawns one process per catalog site. Each process opens only its
own catalog entry (its own database), builds the site's
:func:`~clinnova_explore.federated.runtime.runtime_for` runtime (policy, guard, schema check,
audit log) and answers requests over :mod:`~clinnova_explore.federated.rpc` on
``127.0.0.1`` with a random key; the coordinator's process never holds a row. Sites served
elsewhere (``clinnova-explore site serve``, which calls :func:`serve_site`) are reached with
:meth:`ProcessRunner.connect`.

:meth:`ProcessRunner.exchange` sends every site its request at once (one thread per site,
one persistent connection per site) and waits at most ``timeout`` seconds: a site that does
not answer in time is ``SiteStatus("timeout")`` (its connection is dropped, so a late answer
cannot be read as the answer to the next request), one that cannot be reached or hangs up is
``SiteStatus("down")``, and a site that raised answers ``SiteResponse(ok=False)``.

A site process ends when the runner closes, when the coordinator's process ends (it watches
its control pipe and its parent's pid) and never on Ctrl-C in the coordinator's terminal.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinnova_explore.analysis.contract import (
    Requests,
    Traffic,
    default_requester,
    record_traffic,
)
from clinnova_explore.federated import rpc
from clinnova_explore.federated.protocol import SiteRequest, SiteResponse, SiteStatus
from clinnova_explore.federated.runtime import error_text
from clinnova_explore.federated.site_server import Address, Server, serve_site, site_process

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from clinnova_explore.catalog import Catalog

__all__ = ["ProcessRunner", "Wire", "serve_site"]


# ---------------------------------------------------------------------- one call to one site


class _Link:
    """The coordinator's end of one site: its address and its open connection, if any."""

    def __init__(self, site: str, address: Address, authkey: bytes) -> None:
        self.site = site
        self.address = address
        self._authkey = authkey
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def take(self) -> Connection | None:
        with self._lock:
            conn, self._conn = self._conn, None
            return conn

    def keep(self, conn: Connection) -> None:
        with self._lock:
            old, self._conn = self._conn, conn
        if old is not None:
            old.close()

    def open(self) -> Connection:
        conn = Client(self.address, family="AF_INET")
        try:
            rpc.client_handshake(conn, self._authkey)
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        conn = self.take()
        if conn is not None:
            rpc.wake(conn)
            conn.close()


class _Call(threading.Thread):
    """Send one message to one site and read its answer (abandoned on timeout)."""

    def __init__(self, link: _Link, message: bytes) -> None:
        super().__init__(name=f"clinnova-rpc-{link.site}", daemon=True)
        self.link = link
        self.message = message
        self.answer: bytes | None = None
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._conn: Connection | None = None
        self._aborted = False
        self._guard = threading.Lock()

    def _use(self, conn: Connection) -> bool:
        with self._guard:
            if self._aborted:
                conn.close()
                return False
            self._conn = conn
            return True

    def _drop(self, conn: Connection) -> None:
        with self._guard:  # never while abort() wakes it (its descriptor could be reused)
            if self._conn is conn:
                self._conn = None
            conn.close()

    def run(self) -> None:
        start = time.perf_counter()
        conn = self.link.take()
        try:
            reused = conn is not None
            conn = conn if conn is not None else self.link.open()
            if not self._use(conn):
                return
            try:
                conn.send_bytes(self.message)
            except OSError:
                if not reused:
                    raise
                self._drop(conn)  # a connection the site closed since the last round
                conn = self.link.open()
                if not self._use(conn):
                    return
                conn.send_bytes(self.message)
            answer = conn.recv_bytes(rpc.MAX_MESSAGE_BYTES)
            with self._guard:
                if self._aborted:
                    return
                self.answer, self.seconds = answer, time.perf_counter() - start
                self._conn = None
                self.link.keep(conn)
                conn = None
        except BaseException as exc:
            self.error, self.seconds = exc, time.perf_counter() - start
        finally:
            if conn is not None:
                self._drop(conn)

    def abort(self) -> None:
        """Stop waiting: wake the thread if it is reading, and never keep its connection."""
        with self._guard:
            self._aborted = True
            if self._conn is not None:
                rpc.wake(self._conn)


# ---------------------------------------------------------------------- the runner


@dataclass(frozen=True)
class Wire:
    """One request/answer on the wire: bytes sent and received, and the wall time."""

    site: str
    kind: str
    sent: int
    received: int
    seconds: float


def _stop(processes: dict[str, BaseProcess], controls: dict[str, Connection]) -> None:
    """Ask the site processes to end, then make sure they do (no zombies, no hang)."""
    for control in controls.values():
        with contextlib.suppress(OSError):
            control.send("stop")
    deadline = time.monotonic() + 3.0
    for proc in processes.values():
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in processes.values():
        if proc.is_alive():
            proc.terminate()
            proc.join(1.0)
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)
    for control in controls.values():
        control.close()


class ProcessRunner:
    """Sites in their own processes (or servers elsewhere), reached over local RPC.

    Build one with :meth:`start` (spawns the site processes) or :meth:`connect` (servers
    started elsewhere), pass it as ``runner=`` to a federation or analysis, and close it
    (or use it as a context manager).

    Attributes
    ----------
    addresses
        ``{site id: (host, port)}``.
    pids
        ``{site id: process id}`` of the processes this runner started.
    timeout
        Seconds to wait for each site's answer.
    requester
        Who asks (the sites' audit logs record it).
    traffic
        Every payload released (site, analysis, transport, bytes), as the in-process runner.
    wire
        Every exchange's message sizes (:class:`Wire`).
    """

    remote = True

    def __init__(
        self,
        addresses: Mapping[str, Address],
        authkey: bytes,
        *,
        timeout: float = 120.0,
        requester: str | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, not {timeout!r}")
        if not isinstance(authkey, bytes) or not authkey:
            raise ValueError("authkey must be non-empty bytes (the site servers' shared key)")
        self.addresses: dict[str, Address] = {
            s: (str(h), int(p)) for s, (h, p) in addresses.items()
        }
        self.timeout = float(timeout)
        self.requester = requester or os.environ.get("CLINNOVA_REQUESTER") or default_requester()
        self.traffic: list[Traffic] = []
        self.wire: list[Wire] = []
        self._authkey = authkey
        self._links = {s: _Link(s, a, authkey) for s, a in self.addresses.items()}
        self._processes: dict[str, BaseProcess] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._finalizer: Callable[[], Any] = weakref.finalize(self, lambda: None)

    def __repr__(self) -> str:
        where = ", ".join(f"{s}@{h}:{p}" for s, (h, p) in self.addresses.items())
        return f"ProcessRunner({where}{', closed' if self._closed else ''})"

    @property
    def authkey(self) -> bytes:
        """The sites' shared key (to reach the same servers from another coordinator)."""
        return self._authkey

    @property
    def pids(self) -> dict[str, int]:
        """``{site id: pid}`` of the site processes this runner started."""
        return {s: int(p.pid) for s, p in self._processes.items() if p.pid is not None}

    @classmethod
    def connect(
        cls,
        addresses: Mapping[str, Address],
        authkey: bytes,
        *,
        timeout: float = 120.0,
        requester: str | None = None,
    ) -> ProcessRunner:
        """A runner for site servers already running (e.g. ``clinnova-explore site serve``).

        Parameters
        ----------
        addresses
            ``{site id: (host, port)}``.
        authkey
            The servers' shared key (``CLINNOVA_SITE_KEY`` of ``site serve``).
        timeout, requester
            See :class:`ProcessRunner`.
        """
        return cls(addresses, authkey, timeout=timeout, requester=requester)

    @classmethod
    def start(
        cls,
        catalog: Catalog | str | Path,
        sites: Sequence[str] | None = None,
        *,
        timeout: float = 120.0,
        requester: str | None = None,
        start_timeout: float = 60.0,
        server: Server = serve_site,
    ) -> ProcessRunner:
        """Spawn one process per site and wait until each one serves.

        Parameters
        ----------
        catalog
            A catalog loaded from a file, or the file's path.
        sites
            Site ids to start (default: every catalog site).
        timeout, requester
            See :class:`ProcessRunner`.
        start_timeout
            Seconds to wait for all processes to serve.
        server
            What each process runs: :func:`serve_site` or a module-level function with the
            same signature (picklable; tests use it to serve slow or failing sites).

        Raises
        ------
        RuntimeError
            A site process failed to start or did not serve in time (the message names the
            site and why); every process started is stopped again.
        """
        path = catalog if isinstance(catalog, str | Path) else catalog.path
        if path is None:
            raise ValueError(
                "ProcessRunner.start needs a catalog loaded from a file (Catalog.load(path)): "
                "each site process reads its own entry of that file"
            )
        ids = list(sites) if sites is not None else _site_ids(path)
        if not ids or len(set(ids)) != len(ids):
            raise ValueError(f"sites must be distinct site ids, not {ids!r}")
        ctx = multiprocessing.get_context("spawn")
        authkey = secrets.token_bytes(32)
        processes: dict[str, BaseProcess] = {}
        controls: dict[str, Connection] = {}
        try:
            for site in ids:
                parent_end, child_end = ctx.Pipe(duplex=True)
                proc = ctx.Process(
                    target=site_process,
                    args=(server, str(path), site, "127.0.0.1", authkey, child_end, os.getpid()),
                    name=f"clinnova-site-{site}",
                    daemon=True,
                )
                controls[site] = parent_end
                try:
                    proc.start()
                finally:
                    child_end.close()
                processes[site] = proc
            addresses = _await_ready(processes, controls, start_timeout)
        except BaseException:
            _stop(processes, controls)
            raise
        runner = cls(addresses, authkey, timeout=timeout, requester=requester)
        runner._processes = processes
        runner._finalizer = weakref.finalize(runner, _stop, processes, controls)
        return runner

    # ------------------------------------------------------------------ exchange

    def exchange(
        self, requests: Requests, *, strict: bool = False
    ) -> dict[str, SiteResponse | SiteStatus]:
        """Send each site its request at once; one answer or status per site.

        ``strict`` is accepted for the :class:`~clinnova_explore.analysis.contract.Runner`
        protocol; a remote site's exception cannot be re-raised here, it answers
        ``SiteResponse(ok=False, error="Type: message")``.

        Raises
        ------
        ValueError
            A requested site is not served by this runner.
        clinnova_explore.federated.rpc.NotSendableError
            A request cannot be sent (e.g. a lambda as a site transform).
        """
        if self._closed:
            raise RuntimeError("this ProcessRunner is closed; start a new one")
        unknown = [s for s in requests if s not in self._links]
        if unknown:
            raise ValueError(
                f"site(s) {unknown} are not served by this runner (it serves "
                f"{', '.join(self._links)}); start it with those sites"
            )
        messages: dict[int, bytes] = {}
        calls: dict[str, tuple[SiteRequest, _Call]] = {}
        for site, (_, request) in requests.items():
            if id(request) not in messages:
                messages[id(request)] = rpc.request_message(request)
            calls[site] = (request, _Call(self._links[site], messages[id(request)]))
        with self._lock:
            for _, call in calls.values():
                call.start()
            deadline = time.monotonic() + self.timeout
            for _, call in calls.values():
                call.join(max(0.0, deadline - time.monotonic()))
            out: dict[str, SiteResponse | SiteStatus] = {}
            for site, (request, call) in calls.items():
                answer = self._answer(site, request, call)
                record_traffic(self.traffic, site, request, answer)
                out[site] = answer
        return out

    def _answer(self, site: str, request: SiteRequest, call: _Call) -> SiteResponse | SiteStatus:
        if call.is_alive():
            call.abort()
            detail = f"no answer within {self.timeout:g} s (the site may still be working)"
            return SiteStatus(site, "timeout", detail, self.timeout)
        seconds = round(call.seconds, 6)
        if call.error is not None:
            return self._failure(site, call.error, seconds)
        data = call.answer or b""
        self.wire.append(Wire(site, request.kind, len(call.message), len(data), seconds))
        try:
            answer = rpc.loads(data)
        except rpc.RpcError as exc:
            return SiteStatus(site, "error", f"unreadable answer: {exc}", seconds)
        if not isinstance(answer, SiteResponse) or answer.site != site:
            what = getattr(answer, "site", type(answer).__name__)
            return SiteStatus(
                site, "error", f"answer is not a response from {site!r} ({what})", seconds
            )
        return answer

    def _failure(self, site: str, error: BaseException, seconds: float) -> SiteStatus:
        host, port = self.addresses[site]
        proc = self._processes.get(site)
        if proc is not None and not proc.is_alive():
            detail = f"site process {proc.pid} ended (exit code {proc.exitcode})"
        elif isinstance(error, ConnectionRefusedError):
            detail = f"connection refused at {host}:{port} (is the site server running?)"
        elif isinstance(error, AuthenticationError):
            detail = f"authentication failed at {host}:{port} (wrong site key?)"
        elif isinstance(error, EOFError | ConnectionError):
            detail = f"connection to {host}:{port} closed by the site"
        elif isinstance(error, OSError):
            detail = f"{host}:{port}: {error_text(error)}"
        else:
            return SiteStatus(site, "error", error_text(error), seconds)
        return SiteStatus(site, "down", detail, seconds)

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Drop the connections and end the site processes this runner started."""
        self._closed = True
        for link in self._links.values():
            link.close()
        self._finalizer()

    def __enter__(self) -> ProcessRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _site_ids(path: str | Path) -> list[str]:
    from clinnova_explore.catalog import Catalog

    return Catalog.load(path).site_ids


def _await_ready(
    processes: Mapping[str, BaseProcess], controls: Mapping[str, Connection], timeout: float
) -> dict[str, Address]:
    """Each site's ``(host, port)`` once its process serves."""
    deadline = time.monotonic() + timeout
    addresses: dict[str, Address] = {}
    for site, control in controls.items():
        remaining = max(0.0, deadline - time.monotonic())
        try:
            message = control.recv() if control.poll(remaining) else None
        except (EOFError, OSError):
            proc = processes[site]
            proc.join(1.0)
            raise RuntimeError(
                f"site {site!r}: its process ended (exit code {proc.exitcode}) before serving"
            ) from None
        if message is None:
            raise RuntimeError(f"site {site!r}: its process did not serve within {timeout:g} s")
        state, value = message
        if state != "ready":
            raise RuntimeError(f"site {site!r} failed to start: {value}")
        addresses[site] = (str(value[0]), int(value[1]))
    return addresses
