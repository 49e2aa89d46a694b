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
import pyarrow as pa

from clinnova_explore.cdm.schema import CDM_VERSION, create_cdm_tables
from clinnova_explore.cdm.vocabulary import write_vocabulary
from clinnova_explore.harmonize.errors import HarmonizeError
from clinnova_explore.harmonize.fhir import (
    DEFAULT_KIND,
    FhirCollector,
    bundle_date,
    load_bundle,
    read_bundle,
    read_ndjson,
)
from clinnova_explore.harmonize.load import load_cdm, mapping_coverage
from clinnova_explore.harmonize.manifest import check_lines, export_date
from clinnova_explore.harmonize.reader import count_lines, read_delimited, read_header_span
from clinnova_explore.harmonize.reconcile import FileRead, check_provenance, reconcile
from clinnova_explore.harmonize.spec import LOGICAL_FIELDS, AnySpec, FhirSpec, SiteSpec
from clinnova_explore.harmonize.staging import KindLayout, layouts, lit, stage_kind

__all__ = [
    "AUX_TABLES",
    "HarmonizeReport",
    "Progress",
    "harmonize_fhir_bundle",
    "harmonize_site",
    "read_quarantine",
    "read_reconciliation",
]

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
    "loaded BIGINT, quarantined BIGINT, visit_unresolved BIGINT, "
    "physical_lines BIGINT, loaded_lines BIGINT, quarantined_lines BIGINT",
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
        One row per source file: rows_in, loaded, quarantined, visit_unresolved, and the
        file's physical lines after the header (``physical_lines``, null for a Bundle) with
        the lines of loaded and of quarantined records (``loaded_lines``,
        ``quarantined_lines``).
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
        source_file VARCHAR, _line BIGINT, _raw VARCHAR, _nl INTEGER, _pre VARCHAR,
        _detail VARCHAR, _vocab VARCHAR, _codes VARCHAR, {fields})""")


def _lines(raw_dir: Path, name: str) -> int:
    """Physical lines of a native file, checked against the export manifest."""
    path = raw_dir / name
    if not path.is_file():
        return 0  # the reader reports the missing file
    lines = count_lines(path)
    check_lines(raw_dir, name, lines)
    return lines


def _read_csv_kind(
    con: duckdb.DuckDBPyConnection, raw_dir: Path, spec: SiteSpec, lay: KindLayout
) -> FileRead:
    path = raw_dir / lay.file
    header, header_lines = read_header_span(path, spec.encoding, spec.delimiter)
    n = len(header)
    lines = _lines(raw_dir, lay.file) - header_lines
    count = 0
    fields = ", ".join(LOGICAL_FIELDS[lay.kind])
    for chunk in read_delimited(path, spec.encoding, spec.delimiter, lay.columns):
        count += chunk.num_rows
        con.register("chunk", chunk)
        con.execute(f"""INSERT INTO raw_{lay.kind} SELECT {lit(lay.kind)}, {lit(lay.file)},
            _line, _raw, _nl,
            CASE WHEN _enc IS NOT NULL THEN 'invalid_encoding'
                 WHEN _quote IS NOT NULL OR _nf <> {n} THEN 'malformed_line' END,
            CASE WHEN _enc IS NOT NULL THEN format('{{}} at line {{}}', _enc, _line)
                 WHEN _quote IS NOT NULL THEN _quote
                 WHEN _nf <> {n} THEN format('expected {n} fields, found {{}}, at line {{}}',
                                             _nf, _line) END,
            NULL, NULL, {fields} FROM chunk""")
        con.unregister("chunk")
    return lay.kind, count, lines


def _sink(con: duckdb.DuckDBPyConnection) -> Callable[[str, pa.Table], None]:
    def insert(kind: str, table: pa.Table) -> None:
        con.register("chunk", table)
        con.execute(f"INSERT INTO raw_{kind} BY NAME SELECT * FROM chunk")
        con.unregister("chunk")

    return insert


def _finish(con: duckdb.DuckDBPyConnection, spec: AnySpec, files: dict[str, FileRead]) -> None:
    lays = layouts(spec)
    stage_kind(con, lays["patients"])
    for kind in LOGICAL_FIELDS:
        if kind != "patients":
            stage_kind(con, lays[kind])
    load_cdm(con, None if isinstance(spec, FhirSpec) else dict(spec.units))
    site = lit(spec.site)
    stg = " UNION ALL ".join(
        f"SELECT source_file, _line, source_table, reason, detail, _raw FROM stg_{k}"
        for k in LOGICAL_FIELDS
    )
    con.execute(f"""INSERT INTO quarantine SELECT {site}, source_file, _line, source_table,
        reason, detail, _raw FROM ({stg}) WHERE reason IS NOT NULL
        ORDER BY source_file, _line""")
    check_provenance(con, spec.site)
    reconcile(con, spec.site, files)
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
    con.execute(
        "DROP TABLE evt; DROP TABLE evt_final; DROP TABLE code_map;"
        " DROP TABLE person_map; DROP TABLE visit_map"
    )


def _build(
    spec: AnySpec,
    db_path: Path,
    fill: Callable[[duckdb.DuckDBPyConnection], dict[str, FileRead]],
    progress: Progress | None,
    threads: int | None = None,
    export: dt.date | None = None,
) -> HarmonizeReport:
    t0 = time.perf_counter()
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_path.with_name(f".{db_path.name}.{os.getpid()}.tmp")
    leftovers = (tmp, tmp.with_name(tmp.name + ".wal"))
    for p in leftovers:
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
    except BaseException:
        con.close()
        for p in leftovers:  # a failed build leaves nothing behind
            p.unlink(missing_ok=True)
        raise
    con.close()
    os.replace(tmp, db_path)
    _say(progress, f"{spec.site}: done in {report.seconds:.1f} s")
    return report


def _report(
    con: duckdb.DuckDBPyConnection, site: str, db_path: Path, seconds: float
) -> HarmonizeReport:
    from clinnova_explore.cdm.schema import SCHEMAS

    rec = con.execute("SELECT * FROM reconciliation ORDER BY source_file").df()
    quarantine = dict(
        con.execute(
            "SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY reason"
        ).fetchall()
    )
    loaded = {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]) for t in SCHEMAS}
    cov = {
        t: (m / r if r else 1.0)
        for t, r, m in con.execute(
            "SELECT cdm_table, rows, mapped_rows FROM mapping_coverage"
        ).fetchall()
    }
    return HarmonizeReport(site, rec, quarantine, loaded, cov, seconds, db_path)


def harmonize_site(
    spec: AnySpec,
    raw_dir: Path,
    db_path: Path,
    progress: Progress | None = None,
    threads: int | None = None,
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
        If a file is missing or its header is unusable (naming file, line and column), if a
        file's physical lines differ from the export manifest's ``lines``, or if
        reconciliation fails (a record or line lost, or a row duplicated).
    """
    raw_dir = Path(raw_dir)

    def fill(con: duckdb.DuckDBPyConnection) -> dict[str, FileRead]:
        counts: dict[str, FileRead] = {}
        if isinstance(spec, FhirSpec):
            collector = FhirCollector(spec, _sink(con))
            for rtype, name in spec.files.items():
                if rtype not in DEFAULT_KIND:
                    raise HarmonizeError(
                        f"site {spec.site}: resource type {rtype!r} of file "
                        f"{name} is not supported; known: {sorted(DEFAULT_KIND)}"
                    )
                _say(progress, f"{spec.site}: reading {name}")
                lines = _lines(raw_dir, name)
                counts[name] = (rtype, read_ndjson(collector, raw_dir / name, rtype), lines)
        else:
            for lay in layouts(spec).values():
                _say(progress, f"{spec.site}: reading {lay.file}")
                counts[lay.file] = _read_csv_kind(con, raw_dir, spec, lay)
        return counts

    return _build(spec, db_path, fill, progress, threads, export_date(raw_dir))


def harmonize_fhir_bundle(
    bundle_path: Path, db_path: Path, spec: FhirSpec | None = None, progress: Progress | None = None
) -> HarmonizeReport:
    """Harmonize one FHIR R4 Bundle JSON file into a CDM DuckDB file.

    Entries are mapped like the NDJSON resources of the FHIR site (``spec``, default: the
    Luxembourg spec); ``source_line`` is the 1-based entry index. Codes whose system is not in
    ``spec.systems`` or that have no mapping load with concept 0 (OMOP convention), they are
    not quarantined. Entries of other resource types (Composition, Practitioner, ...) are
    skipped and counted in ``report.skipped``. The export date (data cut of observation
    periods, ``cdm_source.source_release_date``) is the date part of ``Bundle.timestamp`` as
    written (no time zone conversion), or today when the Bundle has no timestamp.
    """
    from clinnova_explore.harmonize.spec import load_site_specs

    if spec is None:
        spec = next(s for s in load_site_specs().values() if isinstance(s, FhirSpec))
    bundle_path = Path(bundle_path)
    bundle = load_bundle(bundle_path)
    skipped: dict[str, int] = {}

    def fill(con: duckdb.DuckDBPyConnection) -> dict[str, FileRead]:
        collector = FhirCollector(spec, _sink(con))
        skipped.update(read_bundle(collector, bundle_path, bundle))
        return {}

    report = _build(spec, db_path, fill, progress, export=bundle_date(bundle, bundle_path))
    return HarmonizeReport(
        report.site,
        report.reconciliation,
        report.quarantine,
        report.loaded,
        report.coverage,
        report.seconds,
        report.db_path,
        skipped,
    )


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
