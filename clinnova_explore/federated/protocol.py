"""What crosses the site boundary: requests to a site, its responses, and per-site status.

The coordinator sends a :class:`SiteRequest`; the site answers with a :class:`SiteResponse`
holding an encoded payload (``release``), a :class:`SitePreview` (``preview``: what *would*
leave, nothing released), a :class:`SiteInfo` (``status``), or an error. A site that does not
answer at all (down, too slow) is described by a :class:`SiteStatus` made on the coordinator's
side. These are plain frozen dataclasses so that every runner (in process, a process per site
over loopback, a network) moves the same objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

__all__ = [
    "FAILED_STATES",
    "RequestKind",
    "SiteInfo",
    "SitePreview",
    "SiteRequest",
    "SiteResponse",
    "SiteState",
    "SiteStatus",
    "TableRecipe",
    "error_text",
]

RequestKind = Literal["release", "preview", "status", "forget"]
SiteState = Literal["ok", "refused", "down", "timeout", "error"]
FAILED_STATES: frozenset[str] = frozenset({"down", "timeout", "error"})


@dataclass(frozen=True)
class TableRecipe:
    """How a site builds its analysis table from its own CDM (the rows never leave).

    Parameters
    ----------
    kind
        ``"time_to_event"``: :func:`~clinnova_explore.analysis.survival.tte.time_to_event`
        with ``spec`` (a ``TimeToEventSpec``); ``"table"``: the table named ``spec`` (a str)
        in the site's database.
    spec
        See ``kind``.
    transforms
        ``(label, function)`` pairs applied at the site, in order, to the rows (as a
        DataFrame). Across a process boundary the functions must be importable from
        ``clinnova_explore`` (module-level functions or ``functools.partial`` of them).
    """

    kind: Literal["time_to_event", "table"]
    spec: Any
    transforms: tuple[tuple[str, Callable[[pd.DataFrame], pd.DataFrame]], ...] = ()


@dataclass(frozen=True)
class SiteRequest:
    """One request to one site.

    Parameters
    ----------
    kind
        ``"release"`` (run the local step, apply the policy, return the encoded payload),
        ``"preview"`` (the same, but return only a :class:`SitePreview`), ``"status"``
        (a :class:`SiteInfo`), ``"forget"`` (drop what the site cached for ``recipe``).
    requester
        Who asks (written to the site's audit log).
    analysis, spec
        The local step (an object following the analysis contract) and its spec.
    recipe
        The analysis table to run on; ``None``: the analysis runs on the site's CDM.
    transport
        Payload encoding, ``"arrow"`` or ``"json"``.
    """

    kind: RequestKind
    requester: str
    analysis: Any = None
    spec: Any = None
    recipe: TableRecipe | None = None
    transport: str = "arrow"


@dataclass(frozen=True)
class SitePreview:
    """What one site would release for a request, without releasing anything.

    ``shapes`` and ``columns`` describe each payload table, ``values`` names the scalars,
    ``suppressed`` lists the suppressed cells (labels, never values), ``refused`` the rule that
    would fire, ``nbytes`` the encoded size.
    """

    site: str
    analysis: str
    refused: str | None = None
    shapes: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    values: tuple[str, ...] = ()
    suppressed: tuple[str, ...] = ()
    nbytes: int = 0


@dataclass(frozen=True)
class SiteInfo:
    """A site's answer to ``status``: who it is, what it runs, its policy and audit state."""

    site: str
    name: str
    country: str
    engine: str
    engine_version: str
    cdm_version: str
    library_version: str
    policy: Mapping[str, Any]
    policy_version: str
    audit_path: str | None = None
    audit_entries: int = 0
    audit_ok: bool = True
    audit_head: str = ""


@dataclass(frozen=True)
class SiteResponse:
    """A site's answer. ``ok`` False means the site raised; ``error`` says what.

    ``error`` is ``"<ExceptionType>: <first line of the message>"``; a site never sends a
    traceback or row-level values.
    """

    site: str
    kind: RequestKind
    ok: bool = True
    data: bytes = b""
    preview: SitePreview | None = None
    info: SiteInfo | None = None
    error: str = ""


@dataclass(frozen=True)
class SiteStatus:
    """How one site fared in one round.

    Parameters
    ----------
    site
        The site id.
    state
        ``"ok"``, ``"refused"`` (a policy rule fired: ``detail`` names it), ``"down"`` (no
        connection), ``"timeout"`` (no answer in time) or ``"error"`` (the site raised).
    detail
        The rule, or what went wrong (never a protected value).
    seconds
        Wall time of the exchange.
    """

    site: str
    state: SiteState
    detail: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        """True when the site did not answer (down, timeout, error)."""
        return self.state in FAILED_STATES

    def __str__(self) -> str:
        return self.state if not self.detail else f"{self.state}: {self.detail}"


def error_text(exc: BaseException) -> str:
    """What a site tells the coordinator about a failure.

    The exception's type, plus the first line of its message only when the exception is this
    package's own: those messages name sites, tables, columns and rules, never data values.
    Anything else (a pandas cast error quotes the cell it failed on) keeps its message at the
    site, which logs it in full.

    Examples
    --------
    >>> error_text(ValueError("invalid literal for int(): 'Jane Doe'"))
    'ValueError (details stay at the site)'
    """
    name = type(exc).__name__
    lines = str(exc).strip().splitlines()
    if type(exc).__module__.startswith("clinnova_explore") and lines:
        return f"{name}: {lines[0]}"
    return f"{name} (details stay at the site)"
