"""Harmonize every site: :func:`harmonize_all`, optionally in parallel processes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from clinnova_explore.harmonize.build import HarmonizeReport, Progress, harmonize_site
from clinnova_explore.harmonize.spec import AnySpec, load_site_specs

__all__ = ["harmonize_all"]


def _one(spec: AnySpec, raw_root: Path, cdm_dir: Path, threads: int) -> HarmonizeReport:
    return harmonize_site(
        spec, raw_root / spec.site, cdm_dir / f"{spec.site}.duckdb", threads=threads
    )


def harmonize_all(
    raw_root: Path,
    cdm_dir: Path,
    specs: Mapping[str, AnySpec] | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> dict[str, HarmonizeReport]:
    """Harmonize every site into ``cdm_dir/<site>.duckdb``.

    Parameters
    ----------
    raw_root
        Folder with one sub-folder of native files per site (``raw_root/<site>/...``).
    cdm_dir
        Output folder for the site databases.
    specs
        Site specs by id; default: the shipped ones.
    progress
        Optional callback for progress messages (called in this process, per site).
    workers
        Processes to use; default: up to 2 (one per core), 1 runs in this process.

    Returns
    -------
    dict
        Site id -> :class:`HarmonizeReport`, in spec order.
    """
    specs = dict(specs) if specs is not None else load_site_specs()
    raw_root, cdm_dir = Path(raw_root), Path(cdm_dir)
    cdm_dir.mkdir(parents=True, exist_ok=True)
    n = workers if workers is not None else min(2, os.cpu_count() or 1, len(specs))
    if n <= 1:
        return {
            site: harmonize_site(spec, raw_root / site, cdm_dir / f"{site}.duckdb", progress)
            for site, spec in specs.items()
        }
    # largest export first: the others share the remaining workers (longest processing time
    # first); each worker's DuckDB gets its share of the cores instead of all of them
    order = sorted(specs, key=lambda s: -_size(raw_root / s))
    threads = max(1, (os.cpu_count() or 1) // n)
    with ProcessPoolExecutor(max_workers=n) as pool:
        futures = {s: pool.submit(_one, specs[s], raw_root, cdm_dir, threads) for s in order}
        reports = {}
        for site in order:
            reports[site] = futures[site].result()
            if progress is not None:
                progress(f"{site}: done in {reports[site].seconds:.1f} s")
    return {site: reports[site] for site in specs}


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*") if p.is_file()) if folder.is_dir() else 0
