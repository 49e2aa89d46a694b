"""Federated analyses over sites that each hold one analysis table.

:class:`Federation` (from :meth:`~Federation.from_tables` or :meth:`~Federation.from_cdm`) runs
Kaplan-Meier, log-rank, stratified Cox, logistic regression and counts site by site through the
analysis contract (policy at the site, payloads serialized across the boundary), and
:meth:`Federation.pooled` runs the same code on the concatenated rows for comparison.
"""

from __future__ import annotations

from clinnova_explore.federated.federation import POOLED, Federation, FederationError
from clinnova_explore.federated.table_site import TableSite

__all__ = ["POOLED", "Federation", "FederationError", "TableSite"]
