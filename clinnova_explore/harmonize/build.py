"""Build one site's CDM DuckDB file from its native export: :func:`harmonize_site`."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import ibis
import pandas as pd

from clinnova_explore.cdm.schema import CDM_VERSION, create_cdm_tables
from clinnova_explore.cdm.vocabulary import write_vocabulary
from clinnova_explore.harmonize.errors import HarmonizeError
from clinnova_explore.harmonize.fhir import DEFAULT_KIND, FhirCollector, read_bundle, read_ndjson
from clinnova_explore.harmonize.load import load_cdm, mapping_coverage
from clinnova_explore.harmonize.manifest import export_date
from clinnova_explore.harmonize.reader import read_delimited
from clinnova_explore.harmonize.spec import LOGICAL_FIELDS, AnySpec, FhirSpec
from clinnova_explore.harmonize.staging import KindLayout, layouts, lit, stage_kind

__all__ = ["AUX_TABLES", "HarmonizeReport", "Progress", "harmonize_fhir_bundle",
           "harmonize_site", "read_quarantine", "read_reconciliation"]

Progress = Callable[[str], None]
CDM_V54_CONCEPT_ID = 756265
VOCABULARY_VERSION = "clinnova-subset-1"

#: Harmonization tables written beside the CDM, with their DuckDB column types.
AUX_TABLES: dict[str, str] = {
    "source_provenance": "cdm_table VARCHAR, record_id BIGINT, source_file VARCHAR, "
                         "source_line BIGINT",
    "quarantine": "site VARCHAR, source_file VARCHAR, source_line BIGINT, source_table VARCHAR, "
                  "reason VARCHAR, detail VARCHAR, raw VARCHAR",
    "reconciliation": "site VARCHAR, source_table VARCHAR, source_file VARCHAR, rows_in BIGINT, "
                      "loaded BIGINT, quarantined BIGINT, visit_unresolved BIGINT",
    "mapping_coverage": "site VARCHAR, cdm_table VARCHAR, rows BIGINT, mapped_rows BIGINT, "
                        "unmapped_source_codes VARCHAR",
}


@dataclass(frozen=True)
class HarmonizeReport:
    """What one harmonization run did.

    Attributes
    ----------
    site
        Site id.
    reconciliation
        One row per source file: rows_in, loaded, quarantined, visit_unresolved.
    quarantine
        Quarantined rows per reason code.
    loaded
        Rows per CDM table.
    coverage
        Share of rows with a standard concept (concept id != 0) per CDM table.
    seconds
        Wall time of the run.
    skipped
        Bundle entries of resource types that are not mapped, per type (bundles only).
    """

    site: str
    reconciliation: pd.DataFrame
    quarantine: dict[str, int]
    loaded: dict[str, int]
    coverage: dict[str, float]
    seconds: float
    db_path: Path
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def summary(self) -> pd.DataFrame:
        """The reconciliation table (one row per source file)."""
        return self.reconciliation


def _say(progress: Progress | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


def _raw_table(con: duckdb.DuckDBPyConnection, kind: str) -> None:
    fields = ", ".join(f"{f} VARCHAR" for f in LOGICAL_FIELDS[kind])
    con.execute(f"""CREATE OR REPLACE TABLE raw_{kind} (source_table VARCHAR,
        source_file VARCHAR, _line BIGINT, _raw VARCHAR, _pre VARCHAR, _detail VARCHAR,
        _vocab VARCHAR, {fields})""")


def _read_csv_kind(con: duckdb.DuckDBPyConnection, raw_dir: Path, spec: AnySpec,
                   lay: KindLayout) -> int:
    n = None
    count = 0
    fields = ", ".join(LOGICAL_FIELDS[lay.kind])
    for chunk in read_delimited(raw_dir / lay.file, spec.encoding, spec.delimiter,
                                lay.columns):
        if n is None:
            from clinnova_explore.harmonize.reader import read_header

            n = len(read_header(raw_dir / lay.file, spec.encoding, spec.delimiter))
        count += chunk.num_rows
        con.register("chunk", chunk)
        con.execute(f"""INSERT INTO raw_{lay.kind} SELECT {lit(lay.kind)}, {lit(lay.file)},
            _line, _raw,
            CASE WHEN _enc IS NOT NULL THEN 'invalid_encoding'
                 WHEN _nf <> {n} THEN 'malformed_line' END,
            CASE WHEN _enc IS NOT NULL THEN format('{{}} at line {{}}', _enc, _line)
                 WHEN _nf <> {n} THEN format('expected {n} fields, found {{}}, at line {{}}',
                                             _nf, _line) END,
            NULL, {fields} FROM chunk""")
        con.unregister("chunk")
    return count


def _insert_fhir(con: duckdb.DuckDBPyConnection, collector: FhirCollector) -> None:
    for kind, table in collector.tables():
        con.register("chunk", table)
        con.execute(f"INSERT INTO raw_{kind} BY NAME SELECT * FROM chunk")
        con.unregister("chunk")


def _finish(con: duckdb.DuckDBPyConnection, spec: AnySpec,
            counts: dict[str, tuple[str, int]]) -> None:
    lays = layouts(spec)
    stage_kind(con, lays["patients"])
    for kind in LOGICAL_FIELDS:
        if kind != "patients":
            stage_kind(con, lays[kind])
    units = None if isinstance(spec, FhirSpec) else dict(spec.units)
    load_cdm(con, {k: lay.file for k, lay in lays.items()}, units)
    stg = " UNION ALL ".join(
        f"SELECT source_table, source_file, _line, reason, detail, _raw, "
        f"{'visit_id' if 'visit_id' in LOGICAL_FIELDS[k] and k != 'visits' else 'NULL'} "
        f"AS visit_id FROM stg_{k}" for k in LOGICAL_FIELDS)
    site = lit(spec.site)
    con.execute(f"CREATE OR REPLACE TEMP VIEW stg_all AS {stg}")
    con.execute(f"""INSERT INTO quarantine SELECT {site}, source_file, _line, source_table,
        reason, detail, _raw FROM stg_all WHERE reason IS NOT NULL
        ORDER BY source_file, _line""")
    files = pd.DataFrame([(t, f, n) for f, (t, n) in counts.items()],
                         columns=["source_table", "source_file", "rows_read"]).astype(
        {"source_table": str, "source_file": str, "rows_read": "int64"})
    con.register("files_df", files)
    con.execute(f"""INSERT INTO reconciliation
        WITH src AS (
            SELECT source_table, source_file FROM files_df
            UNION SELECT DISTINCT source_table, source_file FROM stg_all),
        prov AS (
            SELECT DISTINCT source_file, source_line FROM source_provenance
            WHERE cdm_table NOT IN ('observation_period', 'death')),
        agg AS (
            SELECT s.source_table, s.source_file, count(*) AS rows_in,
                   count(*) FILTER (WHERE s.reason IS NOT NULL) AS quarantined,
                   count(p.source_line) AS loaded
            FROM stg_all s LEFT JOIN prov p
              ON p.source_file = s.source_file AND p.source_line = s._line
            GROUP BY ALL),
        unresolved AS (
            SELECT e.source_table, e.source_file, count(*) AS n FROM evt_final e
            WHERE e.visit_id IS NOT NULL AND e.visit_occurrence_id IS NULL GROUP BY ALL)
        SELECT {site}, s.source_table, s.source_file, coalesce(a.rows_in, 0),
               coalesce(a.loaded, 0), coalesce(a.quarantined, 0), coalesce(u.n, 0)
        FROM src s LEFT JOIN agg a USING (source_table, source_file)
        LEFT JOIN unresolved u USING (source_table, source_file)
        ORDER BY s.source_file, s.source_table""")
    con.unregister("files_df")
    rec = con.execute("SELECT source_file, rows_in, loaded, quarantined FROM reconciliation"
                      ).fetchall()
    for file, rows_in, loaded, quarantined in rec:
        read = counts[file][1] if file in counts else None
        if rows_in != loaded + quarantined or (read is not None and read != rows_in):
            raise HarmonizeError(
                f"site {spec.site}: reconciliation failed for {file}: read {read} rows, staged "
                f"{rows_in}, loaded {loaded} + quarantined {quarantined}. This is a bug in "
                "harmonization; please report it with the file.")
    mapping_coverage(con, spec.site)
    con.execute(f"""INSERT INTO cdm_source (cdm_source_name, cdm_source_abbreviation, cdm_holder,
        source_description, cdm_etl_reference, source_release_date, cdm_release_date,
        cdm_version, cdm_version_concept_id, vocabulary_version)
        VALUES ({lit(spec.name)}, {site}, {lit(spec.name)},
                {lit(f"{spec.name} ({spec.country}) native export harmonized to OMOP CDM")},
                'clinnova_explore.harmonize', getvariable('export_date'),
                getvariable('export_date'), {lit(CDM_VERSION)},
                {CDM_V54_CONCEPT_ID}, {lit(VOCABULARY_VERSION)})""")
    for kind in LOGICAL_FIELDS:
        con.execute(f"DROP TABLE IF EXISTS raw_{kind}; DROP TABLE IF EXISTS stg_{kind}")
    con.execute("DROP VIEW stg_all; DROP TABLE evt; DROP TABLE evt_final; DROP TABLE code_map;"
                " DROP TABLE person_map; DROP TABLE visit_map")


def _build(spec: AnySpec, db_path: Path, fill: Callable[[duckdb.DuckDBPyConnection],
                                                          dict[str, tuple[str, int]]],
           progress: Progress | None, threads: int | None = None,
           export: dt.date | None = None) -> HarmonizeReport:
    t0 = time.perf_counter()
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_path.with_name(f".{db_path.name}.{os.getpid()}.tmp")
    for p in (tmp, tmp.with_name(tmp.name + ".wal")):
        p.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        if threads is not None:
            con.execute(f"SET threads = {int(threads)}")
        cut = export or dt.date.today()
        con.execute(f"SET VARIABLE export_date = DATE '{cut.isoformat()}'")
        backend = ibis.duckdb.from_connection(con)
        create_cdm_tables(backend)
        write_vocabulary(backend)
        for name, cols in AUX_TABLES.items():
            con.execute(f"CREATE TABLE {name} ({cols})")
        for kind in LOGICAL_FIELDS:
            _raw_table(con, kind)
        counts = fill(con)
        _say(progress, f"{spec.site}: staging and loading the CDM")
        _finish(con, spec, counts)
        report = _report(con, spec.site, db_path, time.perf_counter() - t0)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(tmp, db_path)
    _say(progress, f"{spec.site}: done in {report.seconds:.1f} s")
    return report


def _report(con: duckdb.DuckDBPyConnection, site: str, db_path: Path,
            seconds: float) -> HarmonizeReport:
    from clinnova_explore.cdm.schema import SCHEMAS

    rec = con.execute("SELECT * FROM reconciliation ORDER BY source_file").df()
    quarantine = dict(con.execute("SELECT reason, count(*) FROM quarantine GROUP BY reason "
                                  "ORDER BY reason").fetchall())
    loaded = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in SCHEMAS}
    cov = {t: (m / r if r else 1.0) for t, r, m in con.execute(
        "SELECT cdm_table, rows, mapped_rows FROM mapping_coverage").fetchall()}
    return HarmonizeReport(site, rec, quarantine, loaded, cov, seconds, db_path)


def harmonize_site(spec: AnySpec, raw_dir: Path, db_path: Path,
                   progress: Progress | None = None, threads: int | None = None
                   ) -> HarmonizeReport:
    """Harmonize one site's native export into its own CDM DuckDB file.

    Parameters
    ----------
    spec
        The site spec (``load_site_specs()[site]``).
    raw_dir
        Folder holding the site's native files (``<out>/raw/<site>``).
    db_path
        The DuckDB file to (re)build; it is built in a temporary file and then atomically
        replaces ``db_path``.
    progress
        Optional callback receiving short progress messages.
    threads
        DuckDB threads for this build; default: DuckDB's own (all cores). Parallel runs of
        several sites give each its share of the cores.

    Returns
    -------
    HarmonizeReport

    Raises
    ------
    HarmonizeError
        If a file is missing or its header is unusable (naming file, line and column), or if
        reconciliation fails.
    """
    raw_dir = Path(raw_dir)

    def fill(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, int]]:
        counts: dict[str, tuple[str, int]] = {}
        if isinstance(spec, FhirSpec):
            collector = FhirCollector(spec)
            for rtype, name in spec.files.items():
                if rtype not in DEFAULT_KIND:
                    raise HarmonizeError(f"site {spec.site}: resource type {rtype!r} of file "
                                         f"{name} is not supported; known: {sorted(DEFAULT_KIND)}")
                _say(progress, f"{spec.site}: reading {name}")
                counts[name] = (rtype, read_ndjson(collector, raw_dir / name, rtype))
            _insert_fhir(con, collector)
        else:
            for lay in layouts(spec).values():
                _say(progress, f"{spec.site}: reading {lay.file}")
                counts[lay.file] = (lay.kind, _read_csv_kind(con, raw_dir, spec, lay))
        return counts

    return _build(spec, db_path, fill, progress, threads, export_date(raw_dir))


def harmonize_fhir_bundle(bundle_path: Path, db_path: Path, spec: FhirSpec | None = None,
                          progress: Progress | None = None) -> HarmonizeReport:
    """Harmonize one FHIR R4 Bundle JSON file into a CDM DuckDB file.

    Entries are mapped like the NDJSON resources of the FHIR site (``spec``, default: the
    Luxembourg spec); ``source_line`` is the 1-based entry index. Codes whose system is not in
    ``spec.systems`` or that have no mapping load with concept 0 (OMOP convention), they are
    not quarantined. Entries of other resource types (Composition, Practitioner, ...) are
    skipped and counted in ``report.skipped``.
    """
    from clinnova_explore.harmonize.spec import load_site_specs

    if spec is None:
        spec = next(s for s in load_site_specs().values() if isinstance(s, FhirSpec))
    bundle_path = Path(bundle_path)
    skipped: dict[str, int] = {}

    def fill(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, int]]:
        collector = FhirCollector(spec)
        skipped.update(read_bundle(collector, bundle_path))
        _insert_fhir(con, collector)
        return {}

    report = _build(spec, db_path, fill, progress)
    return HarmonizeReport(report.site, report.reconciliation, report.quarantine, report.loaded,
                           report.coverage, report.seconds, report.db_path, skipped)


def _read(db_path: Path, table: str) -> pd.DataFrame:
    if not Path(db_path).is_file():
        raise HarmonizeError(f"{db_path}: no such CDM database; run harmonization first")
    with duckdb.connect(str(db_path), read_only=True) as con:
        return con.execute(f"SELECT * FROM {table} ORDER BY ALL").df()


def read_quarantine(db_path: Path) -> pd.DataFrame:
    """The ``quarantine`` table of a site database, ordered by file and line."""
    return _read(db_path, "quarantine")


def read_reconciliation(db_path: Path) -> pd.DataFrame:
    """The ``reconciliation`` table of a site database (one row per source file)."""
    return _read(db_path, "reconciliation")
