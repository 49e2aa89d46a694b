"""Federated analyses over sites that each hold one analysis table.

:class:`Federation` (from :meth:`~Federation.from_tables`, :meth:`~Federation.from_cdm` or
:meth:`~Federation.from_site_tables`) runs Kaplan-Meier, log-rank, stratified Cox, logistic
regression and counts site by site through the analysis contract (policy at the site, payloads
serialized across the boundary), and :meth:`Federation.pooled` runs the same code on the
concatenated rows for comparison. :mod:`~clinnova_explore.federated.runtime` is the site's side
of every request; :mod:`~clinnova_explore.federated.protocol` what crosses the boundary.

Names are imported on first use, so that the analysis contract can import
:mod:`~clinnova_explore.federated.protocol` without importing the federation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinnova_explore._lazy import lazy_exports

if TYPE_CHECKING:
    from clinnova_explore.federated.federation import POOLED, Federation, FederationError
    from clinnova_explore.federated.preview import Preview
    from clinnova_explore.federated.runtime import SiteRuntime, runtime_for
    from clinnova_explore.federated.table_site import TableSite

__all__ = [
    "POOLED",
    "Federation",
    "FederationError",
    "Preview",
    "SiteRuntime",
    "TableSite",
    "runtime_for",
]

_HOME = {
    "POOLED": "clinnova_explore.federated.federation",
    "Federation": "clinnova_explore.federated.federation",
    "FederationError": "clinnova_explore.federated.federation",
    "Preview": "clinnova_explore.federated.preview",
    "SiteRuntime": "clinnova_explore.federated.runtime",
    "runtime_for": "clinnova_explore.federated.runtime",
    "TableSite": "clinnova_explore.federated.table_site",
}
__getattr__, __dir__ = lazy_exports(__name__, _HOME)
