"""The demo federation build: generate native exports, harmonize each site, check quality.

``clinnova-explore build`` and ``make demo`` call :func:`build`. It writes::

    DIR/raw/<site>/...          each hospital's native export (CSV/TSV or FHIR NDJSON)
    DIR/cdm/<site>.duckdb       one OMOP CDM database per site (+ quarantine, reconciliation,
                                source provenance and data-quality results)
    DIR/truth.json              the generator's ground truth (effects, injected faults)
    DIR/data_catalog.yaml       a catalog of this build's sites
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import pandas as pd

from clinnova_explore.catalog import Catalog, DisclosurePolicy, Site

__all__ = [
    "BuildResult",
    "build",
    "build_dir",
    "check_and_store_quality",
    "fault_recall",
    "write_catalog",
]

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BuildResult:
    """What a build produced and how long each stage took."""

    out_dir: Path
    catalog_path: Path
    truth: dict
    seconds: dict[str, float] = field(default_factory=dict)


def _sites_done(progress: Progress | None, n_sites: int) -> Callable[[str], None] | None:
    """Turn harmonization's per-site messages into a ``harmonize`` progress bar."""
    if progress is None:
        return None
    done = 0
    progress("harmonize", 0, n_sites)

    def cb(message: str) -> None:
        nonlocal done
        if " done in " in message:
            done += 1
            progress("harmonize", done, n_sites)

    return cb


def write_catalog(out_dir: Path, *, name: str = "clinnova-demo") -> Path:
    """Write ``out_dir/data_catalog.yaml`` listing one DuckDB site per site spec.

    Parameters
    ----------
    out_dir
        The build directory; site databases are expected under ``cdm/``.
    name
        Federation name recorded in the catalog.

    Returns
    -------
    Path
        The catalog file.
    """
    from clinnova_explore.harmonize.spec import load_site_specs

    sites = tuple(
        Site(
            id=spec.site,
            name=spec.name,
            country=spec.country,
            region=spec.region,
            backend="duckdb",
            location=f"cdm/{spec.site}.duckdb",
            cdm_version="5.4",
            policy=DisclosurePolicy(),
        )
        for spec in load_site_specs().values()
    )
    path = Path(out_dir) / "data_catalog.yaml"
    header = (
        "# Catalog of a synthetic demo federation written by `clinnova-explore build`.\n"
        "# Locations are relative to this file. PostgreSQL sites use `backend: postgres` and\n"
        "# `location_env: VAR` (the connection URL is read from that environment variable).\n"
    )
    path.write_text(header + Catalog(name=name, sites=sites).to_yaml(), encoding="utf-8")
    return path


def check_and_store_quality(catalog_path: Path, *, progress: Progress | None = None) -> None:
    """Run the data-quality checks in every DuckDB site of a catalog and store the results.

    Parameters
    ----------
    catalog_path
        A catalog whose sites are writable DuckDB files (as written by :func:`build`).
    progress
        Optional callback ``(stage, done, total)``.
    """
    from clinnova_explore.quality import run_checks, store_results

    cat = Catalog.load(catalog_path)
    for i, site in enumerate(cat.sites):
        if progress:
            progress("quality", i, len(cat.sites))
        con = ibis.duckdb.connect(site.resolved_location())
        try:
            store_results(con, run_checks(con, site.id))
        finally:
            con.disconnect()
    if progress:
        progress("quality", len(cat.sites), len(cat.sites))


def build(
    out_dir: str | Path,
    persons: int,
    seed: int = 42,
    *,
    quality: bool = True,
    progress: Progress | None = None,
) -> BuildResult:
    """Build a synthetic federation end to end.

    Parameters
    ----------
    out_dir
        Output directory (created if needed). Rebuilding into the same directory replaces
        its contents idempotently.
    persons
        Number of persons across all sites.
    seed
        Random seed; the same seed gives byte-identical exports.
    quality
        Run and store the data-quality checks in each site database.
    progress
        Optional callback ``(stage, done, total)`` for progress display.

    Returns
    -------
    BuildResult
    """
    from clinnova_explore.harmonize import harmonize_all
    from clinnova_explore.synth import generate

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    gen_cb = None
    if progress is not None:

        def gen_cb(site: str, done: int, total: int) -> None:
            progress(f"generate {site}", done, total)

    truth = generate(out, persons=persons, seed=seed, progress=gen_cb)
    seconds["generate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    harmonize_all(out / "raw", out / "cdm", progress=_sites_done(progress, len(truth["sites"])))
    seconds["harmonize"] = time.perf_counter() - t0

    catalog_path = write_catalog(out)
    if quality:
        t0 = time.perf_counter()
        check_and_store_quality(catalog_path, progress=progress)
        seconds["quality"] = time.perf_counter() - t0
    return BuildResult(out_dir=out, catalog_path=catalog_path, truth=truth, seconds=seconds)


def build_dir(catalog: Catalog) -> Path:
    """The build directory of a catalog written by :func:`build` (``<dir>/cdm/<site>.duckdb``).

    Raises
    ------
    ValueError
        If the catalog's first site is not a DuckDB file inside a ``cdm`` folder.
    """
    site = catalog.sites[0]
    loc = Path(site.resolved_location()) if site.backend == "duckdb" else None
    if loc is None or loc.parent.name != "cdm":
        raise ValueError(f"site {site.id!r} is not part of a `clinnova-explore build` directory")
    return loc.parent.parent


def fault_recall(catalog: Catalog) -> pd.DataFrame:
    """Which of the build's injected faults were found, by quarantine or by quality checks.

    Reads ``truth.json`` beside the build, each site's quarantine and its stored quality
    results, and matches them by site, file and line.

    Returns
    -------
    pandas.DataFrame
        One row per injected fault with ``found`` and ``where_found``.
    """
    import json

    from clinnova_explore.harmonize import read_quarantine
    from clinnova_explore.quality import read_results, recall_against_truth

    truth = json.loads((build_dir(catalog) / "truth.json").read_text(encoding="utf-8"))
    reports = {s.id: read_results(s.connect(), s.id) for s in catalog.sites}
    quarantine = pd.concat(
        [read_quarantine(Path(s.resolved_location())) for s in catalog.sites], ignore_index=True
    )
    return recall_against_truth(reports, quarantine, truth)
