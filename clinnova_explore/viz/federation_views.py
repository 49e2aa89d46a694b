"""Panel views of the federation dashboard: sites, policies, audit log and preview.

Each function turns :class:`~clinnova_explore.viz.federation_state.FederationState` into Panel
objects; rows come only from the state's library calls, and anything that could not be read or
computed shows as a message. ``dashboards/federation.py`` lays the views out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import panel as pn

from clinnova_explore.viz.federation_state import FederationState
from clinnova_explore.viz.panel_views import bind_view, table
from clinnova_explore.viz.survival_state import Problem

__all__ = [
    "audit_controls",
    "audit_view",
    "policy_view",
    "preview_alert",
    "preview_controls",
    "preview_frame",
    "preview_view",
    "status_view",
]

PREVIEW_NOTE = (
    "A preview runs each site's local step and its policy checks but releases nothing: the "
    "coordinator sees only the table shapes, suppressed cells, refusals and sizes shown here, "
    "and each site records the request in its audit log as a preview."
)


def preview_alert(problem: Problem) -> pn.pane.Alert:
    """A preview or log that could not be produced, as a message in the page."""
    return pn.pane.Alert(
        problem.message, alert_type="warning", css_classes=["federation-problem"], margin=10
    )


def status_view(state: FederationState) -> Any:
    """Site status and versions (refreshed by :attr:`FederationState.refresh`)."""

    def render(rows: pd.DataFrame) -> pn.Column:
        failed = rows[rows["state"] != "ok"]
        note = (
            "All sites answered."
            if failed.empty
            else "Not answering: "
            + "; ".join(f"{r.site} {r.state} ({r.detail})" for r in failed.itertuples())
        )
        return pn.Column(
            pn.Column(table(rows), css_classes=["site-status"]),
            pn.pane.Markdown(note, css_classes=["status-note"]),
        )

    return bind_view(state, render, state.status)


def policy_view(state: FederationState) -> pn.Column:
    """Each site's disclosure policy, from the catalog."""
    return pn.Column(table(state.policies()), css_classes=["site-policies"])


def audit_controls(state: FederationState) -> pn.Column:
    """Which site's log, and how many entries."""
    return pn.Column(
        pn.widgets.Select.from_param(state.param.site, name="Audit log of site"),
        pn.widgets.IntInput.from_param(state.param.last, name="Latest entries", step=10),
    )


def _audit(state: FederationState, rows: pd.DataFrame | Problem) -> Any:
    check = state.audit_check()
    summary = pn.pane.Alert(
        state.audit_summary(),
        alert_type="success" if check.ok else "danger",
        css_classes=["audit-chain"],
    )
    if isinstance(rows, Problem):
        return pn.Column(summary, preview_alert(rows))
    if rows.empty:
        return pn.Column(summary, pn.pane.Markdown("No entries yet.", css_classes=["audit-empty"]))
    return pn.Column(summary, pn.Column(table(rows), css_classes=["audit-entries"]))


def audit_view(state: FederationState) -> Any:
    """The chosen site's chain check and latest entries."""
    return bind_view(state, lambda rows: _audit(state, rows), state.audit)


def preview_controls(state: FederationState) -> pn.Column:
    """The pending analysis: which analysis, on which comparison or cohort."""
    return pn.Column(
        pn.widgets.Select.from_param(state.param.analysis, name="Analysis"),
        pn.widgets.Select.from_param(state.param.comparison, name="Comparison (KM, Cox)"),
        pn.widgets.Select.from_param(state.param.cohort, name="Cohort (count, Table 1)"),
    )


def preview_frame(title: str, rows: pd.DataFrame | Problem, notes: Sequence[str] = ()) -> Any:
    """One preview as a titled table with the coordinator's notes, or its problem (shared
    with the survival dashboard)."""
    if isinstance(rows, Problem):
        return preview_alert(rows)
    refused = rows[rows["refused"] != ""]
    lines = [f"**{title}**"]
    if not refused.empty:
        lines.append(
            "Would refuse: " + "; ".join(f"{r.site} ({r.refused})" for r in refused.itertuples())
        )
    failed = rows[~rows["status"].str.match(r"(ok|refused)\b")]  # refusals are listed above
    if not failed.empty:
        lines.append(
            "Not answering: " + "; ".join(f"{r.site} ({r.status})" for r in failed.itertuples())
        )
    total = rows.drop_duplicates("site")["bytes"].sum()
    lines.append(f"Bytes that would leave, all sites: {total:,}")
    lines.extend(notes)
    return pn.Column(
        pn.pane.Markdown("\n\n".join(lines), css_classes=["preview-title"]),
        pn.Column(table(rows), css_classes=["preview-table"]),
    )


def preview_view(state: FederationState) -> Any:
    """What each site would release for the pending analysis."""

    def render(rows: pd.DataFrame | Problem) -> Any:
        notes = getattr(state.preview(), "notes", ())
        return pn.Column(
            preview_frame(state.pending(), rows, notes), pn.pane.Markdown(PREVIEW_NOTE)
        )

    return bind_view(state, render, state.preview_table)
