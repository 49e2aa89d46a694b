"""Staged rows -> OMOP CDM tables, provenance, observation periods and mapping coverage.

Ids are assigned in file order (``row_number() OVER (ORDER BY line)``), so a rebuild from the
same files gives the same ids. Codes are looked up through ``vocabulary.source_to_standard``
in the order of the table's vocabularies (undotted codes were dotted during staging); among
several ``Maps to`` targets the lowest standard concept id wins, so no row is duplicated. A FHIR
resource with several known codings (:mod:`.fhir`) takes the first, in the spec's priority order,
that maps to a standard concept; its code is the source value (the first coding's if none maps).

**Domain rule.** A row goes to the CDM table of its *standard concept's domain* (Condition ->
condition_occurrence, Drug -> drug_exposure, Procedure -> procedure_occurrence, Measurement ->
measurement, Observation -> observation). Unmapped codes (concept 0) and other domains stay in
the table of their native kind (labs -> measurement, events -> observation, ...).

**Units.** Lab values are converted to the measurement's canonical unit
(``concepts.CANONICAL_UNIT``) with ``units.conversion_factor``; a unit the spec cannot map or
convert keeps its value, with ``unit_concept_id`` of the native UCUM unit (or 0 if unknown).
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import pandas as pd

from clinnova_explore.cdm import concepts as C
from clinnova_explore.cdm import units as U
from clinnova_explore.cdm.vocabulary import source_to_standard
from clinnova_explore.harmonize.fhir import CODE_SEP
from clinnova_explore.harmonize.staging import lit

__all__ = ["DOMAIN_TABLE", "KIND_TABLE", "load_cdm"]

KIND_TABLE = {
    "diagnoses": "condition_occurrence",
    "medications": "drug_exposure",
    "labs": "measurement",
    "procedures": "procedure_occurrence",
    "events": "observation",
}
DOMAIN_TABLE = {
    "Condition": "condition_occurrence",
    "Drug": "drug_exposure",
    "Procedure": "procedure_occurrence",
    "Measurement": "measurement",
    "Observation": "observation",
}
EHR = C.EHR
SEP = lit(CODE_SEP)
SOURCE_VALUE = {
    "person": "gender_source_value",
    "visit_occurrence": "visit_source_value",
    "condition_occurrence": "condition_source_value",
    "drug_exposure": "drug_source_value",
    "procedure_occurrence": "procedure_source_value",
    "measurement": "measurement_source_value",
    "observation": "observation_source_value",
}


def _unit_rule(native: str, concept_id: int, units: Mapping[str, str] | None) -> tuple[float, int]:
    """(factor, unit_concept_id) for a native unit string of a measured concept."""
    ucum = units.get(native) if units is not None else (native if native in U.UCUM else None)
    if ucum is None or ucum not in U.UCUM:
        return 1.0, 0
    canonical = C.CANONICAL_UNIT.get(concept_id)
    if canonical is None:
        return 1.0, U.UCUM[ucum]
    target = next((code for code, cid in U.UCUM.items() if cid == canonical), None)
    if target is None:
        return 1.0, U.UCUM[ucum]
    try:
        return U.conversion_factor(ucum, target), canonical
    except (ValueError, KeyError, TypeError):
        return 1.0, U.UCUM[ucum]


def _code_map(con: duckdb.DuckDBPyConnection) -> None:
    vocabs = {
        v
        for (key,) in con.execute("SELECT DISTINCT vocab_key FROM evt").fetchall()
        for v in (key or "").split("|")
        if v
    }
    frames = [source_to_standard(v) for v in sorted(vocabs)]
    s2s = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(
            {
                "vocabulary_id": pd.Series(dtype=str),
                "source_code": pd.Series(dtype=str),
                "source_concept_id": pd.Series(dtype="int64"),
                "standard_concept_id": pd.Series(dtype="int64"),
            }
        )
    )
    con.register("s2s_df", s2s)
    # A key is a list of vocabularies with one code (delimited sites: the code is looked up
    # in each vocabulary, the first that knows it wins) or, for FHIR resources with several
    # known codings, parallel lists of vocabularies and codes (CODE_SEP): there the first
    # coding that maps to a standard concept wins, and its code becomes the source value.
    con.execute(f"""
        CREATE OR REPLACE TABLE code_map AS
        WITH keys AS (
            SELECT DISTINCT vocab_key, code_norm, contains(code_norm, {SEP}) AS multi FROM evt),
        pairs AS (
            SELECT vocab_key, code_norm, multi,
                   unnest(range(1, len(string_split(vocab_key, '|')) + 1)) AS pos
            FROM keys),
        cand AS (
            SELECT p.vocab_key, p.code_norm, p.multi, p.pos, s.source_code,
                   s.source_concept_id, coalesce(s.standard_concept_id, 0) AS std
            FROM pairs p JOIN s2s_df s
              ON s.vocabulary_id = string_split(p.vocab_key, '|')[p.pos]
             AND s.source_code = CASE WHEN p.multi
                                      THEN string_split(p.code_norm, {SEP})[p.pos]
                                      ELSE p.code_norm END),
        best AS (
            SELECT *, row_number() OVER (
                PARTITION BY vocab_key, code_norm
                ORDER BY multi AND std = 0, pos, std = 0, std, source_concept_id) AS rn
            FROM cand)
        SELECT b.vocab_key, b.code_norm, b.source_concept_id::BIGINT AS src,
               b.std::BIGINT AS std, c.domain_id,
               CASE WHEN b.multi THEN b.source_code END AS pick
        FROM best b LEFT JOIN concept c ON c.concept_id = b.std WHERE rn = 1
    """)
    con.unregister("s2s_df")


def load_cdm(con: duckdb.DuckDBPyConnection, units: Mapping[str, str] | None) -> None:
    """Fill the CDM tables and ``source_provenance`` from the ``stg_*`` tables.

    Parameters
    ----------
    con
        The site database with staged tables and the (empty) CDM tables.
    units
        Native unit string -> UCUM code; None when units are already UCUM (FHIR).
    """
    x = con.execute
    x("""CREATE OR REPLACE TABLE person_map AS
         SELECT patient_id, row_number() OVER (ORDER BY source_file, _line) AS person_id,
                source_file, _line, birth_date_d, death_date_d, sex, sex_std
         FROM stg_patients WHERE reason IS NULL""")
    x(f"""INSERT INTO person (person_id, gender_concept_id, year_of_birth, month_of_birth,
            day_of_birth, birth_datetime, race_concept_id, ethnicity_concept_id,
            person_source_value, gender_source_value, gender_source_concept_id,
            race_source_concept_id, ethnicity_source_concept_id)
         SELECT person_id, CASE sex_std WHEN 'M' THEN {C.MALE} WHEN 'F' THEN {C.FEMALE}
                ELSE 0 END, year(birth_date_d), month(birth_date_d), day(birth_date_d),
                birth_date_d::TIMESTAMP, 0, 0, patient_id, sex, 0, 0, 0
         FROM person_map ORDER BY person_id""")
    x(f"""INSERT INTO death (person_id, death_date, death_datetime, death_type_concept_id,
            cause_concept_id, cause_source_concept_id)
         SELECT person_id, death_date_d, death_date_d::TIMESTAMP, {EHR}, 0, 0
         FROM person_map WHERE death_date_d IS NOT NULL ORDER BY person_id""")
    x("""CREATE OR REPLACE TABLE visit_map AS
         SELECT v.visit_id, row_number() OVER (ORDER BY v.source_file, v._line)
                AS visit_occurrence_id, p.person_id, v.* EXCLUDE (visit_id, _raw)
         FROM stg_visits v JOIN person_map p USING (patient_id) WHERE v.reason IS NULL""")
    x(f"""INSERT INTO visit_occurrence (visit_occurrence_id, person_id, visit_concept_id,
            visit_start_date, visit_start_datetime, visit_end_date, visit_end_datetime,
            visit_type_concept_id, visit_source_value, visit_source_concept_id)
         SELECT visit_occurrence_id, person_id,
                CASE visit_type_std WHEN 'inpatient' THEN {C.INPATIENT_VISIT}
                     WHEN 'outpatient' THEN {C.OUTPATIENT_VISIT}
                     WHEN 'emergency' THEN {C.ER_VISIT} ELSE 0 END,
                start_date_d, start_date_d::TIMESTAMP, coalesce(end_date_d, start_date_d),
                coalesce(end_date_d, start_date_d)::TIMESTAMP, {EHR}, visit_type, 0
         FROM visit_map ORDER BY visit_occurrence_id""")
    parts = []
    for order, kind in enumerate(KIND_TABLE):
        has_visit = kind != "medications"
        has_value = kind == "labs"
        parts.append(f"""
            SELECT {order} AS kind_order, {lit(kind)} AS kind, s.source_table, s.source_file,
                   s._line, p.person_id, {"s.visit_id" if has_visit else "NULL"} AS visit_id,
                   s.code, s.code_norm, s.vocab_key,
                   {"s.start_date_d" if kind == "medications" else "s.date_d"} AS start_d,
                   {"s.end_date_d" if kind == "medications" else "NULL::DATE"} AS end_d,
                   {"s.value_num" if has_value else "NULL::DOUBLE"} AS value_num,
                   {"s.value" if has_value else "NULL"} AS value_raw,
                   {"s.unit" if has_value else "NULL"} AS unit
            FROM stg_{kind} s JOIN person_map p USING (patient_id) WHERE s.reason IS NULL""")
    x("CREATE OR REPLACE TABLE evt AS " + " UNION ALL ".join(parts))
    _code_map(con)
    pairs = con.execute("""SELECT DISTINCT e.unit, coalesce(m.std, 0) FROM evt e
        LEFT JOIN code_map m USING (vocab_key, code_norm) WHERE e.unit IS NOT NULL""").fetchall()
    rules = [(u, cid, *_unit_rule(u, cid, units)) for u, cid in pairs]
    unit_df = pd.DataFrame(rules, columns=["unit", "std", "factor", "unit_concept_id"]).astype(
        {"unit": str, "std": "int64", "factor": "float64", "unit_concept_id": "int64"}
    )
    con.register("unit_df", unit_df)
    default = " ".join(f"WHEN {lit(k)} THEN {lit(t)}" for k, t in KIND_TABLE.items())
    domain = " ".join(f"WHEN {lit(d)} THEN {lit(t)}" for d, t in DOMAIN_TABLE.items())
    x(f"""CREATE OR REPLACE TABLE evt_final AS
        WITH e AS (
            SELECT e.* REPLACE (coalesce(m.pick, e.code) AS code),
                   coalesce(m.std, 0) AS std, coalesce(m.src, 0) AS src,
                   coalesce(CASE m.domain_id {domain} END, CASE e.kind {default} END) AS target,
                   v.visit_occurrence_id,
                   e.value_num * coalesce(u.factor, 1.0) AS value_std,
                   CASE WHEN e.unit IS NOT NULL THEN coalesce(u.unit_concept_id, 0) END
                       AS unit_concept_id
            FROM evt e
            LEFT JOIN code_map m USING (vocab_key, code_norm)
            LEFT JOIN visit_map v USING (visit_id)
            LEFT JOIN unit_df u ON u.unit = e.unit AND u.std = coalesce(m.std, 0))
        SELECT *, row_number() OVER (PARTITION BY target ORDER BY kind_order, source_file, _line)
                  AS record_id
        FROM e""")
    con.unregister("unit_df")
    sel = "FROM evt_final WHERE target = '{}' ORDER BY record_id"
    x(f"""INSERT INTO condition_occurrence (condition_occurrence_id, person_id,
            condition_concept_id, condition_start_date, condition_start_datetime,
            condition_type_concept_id, visit_occurrence_id, condition_source_value,
            condition_source_concept_id)
        SELECT record_id, person_id, std, start_d, start_d::TIMESTAMP, {EHR},
               visit_occurrence_id, code, src {sel.format("condition_occurrence")}""")
    x(f"""INSERT INTO drug_exposure (drug_exposure_id, person_id, drug_concept_id,
            drug_exposure_start_date, drug_exposure_start_datetime, drug_exposure_end_date,
            drug_exposure_end_datetime, verbatim_end_date, drug_type_concept_id,
            visit_occurrence_id, drug_source_value, drug_source_concept_id)
        SELECT record_id, person_id, std, start_d, start_d::TIMESTAMP,
               coalesce(end_d, start_d), coalesce(end_d, start_d)::TIMESTAMP, end_d, {EHR},
               visit_occurrence_id, code, src {sel.format("drug_exposure")}""")
    x(f"""INSERT INTO procedure_occurrence (procedure_occurrence_id, person_id,
            procedure_concept_id, procedure_date, procedure_datetime, procedure_type_concept_id,
            visit_occurrence_id, procedure_source_value, procedure_source_concept_id)
        SELECT record_id, person_id, std, start_d, start_d::TIMESTAMP, {EHR},
               visit_occurrence_id, code, src {sel.format("procedure_occurrence")}""")
    x(f"""INSERT INTO measurement (measurement_id, person_id, measurement_concept_id,
            measurement_date, measurement_datetime, measurement_type_concept_id,
            value_as_number, unit_concept_id, visit_occurrence_id, measurement_source_value,
            measurement_source_concept_id, unit_source_value, value_source_value)
        SELECT record_id, person_id, std, start_d, start_d::TIMESTAMP, {EHR}, value_std,
               unit_concept_id, visit_occurrence_id, code, src, unit, value_raw
        {sel.format("measurement")}""")
    x(f"""INSERT INTO observation (observation_id, person_id, observation_concept_id,
            observation_date, observation_datetime, observation_type_concept_id,
            value_as_number, unit_concept_id, visit_occurrence_id, observation_source_value,
            observation_source_concept_id, unit_source_value, value_source_value)
        SELECT record_id, person_id, std, start_d, start_d::TIMESTAMP, {EHR}, value_std,
               unit_concept_id, visit_occurrence_id, code, src, unit, value_raw
        {sel.format("observation")}""")
    _observation_period(con)
    _provenance(con)


def _observation_period(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"""
        INSERT INTO observation_period
        WITH d AS (
            SELECT person_id, visit_start_date AS d, visit_occurrence_id FROM visit_occurrence
            UNION ALL
            SELECT person_id, visit_end_date, visit_occurrence_id FROM visit_occurrence),
        ok AS (
            SELECT d.* FROM d JOIN person p USING (person_id)
            WHERE d.d <= getvariable('export_date') AND d.d >= p.birth_datetime::DATE),
        per AS (SELECT person_id, min(d) AS s, max(d) AS e FROM ok GROUP BY person_id)
        SELECT row_number() OVER (ORDER BY per.person_id), per.person_id, per.s,
               greatest(per.e, coalesce(CASE WHEN dt.death_date <= getvariable('export_date')
                                             THEN dt.death_date END, per.e)),
               {EHR}
        FROM per LEFT JOIN death dt USING (person_id) ORDER BY per.person_id
    """)


def _provenance(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("""
        INSERT INTO source_provenance
        SELECT 'person', person_id, source_file, _line FROM person_map
        UNION ALL
        SELECT 'death', person_id, source_file, _line FROM person_map
            WHERE death_date_d IS NOT NULL
        UNION ALL
        SELECT 'visit_occurrence', visit_occurrence_id, source_file, _line FROM visit_map
        UNION ALL
        SELECT target, record_id, source_file, _line FROM evt_final
    """)
    con.execute("""
        INSERT INTO source_provenance
        SELECT 'observation_period', o.observation_period_id, v.source_file,
               min(v._line) FILTER (WHERE v.start_date_d = o.observation_period_start_date
                                       OR v.end_date_d = o.observation_period_start_date)
        FROM observation_period o JOIN visit_map v USING (person_id)
        GROUP BY ALL
    """)


def mapping_coverage(con: duckdb.DuckDBPyConnection, site: str) -> None:
    """Fill ``mapping_coverage``: rows with a standard concept, per CDM table."""
    from clinnova_explore.cdm.schema import CONCEPT_COLUMNS

    for table, (column, _domain) in CONCEPT_COLUMNS.items():
        source = SOURCE_VALUE[table]
        con.execute(f"""
            INSERT INTO mapping_coverage
            SELECT {lit(site)}, {lit(table)}, count(*),
                   count(*) FILTER (WHERE {column} <> 0),
                   coalesce(string_agg(DISTINCT {source}, ',' ORDER BY {source})
                            FILTER (WHERE {column} = 0), '')
            FROM {table}""")
