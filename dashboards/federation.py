"""Federation dashboard: each site's status, versions and disclosure policy, its hash-chained
audit log, and a preview of what a pending analysis would release at each site.

Thin by design: state lives in :class:`clinnova_explore.viz.federation_state.FederationState`,
Panel blocks in :mod:`clinnova_explore.viz.federation_views`; this file only lays them out.
"""

from __future__ import annotations

import panel as pn

from clinnova_explore.viz import federation_views as views
from clinnova_explore.viz.federation_state import FederationState

pn.extension("tabulator", sizing_mode="stretch_width")

state = FederationState.from_path()
pn.state.on_session_destroyed(lambda _: state.close())

refresh = pn.widgets.Button.from_param(
    state.param.refresh, name="Refresh status and logs", css_classes=["refresh"]
)
pn.template.FastListTemplate(
    title="clinnova_explore · federation",
    sidebar=[
        refresh,
        pn.layout.Divider(),
        views.audit_controls(state),
        pn.layout.Divider(),
        "Preview a pending analysis",
        views.preview_controls(state),
    ],
    sidebar_width=340,
    main=[
        pn.Tabs(
            (
                "Sites",
                pn.Column(
                    "### Status and versions",
                    views.status_view(state),
                    "### Disclosure policies",
                    views.policy_view(state),
                ),
            ),
            ("Audit", views.audit_view(state)),
            (
                "What would leave",
                pn.param.ParamFunction(
                    views.preview_view(state), lazy=True, loading_indicator=True
                ),
            ),
            dynamic=True,
        )
    ],
).servable()
