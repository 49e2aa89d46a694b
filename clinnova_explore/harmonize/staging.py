"""Parse and check staged native rows in DuckDB: the quarantine decision for every row.

Raw rows sit in ``raw_<kind>`` tables (all fields as strings, see :mod:`.reader` and
:mod:`.fhir`; ``_nl`` is the number of physical lines of a record). :func:`stage_kind` turns one
into ``stg_<kind>``: cleaned and typed logical fields plus ``reason``/``detail``. The first
failing check wins, in this order:

1. ``malformed_line`` / ``invalid_encoding`` / ``invalid_json`` / ``invalid_resource``
   (found while reading);
2. ``duplicate``: the raw line is an exact copy of an earlier line of the same file;
3. ``missing_required``: a required logical field (``REQUIRED``) is empty;
4. ``invalid_date``: a date does not match the site's date format;
5. ``invalid_number``: a lab value is not a number in the site's decimal convention;
6. ``unknown_value``: sex or visit type is not in the spec's value map;
7. ``duplicate`` again for a repeated key (patient id, visit id) on a different line;
8. ``unknown_person``: the patient id is not in the patients file;
   ``person_quarantined``: it is, but every line of that patient was quarantined.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from clinnova_explore.harmonize.spec import LOGICAL_FIELDS, AnySpec, FhirSpec

__all__ = ["REQUIRED", "KindLayout", "layouts", "stage_kind"]

#: Logical fields that must not be empty, per table kind.
REQUIRED: dict[str, tuple[str, ...]] = {
    "patients": ("patient_id", "birth_date", "sex"),
    "visits": ("visit_id", "patient_id", "visit_type", "start_date"),
    "diagnoses": ("patient_id", "code", "date"),
    "medications": ("patient_id", "code", "start_date"),
    "labs": ("patient_id", "code", "date"),
    "procedures": ("patient_id", "code", "date"),
    "events": ("patient_id", "code", "date"),
}
DATE_FIELDS = ("birth_date", "death_date", "start_date", "end_date", "date")
FHIR_DATE_FORMAT = "%Y-%m-%d"


@dataclass(frozen=True)
class KindLayout:
    """What staging needs to know about one logical table of one site."""

    kind: str
    file: str
    columns: dict[str, str]
    date_format: str
    decimal: str
    nulls: tuple[str, ...]
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    vocab_key: str | None = None  # "LOINC|CLX_SCORE"; None: per-row _vocab (FHIR)
    undotted: bool = False


def layouts(spec: AnySpec) -> dict[str, KindLayout]:
    """Staging layout of every table kind of a site spec."""
    out = {}
    for kind, fields in LOGICAL_FIELDS.items():
        if isinstance(spec, FhirSpec):
            out[kind] = KindLayout(
                kind, "", {f: f for f in fields}, FHIR_DATE_FORMAT, ".", ("",), dict(spec.values)
            )
        else:
            t = spec.tables[kind]
            out[kind] = KindLayout(
                kind,
                t.file,
                dict(t.columns),
                spec.date_format,
                spec.decimal,
                tuple(spec.null_values),
                dict(t.values),
                "|".join(t.vocabulary),
                t.code_format == "undotted",
            )
    return out


def lit(value: str | None) -> str:
    """A SQL string literal."""
    return "NULL" if value is None else "'" + str(value).replace("'", "''") + "'"


def _number_regex(decimal: str) -> str:
    d = "[.]" if decimal == "." else ","
    return f"[+-]?([0-9]+({d}[0-9]*)?|{d}[0-9]+)([eE][+-]?[0-9]+)?"


def stage_kind(con: duckdb.DuckDBPyConnection, lay: KindLayout) -> None:
    """Create ``stg_<kind>`` from ``raw_<kind>`` (patients must be staged first)."""
    kind = lay.kind
    fields = LOGICAL_FIELDS[kind]
    nulls = ", ".join(lit(v) for v in lay.nulls) or "''"
    clean = ",\n".join(
        f"CASE WHEN trim({f}) IN ({nulls}) THEN NULL ELSE trim({f}) END AS {f}" for f in fields
    )
    fmt = lit(lay.date_format)
    parsed = []
    checks = ["WHEN _pre IS NOT NULL THEN _pre", "WHEN _first < _line THEN 'duplicate'"]
    details = [
        "WHEN _pre IS NOT NULL THEN _detail",
        "WHEN _first < _line THEN format('exact duplicate of line {}', _first)",
    ]
    for f in REQUIRED[kind]:
        checks.append(f"WHEN {f} IS NULL THEN 'missing_required'")
        details.append(
            f"WHEN {f} IS NULL THEN format('required field {f} (column {{}}) is "
            f"empty at line {{}}', {lit(lay.columns[f])}, _line)"
        )
    for f in fields:
        if f in DATE_FIELDS:
            parsed.append(f"try_strptime({f}, {fmt})::DATE AS {f}_d")
            checks.append(f"WHEN {f} IS NOT NULL AND {f}_d IS NULL THEN 'invalid_date'")
            details.append(
                f"WHEN {f} IS NOT NULL AND {f}_d IS NULL THEN format('field {f} (column {{}}) "
                f"value {{}} is not a valid date in format {{}} at line {{}}', "
                f"{lit(lay.columns[f])}, {f}, {fmt}, _line)"
            )
    if "value" in fields:
        rx = lit(_number_regex(lay.decimal))
        num = "replace(value, ',', '.')" if lay.decimal == "," else "value"
        parsed.append(
            f"CASE WHEN regexp_full_match(value, {rx}) THEN TRY_CAST({num} AS DOUBLE)"
            " END AS value_num"
        )
        checks.append("WHEN value IS NOT NULL AND value_num IS NULL THEN 'invalid_number'")
        details.append(
            f"WHEN value IS NOT NULL AND value_num IS NULL THEN format('field value (column "
            f"{{}}) value {{}} is not a number with decimal mark {{}} at line {{}}', "
            f"{lit(lay.columns['value'])}, value, {lit(lay.decimal)}, _line)"
        )
    for f in ("sex", "visit_type"):
        if f in fields:
            mapping = lay.values.get(f, {})
            cases = " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in mapping.items())
            parsed.append(f"CASE {f} {cases} END AS {f}_std" if cases else f"NULL AS {f}_std")
            checks.append(f"WHEN {f} IS NOT NULL AND {f}_std IS NULL THEN 'unknown_value'")
            details.append(
                f"WHEN {f} IS NOT NULL AND {f}_std IS NULL THEN format('field {f} (column {{}}) "
                f"value {{}} is not one of {{}} at line {{}}', {lit(lay.columns[f])}, {f}, "
                f"{lit(', '.join(mapping))}, _line)"
            )
    if "code" in fields:
        code = "code"
        if lay.undotted:
            code = (
                "CASE WHEN length(code) > 3 AND NOT contains(code, '.') "
                "THEN substr(code, 1, 3) || '.' || substr(code, 4) ELSE code END"
            )
        vocab = lit(lay.vocab_key) if lay.vocab_key is not None else "coalesce(_vocab, '')"
        if lay.vocab_key is None:  # FHIR: all known codings, in the spec's priority order
            code = f"coalesce(_codes, {code})"
        parsed.append(f"{code} AS code_norm, {vocab} AS vocab_key")
    con.execute(f"""
        CREATE OR REPLACE TABLE stg_{kind} AS
        WITH c AS (
            SELECT source_table, source_file, _line, _raw, _nl, _pre, _detail, _vocab, _codes,
                   min(_line) OVER (PARTITION BY source_file, _raw) AS _first,
                   {clean}
            FROM raw_{kind}
        ), p AS (SELECT *, {", ".join(parsed) or "NULL AS _none"} FROM c)
        SELECT * EXCLUDE (_pre, _detail, _first),
               CASE {" ".join(checks)} END AS reason,
               CASE {" ".join(details)} END AS detail
        FROM p
    """)
    key = {"patients": "patient_id", "visits": "visit_id"}.get(kind)
    if key:
        con.execute(f"""
            UPDATE stg_{kind} AS s SET reason = 'duplicate',
                detail = format('repeated {key} {{}} (column {{}}); first at line {{}}',
                                s.{key}, {lit(lay.columns[key])}, d.first_line)
            FROM (SELECT _line, min(_line) OVER (PARTITION BY {key}) AS first_line
                  FROM stg_{kind} WHERE reason IS NULL) AS d
            WHERE s._line = d._line AND d.first_line < d._line
        """)
    if kind != "patients":
        con.execute(f"""
            UPDATE stg_{kind} AS s SET
                reason = CASE WHEN k.patient_id IS NULL THEN 'unknown_person'
                              ELSE 'person_quarantined' END,
                detail = CASE WHEN k.patient_id IS NULL
                    THEN format('patient id {{}} (column {{}}) at line {{}} is not in the '
                                'patients file', s.patient_id, {lit(lay.columns["patient_id"])},
                                s._line)
                    ELSE format('patient id {{}} (column {{}}) at line {{}}: the patient''s line '
                                '{{}} was quarantined ({{}})', s.patient_id,
                                {lit(lay.columns["patient_id"])}, s._line, k.first_line,
                                k.first_reason) END
            FROM (SELECT s.patient_id, l.patient_id AS k_pid FROM stg_{kind} s
                  LEFT JOIN stg_patients l ON l.patient_id = s.patient_id AND l.reason IS NULL
                  WHERE s.reason IS NULL GROUP BY ALL) AS m
            LEFT JOIN (SELECT patient_id, min(_line) AS first_line,
                              arg_min(reason, _line) AS first_reason
                       FROM stg_patients WHERE patient_id IS NOT NULL GROUP BY patient_id) AS k
              ON k.patient_id = m.patient_id
            WHERE s.reason IS NULL AND s.patient_id = m.patient_id AND m.k_pid IS NULL
        """)
