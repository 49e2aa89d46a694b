"""Moving requests to sites and answers back: transports, runners, rounds, site failures.

The coordinator's half of the site boundary. A :class:`Transport` turns a payload into bytes
and back (JSON or Arrow IPC); a :class:`Runner` moves
:class:`~clinnova_explore.federated.protocol.SiteRequest` objects to the sites and brings back
their :class:`~clinnova_explore.federated.protocol.SiteResponse` (or a
:class:`~clinnova_explore.federated.protocol.SiteStatus` when a site did not answer).
:func:`exchange_round` is what every runner shares: it builds one request per site
(:func:`site_requests`), exchanges them, and decodes and checks the answers
(:func:`read_answers`: identity, declared schema) into a :class:`Round` of payloads and per-site
statuses, applying ``on_failure``. :class:`InProcessRunner` answers through each site's
:func:`~clinnova_explore.federated.runtime.runtime_for` runtime in this process.

Everything here is re-exported by :mod:`clinnova_explore.analysis.contract`.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from clinnova_explore.analysis.payload import Payload, PayloadError
from clinnova_explore.federated.protocol import (
    SitePreview,
    SiteRequest,
    SiteResponse,
    SiteState,
    SiteStatus,
    error_text,
)

if TYPE_CHECKING:
    from clinnova_explore.analysis.contract import Analysis

__all__ = [
    "ON_FAILURE",
    "TRANSPORTS",
    "FederationError",
    "InProcessRunner",
    "OnFailure",
    "Requests",
    "Round",
    "Runner",
    "SiteUnavailableError",
    "Traffic",
    "Transport",
    "default_requester",
    "exchange_round",
    "read_answers",
    "receive",
    "record_traffic",
    "site_requests",
]

SpecT = TypeVar("SpecT")


@dataclass(frozen=True)
class Transport:
    """How a payload becomes bytes and back."""

    name: str
    encode: Callable[[Payload], bytes]
    decode: Callable[[bytes], Payload]


TRANSPORTS: dict[str, Transport] = {
    "arrow": Transport("arrow", Payload.to_arrow, Payload.from_arrow),
    "json": Transport("json", Payload.to_json, Payload.from_json),
}


def _transport(transport: str | Transport) -> Transport:
    if isinstance(transport, Transport):
        return transport
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; use one of {', '.join(TRANSPORTS)}")
    return TRANSPORTS[transport]


def receive(data: bytes, transport: Transport, *, site: str, analysis: str) -> Payload:
    """The coordinator side: decode bytes and check they came from whom they should."""
    payload = transport.decode(data)
    if (payload.site, payload.analysis) != (site, analysis):
        raise PayloadError(
            f"expected a payload from site {site!r} for analysis {analysis!r}, received one "
            f"labelled site {payload.site!r}, analysis {payload.analysis!r}"
        )
    return payload


@dataclass(frozen=True)
class Traffic:
    """One payload that crossed the boundary: who sent it and how many bytes."""

    site: str
    analysis: str
    transport: str
    nbytes: int


class FederationError(ValueError):
    """A federated analysis cannot run as asked (the message says why and what to do)."""


class SiteUnavailableError(FederationError):
    """A site did not answer (down, timeout, error) and the run requires every site.

    ``status`` is the site's :class:`~clinnova_explore.federated.protocol.SiteStatus`.
    """

    def __init__(self, status: SiteStatus, analysis: str) -> None:
        self.status = status
        self.site = status.site
        super().__init__(
            f"site {status.site!r} is {status.state} in analysis {analysis!r}"
            f"{': ' + status.detail if status.detail else ''}. Bring the site back, or run "
            "with on_failure='allow_partial' for a result over the remaining sites"
        )


OnFailure = Literal["require_all_sites", "allow_partial"]
ON_FAILURE: tuple[str, ...] = ("require_all_sites", "allow_partial")
Requests = Mapping[str, tuple[Any, "SiteRequest"]]


class Runner(Protocol):
    """Moves requests to the sites and brings their answers back.

    ``exchange`` sends one request per site (``{site id: (source, request)}``; a remote runner
    uses only the id) and returns ``{site id: SiteResponse | SiteStatus}``: a
    :class:`~clinnova_explore.federated.protocol.SiteStatus` when the site did not answer
    (down, timeout). With ``strict=True`` an in-process runner re-raises a site's original
    exception; a remote one answers ``SiteResponse(ok=False)``. ``requester`` is written to
    the sites' audit logs, ``remote`` says whether the sites' rows are out of this process,
    ``traffic`` lists every payload released.
    """

    requester: str
    remote: bool
    traffic: list[Traffic]

    def exchange(self, requests: Requests, *, strict: bool) -> dict[str, SiteResponse | SiteStatus]:
        """One answer per requested site."""
        ...


def default_requester() -> str:
    """Who asks, for the sites' audit logs: the login name (``"unknown"`` if none)."""
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def record_traffic(
    traffic: list[Traffic], site: str, request: SiteRequest, answer: SiteResponse | SiteStatus
) -> None:
    """Add a released payload's size to ``traffic`` (other answers release nothing)."""
    if isinstance(answer, SiteResponse) and answer.ok and answer.kind == "release":
        name = getattr(request.analysis, "name", "?")
        traffic.append(Traffic(site, name, request.transport, len(answer.data)))


@dataclass
class InProcessRunner:
    """Runs every site in this process; each payload still crosses as bytes.

    Each site answers through its :func:`~clinnova_explore.federated.runtime.runtime_for`
    runtime (policy, guard, schema check, audit). ``traffic`` records every payload sent
    (site, analysis, transport, bytes).
    """

    traffic: list[Traffic] = field(default_factory=list)
    requester: str = field(default_factory=default_requester)
    remote: bool = False

    def exchange(self, requests: Requests, *, strict: bool) -> dict[str, SiteResponse | SiteStatus]:
        """See :meth:`Runner.exchange`."""
        from clinnova_explore.federated.runtime import runtime_for

        out: dict[str, SiteResponse | SiteStatus] = {}
        for site_id, (source, request) in requests.items():
            start = time.perf_counter()
            try:
                runtime = runtime_for(source)
            except Exception as exc:
                if strict:
                    raise
                out[site_id] = SiteStatus(site_id, "error", error_text(exc), _since(start))
                continue
            answer = runtime.execute(request) if strict else runtime.handle(request)
            record_traffic(self.traffic, site_id, request, answer)
            out[site_id] = answer
        return out


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 6)


# ---------------------------------------------------------------------- coordinator rounds


@dataclass(frozen=True)
class Round:
    """What one round brought back: payloads (or previews) and every site's status.

    ``payloads`` and ``previews`` hold the sites that answered, in site order (refusals
    included); ``statuses`` has every site asked.
    """

    payloads: list[Payload]
    statuses: dict[str, SiteStatus]
    previews: list[SitePreview] = field(default_factory=list)

    @property
    def failed(self) -> list[SiteStatus]:
        """Sites that did not answer (down, timeout, error)."""
        return [s for s in self.statuses.values() if s.failed]

    def site_status(self) -> dict[str, str]:
        """``{site: "ok" | "refused: rule" | "down: ..."}`` for provenance."""
        return {k: str(v) for k, v in self.statuses.items()}


def site_requests(
    analysis: Any,
    spec: Any,
    sites: Sequence[Any],
    *,
    kind: Literal["release", "preview"] = "release",
    requester: str,
    transport: str,
) -> dict[str, tuple[Any, SiteRequest]]:
    """One request per site; a site with a ``request_recipe()`` sends its table recipe."""
    out: dict[str, tuple[Any, SiteRequest]] = {}
    for site in sites:
        recipe_of = getattr(site, "request_recipe", None)
        recipe = recipe_of() if callable(recipe_of) else None
        request = SiteRequest(kind, requester, analysis, spec, recipe, transport)
        out[site.id] = (site, request)
    return out


def read_answers(
    analysis: Any,
    requests: Mapping[str, tuple[Any, SiteRequest]],
    answers: Mapping[str, SiteResponse | SiteStatus],
    transport: Transport,
    *,
    strict: bool = False,
) -> Round:
    """Decode and check the sites' answers (coordinator side): payloads and statuses.

    A payload is decoded, checked to come from its site for its analysis and validated
    against the analysis' schema; one that fails is the site's ``error`` (raised when
    ``strict``). A site missing from ``answers`` is ``down``.
    """
    from clinnova_explore.federated.runtime import validate

    payloads: list[Payload] = []
    previews: list[SitePreview] = []
    statuses: dict[str, SiteStatus] = {}
    for site_id, (_source, request) in requests.items():
        answer = answers.get(site_id, SiteStatus(site_id, "down", "no answer"))
        if isinstance(answer, SiteStatus):
            statuses[site_id] = answer
            continue
        if not answer.ok:
            statuses[site_id] = SiteStatus(site_id, "error", answer.error)
            continue
        try:
            if request.kind == "preview":
                if answer.preview is None:
                    raise PayloadError(f"site {site_id!r} answered a preview without one")
                previews.append(answer.preview)
                rule = answer.preview.refused
            else:
                payload = receive(answer.data, transport, site=site_id, analysis=analysis.name)
                # the schema only: the site applied its own policy, which may differ from
                # the one this side's catalog believes it has
                validate(payload, analysis, None)
                payloads.append(payload)
                rule = payload.refused
        except PayloadError as exc:
            if strict:
                raise
            statuses[site_id] = SiteStatus(site_id, "error", error_text(exc))
            continue
        state: SiteState = "ok" if rule is None else "refused"
        statuses[site_id] = SiteStatus(site_id, state, rule or "")
    return Round(payloads, statuses, previews)


def exchange_round(
    analysis: Analysis[SpecT, Any],
    spec: SpecT,
    sites: Sequence[Any],
    *,
    runner: Runner | None = None,
    transport: str | Transport = "arrow",
    kind: Literal["release", "preview"] = "release",
    on_failure: OnFailure = "require_all_sites",
) -> Round:
    """One round of ``analysis`` over ``sites`` through ``runner``, answers checked.

    Raises
    ------
    SiteUnavailableError
        With ``on_failure="require_all_sites"`` when a site did not answer (in process, the
        site's own exception propagates instead); with ``"allow_partial"`` only when no
        site answered.
    """
    if on_failure not in ON_FAILURE:
        raise ValueError(f"on_failure must be one of {ON_FAILURE}, not {on_failure!r}")
    runner = runner if runner is not None else InProcessRunner()
    codec = _transport(transport)
    strict = on_failure == "require_all_sites" and kind == "release"
    requester = getattr(runner, "requester", None) or default_requester()
    requests = site_requests(
        analysis, spec, sites, kind=kind, requester=requester, transport=codec.name
    )
    answers = runner.exchange(requests, strict=strict)
    result = read_answers(analysis, requests, answers, codec, strict=strict)
    failed = result.failed
    everyone = len(failed) == len(result.statuses)
    if failed and kind == "release" and (on_failure == "require_all_sites" or everyone):
        raise SiteUnavailableError(failed[0], analysis.name)
    return result
