"""Account for every native row and line of a site: :func:`reconcile`, :func:`check_provenance`.

After loading, each source file gets one ``reconciliation`` row: records read (``rows_in``),
``loaded`` and ``quarantined``, and the same for physical lines (``physical_lines``, counted on
the file's bytes without the header, against ``loaded_lines + quarantined_lines``; a quoted
field may hold line breaks, so a record may span several lines). Both balances are checked
here, and so is the absence of duplicated rows: no source line may produce more than one CDM
row, except the documented one-to-many cases (a patient line gives ``person`` and ``death``;
``observation_period`` rows point at one of the person's visit lines). A failed check raises
:class:`HarmonizeError`: it is a harmonization bug or a changed file, never to be ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import pandas as pd

from clinnova_explore.harmonize.errors import HarmonizeError
from clinnova_explore.harmonize.spec import LOGICAL_FIELDS
from clinnova_explore.harmonize.staging import lit

__all__ = ["ONE_TO_MANY", "FileRead", "check_provenance", "reconcile"]

#: CDM tables whose rows may share a source line with another row (see the module docstring).
ONE_TO_MANY = ("death", "observation_period")

#: Per source file: (source table, records read, physical lines without the header or None
#: when the source has no lines, like the entries of a FHIR Bundle).
FileRead = tuple[str, int, int | None]


def check_provenance(con: duckdb.DuckDBPyConnection, site: str) -> None:
    """Fail if a source line produced more than one row outside :data:`ONE_TO_MANY`.

    Raises
    ------
    HarmonizeError
        Naming up to five such source lines (file, line, CDM tables and rows).
    """
    skip = ", ".join(lit(t) for t in ONE_TO_MANY)
    dups = con.execute(f"""
        WITH d AS (
            SELECT source_file, source_line FROM source_provenance
            WHERE cdm_table NOT IN ({skip})
            GROUP BY source_file, source_line HAVING count(*) > 1)
        SELECT source_file, source_line, count(*) AS n,
               string_agg(cdm_table || ' ' || record_id, ', ' ORDER BY cdm_table, record_id)
        FROM source_provenance JOIN d USING (source_file, source_line)
        WHERE cdm_table NOT IN ({skip})
        GROUP BY source_file, source_line ORDER BY source_file, source_line""").fetchall()
    if dups:
        where = "; ".join(f"{f} line {line}: {n} rows ({rows})" for f, line, n, rows in dups[:5])
        raise HarmonizeError(
            f"site {site}: {len(dups)} source line(s) produced more than one CDM row: {where}. "
            "This is a bug in harmonization (rows are duplicated); please report it with the "
            "files."
        )


def reconcile(con: duckdb.DuckDBPyConnection, site: str, files: Mapping[str, FileRead]) -> None:
    """Fill ``reconciliation`` from ``stg_*`` and ``source_provenance``, then check it.

    Parameters
    ----------
    con
        The site database after loading (``stg_*``, ``evt_final``, ``source_provenance``).
    site
        Site id.
    files
        Source file -> :data:`FileRead` as counted while reading.

    Raises
    ------
    HarmonizeError
        If a record or a physical line is neither loaded nor quarantined, or counted twice.
    """
    stg = " UNION ALL ".join(
        f"SELECT source_table, source_file, _line, coalesce(_nl, 1) AS _nl, reason FROM stg_{k}"
        for k in LOGICAL_FIELDS
    )
    df = pd.DataFrame(
        [(t, f, n, lines) for f, (t, n, lines) in files.items()],
        columns=["source_table", "source_file", "rows_read", "physical_lines"],
    ).astype(
        {"source_table": str, "source_file": str, "rows_read": "int64", "physical_lines": "Int64"}
    )
    con.register("files_df", df)
    skip = ", ".join(lit(t) for t in ONE_TO_MANY)
    con.execute(f"""INSERT INTO reconciliation
        WITH stg AS ({stg}),
        src AS (
            SELECT source_table, source_file FROM files_df
            UNION SELECT DISTINCT source_table, source_file FROM stg),
        prov AS (
            SELECT DISTINCT source_file, source_line FROM source_provenance
            WHERE cdm_table NOT IN ({skip})),
        agg AS (
            SELECT s.source_table, s.source_file, count(*) AS rows_in,
                   count(*) FILTER (WHERE s.reason IS NOT NULL) AS quarantined,
                   count(p.source_line) AS loaded,
                   sum(s._nl) FILTER (WHERE s.reason IS NOT NULL) AS quarantined_lines,
                   sum(s._nl) FILTER (WHERE p.source_line IS NOT NULL) AS loaded_lines
            FROM stg s LEFT JOIN prov p
              ON p.source_file = s.source_file AND p.source_line = s._line
            GROUP BY ALL),
        unresolved AS (
            SELECT e.source_table, e.source_file, count(*) AS n FROM evt_final e
            WHERE e.visit_id IS NOT NULL AND e.visit_occurrence_id IS NULL GROUP BY ALL)
        SELECT {lit(site)}, s.source_table, s.source_file, coalesce(a.rows_in, 0),
               coalesce(a.loaded, 0), coalesce(a.quarantined, 0), coalesce(u.n, 0),
               f.physical_lines, coalesce(a.loaded_lines, 0), coalesce(a.quarantined_lines, 0)
        FROM src s LEFT JOIN agg a USING (source_table, source_file)
        LEFT JOIN unresolved u USING (source_table, source_file)
        LEFT JOIN files_df f USING (source_table, source_file)
        ORDER BY s.source_file, s.source_table""")
    con.unregister("files_df")
    rec = con.execute(
        "SELECT source_file, rows_in, loaded, quarantined, physical_lines, "
        "loaded_lines, quarantined_lines FROM reconciliation"
    ).fetchall()
    for file, rows_in, loaded, quarantined, lines, loaded_l, quarantined_l in rec:
        read = files[file][1] if file in files else None
        if rows_in != loaded + quarantined or (read is not None and read != rows_in):
            raise HarmonizeError(
                f"site {site}: reconciliation failed for {file}: read {read} rows, staged "
                f"{rows_in}, loaded {loaded} + quarantined {quarantined}. This is a bug in "
                "harmonization; please report it with the file."
            )
        if lines is not None and lines != loaded_l + quarantined_l:
            raise HarmonizeError(
                f"site {site}: reconciliation failed for {file}: the file has {lines} physical "
                f"lines after the header, but loaded records span {loaded_l} and quarantined "
                f"ones {quarantined_l}. Lines were lost or counted twice while reading; this "
                "is a bug in harmonization, please report it with the file."
            )
