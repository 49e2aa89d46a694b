"""Site-native exports and FHIR R4 -> one OMOP CDM DuckDB file per site.

Every native row is either loaded (with its origin in ``source_provenance``) or quarantined
(``quarantine``, with a reason code); ``reconciliation`` proves ``rows_in = loaded +
quarantined`` for every file.
"""

from __future__ import annotations

from clinnova_explore.harmonize.build import (
    HarmonizeReport,
    harmonize_fhir_bundle,
    harmonize_site,
    read_quarantine,
    read_reconciliation,
)
from clinnova_explore.harmonize.errors import HarmonizeError
from clinnova_explore.harmonize.run import harmonize_all

__all__ = [
    "HarmonizeError",
    "HarmonizeReport",
    "harmonize_all",
    "harmonize_fhir_bundle",
    "harmonize_site",
    "read_quarantine",
    "read_reconciliation",
]
