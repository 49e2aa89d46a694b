"""Declared payload schemas: what each analysis may release, checked before a payload leaves.

Every local step in the package has a :class:`PayloadSchema`: its tables, each table's columns
and their kinds, and its named values. :func:`validate_payload` rejects anything undeclared (a
table, a column, a value), a column of the wrong kind, an identifier-like or date column, and,
given the site's policy, any count that policy forbids. A site runs it on every payload it is
about to release (and a coordinator may run it again on what it received), so a local step that
by mistake returns row-level data fails loudly at the site instead of leaking.

Column kinds:

``count``
    persons, records or events: integer; under a policy 0, missing (suppressed) or at least
    ``min_cell_count``.
``size``
    the size of a whole cohort or table: integer; under a policy 0, missing or at least
    ``min_cohort_size`` (the rule that governs totals).
``weighted``
    an event table's counts, floats when weighted: integers are checked as ``count``, weighted
    sums are not (their runs were formed from the unweighted counts).
``integer``, ``number``, ``text``, ``flag``
    other integers (a step, a year, a matrix index), numbers (sums, means, statistics), text
    labels and booleans.

A table may also allow *key* columns (the user's ``by`` columns of a count or an event table):
any name that does not look like an identifier (``person_id``, ``subject``, ``name``, ...) or
a date, holding text, integers, booleans or numbers.

An analysis declares its schema by a ``payload_schema`` attribute or in :data:`SCHEMAS`
(keyed by the class' dotted name, so this module imports no analysis).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from clinnova_explore.analysis.payload import Payload, PayloadError, dtype_tag

if TYPE_CHECKING:
    from clinnova_explore.catalog import DisclosurePolicy

__all__ = [
    "SCHEMAS",
    "Kind",
    "PayloadError",
    "PayloadSchema",
    "TableSchema",
    "identifier_like",
    "schema_for",
    "validate_payload",
]

Kind = Literal["count", "size", "weighted", "integer", "number", "text", "flag"]

_TAGS: dict[str, frozenset[str]] = {
    "integer": frozenset({"int64", "Int64"}),
    "number": frozenset({"int64", "Int64", "float64", "Float64"}),
    "text": frozenset({"object:str", "string[python]", "string[pyarrow]"}),
    "flag": frozenset({"bool", "boolean"}),
}
_TAGS |= {"count": _TAGS["integer"], "size": _TAGS["integer"], "weighted": _TAGS["number"]}
_KEY_TAGS = _TAGS["text"] | _TAGS["number"] | _TAGS["flag"]
_IDENTIFIER = re.compile(
    r"(^|_)(ids?|person|patient|subject|pid|mrn|ssn|email|phone|address|dob|date|datetime|"
    r"timestamp)($|_)"
)


def identifier_like(column: str) -> bool:
    """True for a column name that looks like a person identifier or a date.

    Concept ids (``*_concept_id``) are codes, not identifiers.

    Examples
    --------
    >>> names = ("person_id", "subject", "index_date", "arm", "drug_concept_id")
    >>> [identifier_like(c) for c in names]
    [True, True, True, False, False]
    """
    name = column.lower()
    if name.endswith("concept_id"):
        return False
    return bool(_IDENTIFIER.search(name))


@dataclass(frozen=True)
class TableSchema:
    """The columns of one released table.

    Parameters
    ----------
    columns
        ``{column: kind}``; all required unless listed in ``optional``.
    optional
        Declared columns a payload may leave out.
    keys
        Whether undeclared key columns (the user's ``by`` columns) are allowed.
    """

    columns: Mapping[str, Kind]
    optional: frozenset[str] = frozenset()
    keys: bool = False


@dataclass(frozen=True)
class PayloadSchema:
    """The tables and named values an analysis' payload may hold."""

    tables: Mapping[str, TableSchema]
    values: Mapping[str, Kind] = field(default_factory=dict)
    optional_tables: frozenset[str] = frozenset()
    optional_values: frozenset[str] = frozenset()


def _t(
    extra: Mapping[str, Kind] | None = None,
    *,
    keys: bool = False,
    optional: tuple[str, ...] = (),
    **columns: Kind,
) -> TableSchema:
    return TableSchema({**(extra or {}), **columns}, frozenset(optional), keys)


_STATS = PayloadSchema(
    {"stats": _t(stratum="text", term="text", i="integer", j="integer", value="number")}
)
_TEXT3: dict[str, Kind] = {"cohort": "text", "variable": "text", "level": "text"}
_MOMENTS: dict[str, Kind] = dict.fromkeys(
    ("sum", "sumsq", "mean", "sd", "q1", "median", "q3"), "number"
)

SCHEMAS: dict[str, PayloadSchema] = {
    "clinnova_explore.analysis.counts.CohortCounts": PayloadSchema(
        {
            "counts": _t(persons="count", records="count", suppressed="flag"),
            "attrition": _t(
                step="integer", rule="text", persons="count", records="count", suppressed="flag"
            ),
        },
        {"definition_hash": "text"},
    ),
    "clinnova_explore.analysis.characterize.Characterize": PayloadSchema(
        {
            "counts": _t(_TEXT3, part="text", n="count", suppressed="flag"),
            "moments": _t({**_TEXT3, **_MOMENTS}, suppressed="flag"),
        },
        {"min_cell_count": "integer", "quantiles_released": "flag"},
    ),
    "clinnova_explore.analysis.incidence.IncidenceAnalysis": PayloadSchema(
        {
            "strata": _t(
                stratum="text",
                age_group="text",
                sex="text",
                year="integer",
                persons_at_risk="count",
                person_days="integer",
                person_outcomes="count",
                outcomes="count",
                suppressed="flag",
            )
        },
        {"target_persons": "size"},
    ),
    "clinnova_explore.analysis.pathways.PathwaysAnalysis": PayloadSchema(
        {"paths": _t(path="text", persons="count", suppressed="flag")},
        {"target_persons": "size"},
    ),
    "clinnova_explore.federated.steps.EventTableStep": PayloadSchema(
        {"events": _t(keys=True, time="number", n_events="weighted", n_censored="weighted")},
        {"merged_bins": "integer", "dropped_cells": "text"},
    ),
    "clinnova_explore.federated.steps.DesignStep": PayloadSchema(
        {"levels": _t(covariate="text", level="text")},
        {"n": "size", "events": "count"},
        optional_values=frozenset({"events"}),
    ),
    "clinnova_explore.federated.steps.CoxStep": _STATS,
    "clinnova_explore.federated.steps.LogisticStep": _STATS,
    "clinnova_explore.federated.steps.CountStep": PayloadSchema(
        {
            "counts": _t(
                keys=True,
                optional=("events",),
                site="text",
                persons="count",
                events="count",
                suppressed="flag",
            )
        }
    ),
    "clinnova_explore.analysis.effects.federated.MomentsStep": PayloadSchema(
        {
            "moments": _t(
                covariate="text",
                arm="integer",
                n="count",
                sum_w="number",
                sum_w2="number",
                mean="number",
                m2="number",
                binary="flag",
            ),
            "levels": _t(level="text"),
        },
        {"rows": "size"},
        optional_tables=frozenset({"levels"}),
        optional_values=frozenset({"rows"}),
    ),
    "clinnova_explore.report.tte_attrition.TteAttritionStep": PayloadSchema(
        {"attrition": _t(step="text", persons="count", suppressed="flag")}
    ),
}
"""Declared schemas by the dotted name of the analysis class."""


def schema_for(analysis: Any) -> PayloadSchema:
    """The declared schema of an analysis object.

    Raises
    ------
    PayloadError
        When the analysis declares none.
    """
    own = getattr(analysis, "payload_schema", None)
    if isinstance(own, PayloadSchema):
        return own
    cls = type(analysis)
    key = f"{cls.__module__}.{cls.__qualname__}"
    if key in SCHEMAS:
        return SCHEMAS[key]
    name = getattr(analysis, "name", key)
    raise PayloadError(
        f"analysis {name!r} ({key}) has no declared payload schema, so a site will not release "
        "it: give the class a `payload_schema` (clinnova_explore.federated.schemas."
        "PayloadSchema) or add it to SCHEMAS"
    )


def _small(values: np.ndarray, floor: int) -> bool:
    return bool(((values > 0) & (values < floor)).any())


def _check_column(
    series: pd.Series, kind: Kind, where: str, policy: DisclosurePolicy | None
) -> None:
    tag = dtype_tag(series)
    if len(series) == 0:
        return  # an empty column carries nothing, whatever dtype it was built with
    if tag not in _TAGS[kind]:
        raise PayloadError(f"{where}: dtype {tag} is not a {kind} column")
    if policy is None or kind not in ("count", "size", "weighted") or tag not in _TAGS["integer"]:
        return
    values = series.dropna().to_numpy(dtype=np.int64)
    if kind == "size":
        if _small(values, policy.min_cohort_size):
            raise PayloadError(f"{where}: a total below min_cohort_size would leave the site")
    elif _small(values, policy.min_cell_count):
        raise PayloadError(f"{where}: a count in (0, min_cell_count) would leave the site")
    if (values < 0).any():
        raise PayloadError(f"{where}: a count is negative")


def _check_value(value: Any, kind: Kind, where: str, policy: DisclosurePolicy | None) -> None:
    ok = {
        "count": value is None or (isinstance(value, int) and not isinstance(value, bool)),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": value is None or (isinstance(value, int | float) and not isinstance(value, bool)),
        "text": isinstance(value, str),
        "flag": isinstance(value, bool),
    }
    ok["size"] = ok["weighted"] = ok["count"]
    if not ok[kind]:
        raise PayloadError(f"{where}: a {type(value).__name__} is not a {kind} value")
    if policy is not None and kind in ("count", "size", "weighted") and value is not None:
        _check_column(pd.Series([value], dtype="int64"), kind, where, policy)


def _check_table(
    df: pd.DataFrame, schema: TableSchema, where: str, policy: DisclosurePolicy | None
) -> None:
    missing = [c for c in schema.columns if c not in df.columns and c not in schema.optional]
    if missing:
        raise PayloadError(f"{where}: declared column(s) {missing} are missing")
    for col in df.columns:
        at = f"{where}, column {col!r}"
        if col in schema.columns:
            _check_column(df[col], schema.columns[col], at, policy)
            continue
        if not schema.keys:
            raise PayloadError(f"{at}: not declared for this table")
        if identifier_like(col):
            raise PayloadError(f"{at}: looks like a person identifier or a date")
        tag = dtype_tag(df[col])
        if tag not in _KEY_TAGS:
            raise PayloadError(f"{at}: a key column of dtype {tag} (dates may not leave)")


def validate_payload(
    payload: Payload, analysis: Any, policy: DisclosurePolicy | None = None
) -> Payload:
    """Check a payload against its analysis' declared schema (and the site's policy).

    Parameters
    ----------
    payload
        What the site is about to release (or what the coordinator received).
    analysis
        The analysis object whose local step made it.
    policy
        The releasing site's policy: counts must then be 0, missing or at least
        ``min_cell_count``, totals 0, missing or at least ``min_cohort_size``.

    Returns
    -------
    Payload
        ``payload`` itself, when valid.

    Raises
    ------
    PayloadError
        Naming the analysis, the site, the table or value and the column (never a value).
    """
    schema = schema_for(analysis)
    where = f"analysis {payload.analysis!r} at site {payload.site!r}"
    if payload.refused is not None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", payload.refused):
            raise PayloadError(f"{where}: a refusal carries a rule name, not free text")
        return payload
    for name, df in payload.tables.items():
        if name not in schema.tables:
            raise PayloadError(f"{where}: table {name!r} is not declared for this analysis")
        _check_table(df, schema.tables[name], f"{where}, table {name!r}", policy)
    absent = set(schema.tables) - set(payload.tables) - schema.optional_tables
    if absent:
        raise PayloadError(f"{where}: declared table(s) {sorted(absent)} are missing")
    for key, value in payload.values.items():
        if key not in schema.values:
            raise PayloadError(f"{where}: value {key!r} is not declared for this analysis")
        _check_value(value, schema.values[key], f"{where}, value {key!r}", policy)
    absent = set(schema.values) - set(payload.values) - schema.optional_values
    if absent:
        raise PayloadError(f"{where}: declared value(s) {sorted(absent)} are missing")
    return payload
