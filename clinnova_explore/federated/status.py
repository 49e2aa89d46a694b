"""Sites' answers to a ``status`` request as one table (notebooks, reports, the CLI)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from clinnova_explore.federated.protocol import SiteInfo, SiteRequest, SiteResponse, SiteStatus

__all__ = ["STATUS_COLUMNS", "ask_status", "info_row", "status_frame"]

STATUS_COLUMNS = [
    "site",
    "state",
    "engine",
    "engine_version",
    "cdm_version",
    "library_version",
    "policy_version",
    "audit_entries",
    "audit",
    "detail",
]


def info_row(info: SiteInfo) -> dict[str, object]:
    """One status row from a site's :class:`SiteInfo` (``state`` ``error`` when the site
    answered but cannot open its database: its engine is ``"unknown"``)."""
    if info.engine == "unknown":
        return {"site": info.site, "state": "error", "detail": info.engine_version or "no database"}
    return {
        "site": info.site,
        "state": "ok",
        "engine": info.engine,
        "engine_version": info.engine_version,
        "cdm_version": info.cdm_version,
        "library_version": info.library_version,
        "policy_version": info.policy_version,
        "audit_entries": int(info.audit_entries),
        "audit": "verified" if info.audit_ok else "broken",
        "detail": "",
    }


def status_frame(answers: Sequence[SiteInfo | SiteStatus]) -> pd.DataFrame:
    """One row per site from :meth:`~clinnova_explore.federated.Federation.status`.

    A site that answered shows its engine, versions and audit state (``verified`` or
    ``broken``); one that did not shows its state (``down``, ``timeout``, ``error``) and why.

    Examples
    --------
    >>> status_frame([SiteStatus("basel", "down", "connection refused")])[["site", "state"]]
        site state
    0  basel  down
    """
    rows = [
        info_row(a)
        if isinstance(a, SiteInfo)
        else {"site": a.site, "state": a.state, "detail": a.detail}
        for a in answers
    ]
    out = pd.DataFrame(rows, columns=STATUS_COLUMNS)
    out["audit_entries"] = out["audit_entries"].astype("Int64")
    return out.fillna({c: "" for c in STATUS_COLUMNS if c != "audit_entries"})


def ask_status(runner: Any, sites: Sequence[Any]) -> list[SiteInfo | SiteStatus]:
    """Each site's :class:`SiteInfo`, in order; a site that does not answer (or cannot say)
    is its :class:`SiteStatus` instead. ``runner`` follows the contract's ``Runner``."""
    from clinnova_explore.analysis.exchange import default_requester

    requester = getattr(runner, "requester", None) or default_requester()
    answers = runner.exchange(
        {s.id: (s, SiteRequest("status", requester)) for s in sites}, strict=False
    )
    out: list[SiteInfo | SiteStatus] = []
    for s in sites:
        answer = answers.get(s.id, SiteStatus(s.id, "down", "no answer"))
        if isinstance(answer, SiteResponse):
            if answer.ok and answer.info is not None:
                out.append(answer.info)
                continue
            answer = SiteStatus(s.id, "error", answer.error or "no status")
        out.append(answer)
    return out
