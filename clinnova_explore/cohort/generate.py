"""Write a cohort into the OMOP ``cohort`` table of a DuckDB file, with its attrition.

:func:`generate_cohort` runs the compiled cohort on its CDM source (read-only), then, in one
transaction on a separate writable connection, replaces the earlier rows of the cohort id in
``cohort`` and ``cohort_attrition``. Either both tables change or neither does.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from clinnova_explore.cdm.source import CdmSource
from clinnova_explore.cohort.compile import compile_cohort
from clinnova_explore.cohort.model import CohortDefinition

__all__ = ["ATTRITION_TABLE", "CohortGenerationError", "generate_cohort"]

ATTRITION_TABLE = "cohort_attrition"

_CREATE_COHORT = """
CREATE TABLE IF NOT EXISTS cohort (
    cohort_definition_id BIGINT,
    subject_id BIGINT,
    cohort_start_date DATE,
    cohort_end_date DATE
)"""

_CREATE_ATTRITION = f"""
CREATE TABLE IF NOT EXISTS {ATTRITION_TABLE} (
    cohort_definition_id BIGINT,
    rule_sequence INTEGER,
    rule VARCHAR,
    persons BIGINT,
    records BIGINT
)"""


class CohortGenerationError(RuntimeError):
    """The cohort could not be written; the message names the file and what to do."""


def _default_database(cdm: CdmSource) -> Path:
    locate = getattr(cdm, "resolved_location", None)
    backend = getattr(cdm, "backend", "duckdb")
    if locate is None or backend != "duckdb":
        raise CohortGenerationError(
            f"CDM source {cdm.id!r} is not a DuckDB file; pass `database=` the path of a DuckDB "
            "file to write the cohort table into"
        )
    return Path(locate()).resolve()


def generate_cohort(
    definition: CohortDefinition,
    cdm: CdmSource,
    cohort_definition_id: int = 1,
    *,
    database: Path | str | None = None,
) -> pd.DataFrame:
    """Generate a cohort: write its eras to ``cohort`` and its attrition to ``cohort_attrition``.

    Parameters
    ----------
    definition
        The cohort definition.
    cdm
        The CDM source to run it on (read-only).
    cohort_definition_id
        The id the rows get in ``cohort``; earlier rows with this id are replaced.
    database
        The DuckDB file to write into (created if missing). Default: the CDM's own DuckDB
        file (the source's read-only connection is closed first; a catalog site reopens it on
        next use).

    Returns
    -------
    pandas.DataFrame
        The attrition (``rule``, ``persons``, ``records``), as written to
        ``cohort_attrition`` with ``rule_sequence`` 0 for the qualifying entry events and k for
        inclusion rule k.

    Raises
    ------
    CohortGenerationError
        If the target file cannot be opened for writing (e.g. another process holds it).
    """
    target = Path(database).expanduser().resolve() if database else _default_database(cdm)
    compiled = compile_cohort(definition, cdm)
    rows = compiled.cohort.to_pyarrow()
    attrition = compiled.attrition()

    same_file = False
    locate = getattr(cdm, "resolved_location", None)
    if locate is not None and getattr(cdm, "backend", "duckdb") == "duckdb":
        same_file = Path(locate()).resolve() == target
    if same_file:
        cdm.connect()  # make sure it is the cached connection that gets closed
        close = getattr(cdm, "close", None)
        if close is not None:
            close()

    cohort_rows = pa.table(
        {
            "cohort_definition_id": pa.array([cohort_definition_id] * rows.num_rows, pa.int64()),
            "subject_id": rows["subject_id"].cast(pa.int64()),
            "cohort_start_date": rows["cohort_start_date"].cast(pa.date32()),
            "cohort_end_date": rows["cohort_end_date"].cast(pa.date32()),
        }
    )
    attrition_rows = pa.table(
        {
            "cohort_definition_id": pa.array([cohort_definition_id] * len(attrition), pa.int64()),
            "rule_sequence": pa.array(range(len(attrition)), pa.int32()),
            "rule": pa.array(attrition["rule"].tolist(), pa.string()),
            "persons": pa.array(attrition["persons"].tolist(), pa.int64()),
            "records": pa.array(attrition["records"].tolist(), pa.int64()),
        }
    )
    try:
        con = duckdb.connect(str(target))
    except duckdb.Error as exc:
        raise CohortGenerationError(
            f"cannot open {target} for writing ({exc}); close other connections to it (a "
            "notebook, a dashboard, another catalog) or pass another `database=`"
        ) from None
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(_CREATE_COHORT)
        con.execute(_CREATE_ATTRITION)
        con.register("new_cohort_rows", cohort_rows)
        con.register("new_attrition_rows", attrition_rows)
        con.execute("DELETE FROM cohort WHERE cohort_definition_id = ?", [cohort_definition_id])
        con.execute(
            "INSERT INTO cohort (cohort_definition_id, subject_id, cohort_start_date, "
            "cohort_end_date) SELECT * FROM new_cohort_rows"
        )
        con.execute(
            f"DELETE FROM {ATTRITION_TABLE} WHERE cohort_definition_id = ?",
            [cohort_definition_id],
        )
        con.execute(
            f"INSERT INTO {ATTRITION_TABLE} (cohort_definition_id, rule_sequence, rule, persons, "
            "records) SELECT * FROM new_attrition_rows"
        )
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # no open transaction: nothing to undo
            con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    return attrition
