"""Cohort definitions (YAML and an ATLAS/Circe JSON subset) compiled to lazy ibis expressions.

>>> from clinnova_explore.cohort import builtin_definition
>>> defn = builtin_definition("ms_high_efficacy_start")
>>> [rule.name for rule in defn.inclusion_rules]
['Aged 18-60 at index', 'MS diagnosis on or before index']

``compile_cohort(defn, site)`` builds the lazy cohort query on any OMOP CDM source (a catalog
site, or ``open_cdm(path)`` for a DuckDB file such as Eunomia); ``generate_cohort`` writes the
OMOP ``cohort`` table and the attrition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clinnova_explore.cohort.compile import ENTRY_ROW, CompiledCohort, compile_cohort
from clinnova_explore.cohort.generate import CohortGenerationError, generate_cohort
from clinnova_explore.cohort.library import builtin_definition, builtin_definition_names
from clinnova_explore.cohort.model import CohortDefinition, CohortDefinitionError

if TYPE_CHECKING:
    from clinnova_explore.cdm.source import open_cdm

__all__ = [
    "ENTRY_ROW",
    "CohortDefinition",
    "CohortDefinitionError",
    "CohortGenerationError",
    "CompiledCohort",
    "builtin_definition",
    "builtin_definition_names",
    "compile_cohort",
    "generate_cohort",
    "open_cdm",
]


def __getattr__(name: str) -> Any:
    if name == "open_cdm":
        from clinnova_explore.cdm.source import open_cdm

        return open_cdm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
