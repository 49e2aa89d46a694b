"""Result objects: one shape for every analysis (``.summary``, ``.plot()``, provenance).

Every analysis returns a subclass of :class:`AnalysisResult`: a frozen dataclass whose
``summary`` is a DataFrame and whose ``provenance`` says how the numbers were made (mode, sites,
cohort definition hashes, suppressed cells, refusals, library version, time). In a notebook
the result renders as its summary table with a provenance footer.
"""

from __future__ import annotations

import datetime as dt
import html
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import pandas as pd

__all__ = ["AnalysisResult", "Mode", "Provenance", "library_version", "utc_now"]

Mode = Literal["federated", "pooled"]


def library_version() -> str:
    """The installed clinnova_explore version."""
    from clinnova_explore import __version__

    return __version__


def utc_now() -> str:
    """The current time as an ISO 8601 UTC timestamp (seconds)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Provenance:
    """How a result was made.

    Parameters
    ----------
    analysis
        Analysis name (``"cohort"``, ``"characterize"``, ...).
    mode
        ``"federated"`` (one payload per site) or ``"pooled"`` (one virtual site).
    sites
        Ids of the sites asked, in order.
    definition_hashes
        ``{role: hash}`` of every cohort definition used (e.g. ``{"target": "3f2a..."}``).
    suppressed
        Human-readable cells that were suppressed, e.g. ``"basel: attrition rule=Aged 18-60"``.
    refused
        ``{site: rule}`` for every site that refused, naming the policy rule that fired.
    transport
        How payloads crossed the boundary (``"arrow"``, ``"json"``; ``"none"`` if not at all).
    library_version
        The clinnova_explore version that made the result.
    created
        ISO 8601 UTC time of the run.
    catalog
        The catalog file the sites came from, when known.
    site_status
        ``{site: state}`` for every site asked: ``"ok"``, ``"refused: <rule>"``, or why the
        site did not answer (``"down: ..."``, ``"timeout: ..."``, ``"error: ..."``).
    partial
        True when the result leaves out sites that did not answer (``allow_partial``).
    """

    analysis: str
    mode: Mode
    sites: tuple[str, ...]
    definition_hashes: Mapping[str, str] = field(default_factory=dict)
    suppressed: tuple[str, ...] = ()
    refused: Mapping[str, str] = field(default_factory=dict)
    transport: str = "arrow"
    library_version: str = field(default_factory=library_version)
    created: str = field(default_factory=utc_now)
    catalog: str | None = None
    site_status: Mapping[str, str] = field(default_factory=dict)
    partial: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "sites", tuple(self.sites))
        object.__setattr__(self, "suppressed", tuple(self.suppressed))
        object.__setattr__(
            self, "definition_hashes", MappingProxyType(dict(self.definition_hashes))
        )
        object.__setattr__(self, "refused", MappingProxyType(dict(self.refused)))
        object.__setattr__(self, "site_status", MappingProxyType(dict(self.site_status)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (for reports and audit entries)."""
        return {
            "analysis": self.analysis,
            "mode": self.mode,
            "sites": list(self.sites),
            "definition_hashes": dict(self.definition_hashes),
            "suppressed": list(self.suppressed),
            "refused": dict(self.refused),
            "transport": self.transport,
            "library_version": self.library_version,
            "created": self.created,
            "catalog": self.catalog,
            "site_status": dict(self.site_status),
            "partial": self.partial,
        }

    def _repr_html_(self) -> str:
        def esc(value: object) -> str:
            return html.escape(str(value))

        hashes = ", ".join(
            f"{esc(k)}: <code>{esc(v)}</code>" for k, v in self.definition_hashes.items()
        )
        refused = ", ".join(f"{esc(k)} ({esc(v)})" for k, v in self.refused.items())
        suppressed = "; ".join(esc(s) for s in self.suppressed)
        rows = [
            ("Analysis", esc(self.analysis)),
            ("Mode", f"{esc(self.mode)} (transport: {esc(self.transport)})"),
            ("Sites", esc(", ".join(self.sites))),
            ("Definitions", hashes or "none"),
            ("Suppressed cells", f"{len(self.suppressed)}: {suppressed}" if suppressed else "none"),
            ("Refused", refused or "none"),
            ("Made with", f"clinnova_explore {esc(self.library_version)} at {esc(self.created)}"),
        ]
        if self.catalog:
            rows.append(("Catalog", esc(self.catalog)))
        if self.partial or any(v != "ok" for v in self.site_status.values()):
            status = ", ".join(f"{esc(k)} ({esc(v)})" for k, v in self.site_status.items())
            flag = "<strong>partial result</strong>: " if self.partial else ""
            rows.append(("Site status", flag + status))
        body = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{k}</th><td>{v}</td></tr>"
            for k, v in rows
        )
        return f"<table class='clinnova-provenance' style='font-size:85%'>{body}</table>"


@dataclass(frozen=True, eq=False)
class AnalysisResult(ABC):
    """Base of every analysis result: ``summary``, ``provenance``, ``plot()``, HTML repr.

    Subclasses add their own fields (e.g. ``attrition``) and implement :meth:`plot` with
    HoloViews (imported inside ``plot`` or in ``clinnova_explore.viz``).
    """

    summary: pd.DataFrame
    provenance: Provenance

    @abstractmethod
    def plot(self) -> Any:
        """A HoloViews object showing the result."""

    def _title(self) -> str:
        return type(self).__name__

    def _repr_html_(self) -> str:
        table = self.summary.to_html(index=False, na_rep="—", border=0)
        return (
            f"<div class='clinnova-result'><strong>{html.escape(self._title())}</strong>"
            f"{table}<details open><summary>Provenance</summary>"
            f"{self.provenance._repr_html_()}</details></div>"
        )
