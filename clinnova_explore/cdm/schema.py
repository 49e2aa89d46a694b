"""OMOP CDM v5.4 subset as ibis schemas.

The column lists follow the OHDSI CommonDataModel v5.4 DDL for the tables an exploration
needs. ``REQUIRED`` lists the columns the CDM specification marks as required (NOT NULL);
the data-quality checks use it. ``PRIMARY_KEYS`` and ``FOREIGN_KEYS`` describe the relations
the conformance checks verify.
"""

from __future__ import annotations

import ibis
import ibis.expr.schema as sch

__all__ = [
    "CDM_VERSION",
    "FOREIGN_KEYS",
    "PRIMARY_KEYS",
    "REQUIRED",
    "SCHEMAS",
    "create_cdm_tables",
    "schema",
]

CDM_VERSION = "5.4"

_I = "int64"
_D = "date"
_TS = "timestamp"
_S = "string"
_F = "float64"

SCHEMAS: dict[str, sch.Schema] = {
    "person": ibis.schema(
        {
            "person_id": _I,
            "gender_concept_id": _I,
            "year_of_birth": _I,
            "month_of_birth": _I,
            "day_of_birth": _I,
            "birth_datetime": _TS,
            "race_concept_id": _I,
            "ethnicity_concept_id": _I,
            "location_id": _I,
            "provider_id": _I,
            "care_site_id": _I,
            "person_source_value": _S,
            "gender_source_value": _S,
            "gender_source_concept_id": _I,
            "race_source_value": _S,
            "race_source_concept_id": _I,
            "ethnicity_source_value": _S,
            "ethnicity_source_concept_id": _I,
        }
    ),
    "observation_period": ibis.schema(
        {
            "observation_period_id": _I,
            "person_id": _I,
            "observation_period_start_date": _D,
            "observation_period_end_date": _D,
            "period_type_concept_id": _I,
        }
    ),
    "visit_occurrence": ibis.schema(
        {
            "visit_occurrence_id": _I,
            "person_id": _I,
            "visit_concept_id": _I,
            "visit_start_date": _D,
            "visit_start_datetime": _TS,
            "visit_end_date": _D,
            "visit_end_datetime": _TS,
            "visit_type_concept_id": _I,
            "provider_id": _I,
            "care_site_id": _I,
            "visit_source_value": _S,
            "visit_source_concept_id": _I,
            "admitted_from_concept_id": _I,
            "admitted_from_source_value": _S,
            "discharged_to_concept_id": _I,
            "discharged_to_source_value": _S,
            "preceding_visit_occurrence_id": _I,
        }
    ),
    "condition_occurrence": ibis.schema(
        {
            "condition_occurrence_id": _I,
            "person_id": _I,
            "condition_concept_id": _I,
            "condition_start_date": _D,
            "condition_start_datetime": _TS,
            "condition_end_date": _D,
            "condition_end_datetime": _TS,
            "condition_type_concept_id": _I,
            "condition_status_concept_id": _I,
            "stop_reason": _S,
            "provider_id": _I,
            "visit_occurrence_id": _I,
            "visit_detail_id": _I,
            "condition_source_value": _S,
            "condition_source_concept_id": _I,
            "condition_status_source_value": _S,
        }
    ),
    "drug_exposure": ibis.schema(
        {
            "drug_exposure_id": _I,
            "person_id": _I,
            "drug_concept_id": _I,
            "drug_exposure_start_date": _D,
            "drug_exposure_start_datetime": _TS,
            "drug_exposure_end_date": _D,
            "drug_exposure_end_datetime": _TS,
            "verbatim_end_date": _D,
            "drug_type_concept_id": _I,
            "stop_reason": _S,
            "refills": _I,
            "quantity": _F,
            "days_supply": _I,
            "sig": _S,
            "route_concept_id": _I,
            "lot_number": _S,
            "provider_id": _I,
            "visit_occurrence_id": _I,
            "visit_detail_id": _I,
            "drug_source_value": _S,
            "drug_source_concept_id": _I,
            "route_source_value": _S,
            "dose_unit_source_value": _S,
        }
    ),
    "procedure_occurrence": ibis.schema(
        {
            "procedure_occurrence_id": _I,
            "person_id": _I,
            "procedure_concept_id": _I,
            "procedure_date": _D,
            "procedure_datetime": _TS,
            "procedure_end_date": _D,
            "procedure_end_datetime": _TS,
            "procedure_type_concept_id": _I,
            "modifier_concept_id": _I,
            "quantity": _I,
            "provider_id": _I,
            "visit_occurrence_id": _I,
            "visit_detail_id": _I,
            "procedure_source_value": _S,
            "procedure_source_concept_id": _I,
            "modifier_source_value": _S,
        }
    ),
    "measurement": ibis.schema(
        {
            "measurement_id": _I,
            "person_id": _I,
            "measurement_concept_id": _I,
            "measurement_date": _D,
            "measurement_datetime": _TS,
            "measurement_time": _S,
            "measurement_type_concept_id": _I,
            "operator_concept_id": _I,
            "value_as_number": _F,
            "value_as_concept_id": _I,
            "unit_concept_id": _I,
            "range_low": _F,
            "range_high": _F,
            "provider_id": _I,
            "visit_occurrence_id": _I,
            "visit_detail_id": _I,
            "measurement_source_value": _S,
            "measurement_source_concept_id": _I,
            "unit_source_value": _S,
            "unit_source_concept_id": _I,
            "value_source_value": _S,
            "measurement_event_id": _I,
            "meas_event_field_concept_id": _I,
        }
    ),
    "observation": ibis.schema(
        {
            "observation_id": _I,
            "person_id": _I,
            "observation_concept_id": _I,
            "observation_date": _D,
            "observation_datetime": _TS,
            "observation_type_concept_id": _I,
            "value_as_number": _F,
            "value_as_string": _S,
            "value_as_concept_id": _I,
            "qualifier_concept_id": _I,
            "unit_concept_id": _I,
            "provider_id": _I,
            "visit_occurrence_id": _I,
            "visit_detail_id": _I,
            "observation_source_value": _S,
            "observation_source_concept_id": _I,
            "unit_source_value": _S,
            "qualifier_source_value": _S,
            "value_source_value": _S,
            "observation_event_id": _I,
            "obs_event_field_concept_id": _I,
        }
    ),
    "death": ibis.schema(
        {
            "person_id": _I,
            "death_date": _D,
            "death_datetime": _TS,
            "death_type_concept_id": _I,
            "cause_concept_id": _I,
            "cause_source_value": _S,
            "cause_source_concept_id": _I,
        }
    ),
    "cdm_source": ibis.schema(
        {
            "cdm_source_name": _S,
            "cdm_source_abbreviation": _S,
            "cdm_holder": _S,
            "source_description": _S,
            "source_documentation_reference": _S,
            "cdm_etl_reference": _S,
            "source_release_date": _D,
            "cdm_release_date": _D,
            "cdm_version": _S,
            "cdm_version_concept_id": _I,
            "vocabulary_version": _S,
        }
    ),
    "cohort": ibis.schema(
        {
            "cohort_definition_id": _I,
            "subject_id": _I,
            "cohort_start_date": _D,
            "cohort_end_date": _D,
        }
    ),
    "concept": ibis.schema(
        {
            "concept_id": _I,
            "concept_name": _S,
            "domain_id": _S,
            "vocabulary_id": _S,
            "concept_class_id": _S,
            "standard_concept": _S,
            "concept_code": _S,
            "valid_start_date": _D,
            "valid_end_date": _D,
            "invalid_reason": _S,
        }
    ),
    "concept_ancestor": ibis.schema(
        {
            "ancestor_concept_id": _I,
            "descendant_concept_id": _I,
            "min_levels_of_separation": _I,
            "max_levels_of_separation": _I,
        }
    ),
    "concept_relationship": ibis.schema(
        {
            "concept_id_1": _I,
            "concept_id_2": _I,
            "relationship_id": _S,
            "valid_start_date": _D,
            "valid_end_date": _D,
            "invalid_reason": _S,
        }
    ),
}

REQUIRED: dict[str, tuple[str, ...]] = {
    "person": (
        "person_id",
        "gender_concept_id",
        "year_of_birth",
        "race_concept_id",
        "ethnicity_concept_id",
    ),
    "observation_period": (
        "observation_period_id",
        "person_id",
        "observation_period_start_date",
        "observation_period_end_date",
        "period_type_concept_id",
    ),
    "visit_occurrence": (
        "visit_occurrence_id",
        "person_id",
        "visit_concept_id",
        "visit_start_date",
        "visit_end_date",
        "visit_type_concept_id",
    ),
    "condition_occurrence": (
        "condition_occurrence_id",
        "person_id",
        "condition_concept_id",
        "condition_start_date",
        "condition_type_concept_id",
    ),
    "drug_exposure": (
        "drug_exposure_id",
        "person_id",
        "drug_concept_id",
        "drug_exposure_start_date",
        "drug_exposure_end_date",
        "drug_type_concept_id",
    ),
    "procedure_occurrence": (
        "procedure_occurrence_id",
        "person_id",
        "procedure_concept_id",
        "procedure_date",
        "procedure_type_concept_id",
    ),
    "measurement": (
        "measurement_id",
        "person_id",
        "measurement_concept_id",
        "measurement_date",
        "measurement_type_concept_id",
    ),
    "observation": (
        "observation_id",
        "person_id",
        "observation_concept_id",
        "observation_date",
        "observation_type_concept_id",
    ),
    "death": ("person_id", "death_date"),
    "cdm_source": (
        "cdm_source_name",
        "cdm_source_abbreviation",
        "cdm_holder",
        "source_release_date",
        "cdm_release_date",
        "cdm_version_concept_id",
        "vocabulary_version",
    ),
    "cohort": ("cohort_definition_id", "subject_id", "cohort_start_date", "cohort_end_date"),
    "concept": (
        "concept_id",
        "concept_name",
        "domain_id",
        "vocabulary_id",
        "concept_class_id",
        "concept_code",
        "valid_start_date",
        "valid_end_date",
    ),
    "concept_ancestor": (
        "ancestor_concept_id",
        "descendant_concept_id",
        "min_levels_of_separation",
        "max_levels_of_separation",
    ),
    "concept_relationship": (
        "concept_id_1",
        "concept_id_2",
        "relationship_id",
        "valid_start_date",
        "valid_end_date",
    ),
}

PRIMARY_KEYS: dict[str, str] = {
    "person": "person_id",
    "observation_period": "observation_period_id",
    "visit_occurrence": "visit_occurrence_id",
    "condition_occurrence": "condition_occurrence_id",
    "drug_exposure": "drug_exposure_id",
    "procedure_occurrence": "procedure_occurrence_id",
    "measurement": "measurement_id",
    "observation": "observation_id",
    "death": "person_id",
    "concept": "concept_id",
}

# (table, column) -> (referenced table, referenced column)
FOREIGN_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    **{
        (t, "person_id"): ("person", "person_id")
        for t in (
            "observation_period",
            "visit_occurrence",
            "condition_occurrence",
            "drug_exposure",
            "procedure_occurrence",
            "measurement",
            "observation",
            "death",
        )
    },
    **{
        (t, "visit_occurrence_id"): ("visit_occurrence", "visit_occurrence_id")
        for t in (
            "condition_occurrence",
            "drug_exposure",
            "procedure_occurrence",
            "measurement",
            "observation",
        )
    },
}

# The standard concept column of each clinical table and the domain it must belong to.
CONCEPT_COLUMNS: dict[str, tuple[str, str]] = {
    "person": ("gender_concept_id", "Gender"),
    "visit_occurrence": ("visit_concept_id", "Visit"),
    "condition_occurrence": ("condition_concept_id", "Condition"),
    "drug_exposure": ("drug_concept_id", "Drug"),
    "procedure_occurrence": ("procedure_concept_id", "Procedure"),
    "measurement": ("measurement_concept_id", "Measurement"),
    "observation": ("observation_concept_id", "Observation"),
}
__all__.append("CONCEPT_COLUMNS")


def schema(table: str) -> sch.Schema:
    """Return the ibis schema of a CDM table.

    Parameters
    ----------
    table
        Lower-case CDM table name, e.g. ``"person"``.

    Returns
    -------
    ibis.Schema
        Column names and types of the table.

    Raises
    ------
    KeyError
        If the table is not part of the supported CDM subset.
    """
    try:
        return SCHEMAS[table.lower()]
    except KeyError:
        known = ", ".join(sorted(SCHEMAS))
        raise KeyError(f"{table!r} is not a table of the supported CDM subset ({known})") from None


def create_cdm_tables(con: ibis.BaseBackend, *, overwrite: bool = False) -> None:
    """Create every empty CDM table of the subset on a backend.

    Parameters
    ----------
    con
        An ibis backend (DuckDB, PostgreSQL, ...).
    overwrite
        Replace existing tables when true.
    """
    for name, sc in SCHEMAS.items():
        con.create_table(name, schema=sc, overwrite=overwrite)
