"""OMOP CDM v5.4 subset: table schemas, the shipped vocabulary, named concepts and units."""

from __future__ import annotations

from clinnova_explore.cdm import concepts, units
from clinnova_explore.cdm.schema import (
    CDM_VERSION,
    CONCEPT_COLUMNS,
    FOREIGN_KEYS,
    PRIMARY_KEYS,
    REQUIRED,
    SCHEMAS,
    create_cdm_tables,
    schema,
)
from clinnova_explore.cdm.units import UCUM, conversion_factor
from clinnova_explore.cdm.vocabulary import (
    VOCABULARY_TABLES,
    ancestors,
    concept_name,
    descendants,
    load_vocabulary,
    source_to_standard,
    write_vocabulary,
)

__all__ = [
    "CDM_VERSION",
    "CONCEPT_COLUMNS",
    "FOREIGN_KEYS",
    "PRIMARY_KEYS",
    "REQUIRED",
    "SCHEMAS",
    "UCUM",
    "VOCABULARY_TABLES",
    "ancestors",
    "concept_name",
    "concepts",
    "conversion_factor",
    "create_cdm_tables",
    "descendants",
    "load_vocabulary",
    "schema",
    "source_to_standard",
    "units",
    "write_vocabulary",
]
