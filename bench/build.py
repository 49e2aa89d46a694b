"""Benchmark the demo federation build: time and peak memory per stage.

Usage::

    .venv/bin/python bench/build.py                 # 20,000 and 200,000 persons
    .venv/bin/python bench/build.py --persons 5000  # one size

Each stage (generate, harmonize, quality) runs in its own fresh process so that its peak
resident memory is measured alone (for harmonization, the largest of the process and its
per-site worker processes).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _generate(out: str, persons: int, seed: int) -> None:
    from clinnova_explore.synth import generate

    generate(Path(out), persons=persons, seed=seed)


def _harmonize(out: str, persons: int, seed: int) -> None:
    from clinnova_explore.harmonize import harmonize_all
    from clinnova_explore.pipeline import write_catalog

    harmonize_all(Path(out) / "raw", Path(out) / "cdm")
    write_catalog(Path(out))


def _quality(out: str, persons: int, seed: int) -> None:
    from clinnova_explore.pipeline import check_and_store_quality

    check_and_store_quality(Path(out) / "data_catalog.yaml")


def _child(fn_name: str, out: str, persons: int, seed: int, q: mp.Queue) -> None:
    t0 = time.perf_counter()
    globals()[fn_name](out, persons, seed)
    # harmonization runs sites in worker processes: count the largest of them too
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    q.put((time.perf_counter() - t0, peak))


def run(persons: int, seed: int, root: Path) -> list[tuple[str, float, float]]:
    """Run the three stages for one size; return (stage, seconds, peak MiB) rows."""
    out = root / f"build-{persons}"
    shutil.rmtree(out, ignore_errors=True)
    ctx = mp.get_context("spawn")
    rows = []
    for stage in ("_generate", "_harmonize", "_quality"):
        q: mp.Queue = ctx.Queue()
        p = ctx.Process(target=_child, args=(stage, str(out), persons, seed, q))
        p.start()
        seconds, rss_kib = q.get()
        p.join()
        if p.exitcode != 0:
            sys.exit(f"stage {stage} failed with exit code {p.exitcode}")
        rows.append((stage.strip("_"), seconds, rss_kib / 1024))
    raw = sum(f.stat().st_size for f in (out / "raw").rglob("*") if f.is_file())
    cdm = sum(f.stat().st_size for f in (out / "cdm").glob("*.duckdb"))
    print(f"  raw exports {raw / 2**20:,.1f} MiB, CDM databases {cdm / 2**20:,.1f} MiB")
    shutil.rmtree(out, ignore_errors=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, nargs="*", default=[20_000, 200_000])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dir", type=Path, default=None, help="Scratch directory.")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="clx-bench-"))
    print(f"{'persons':>9} {'stage':<10} {'seconds':>9} {'peak MiB':>9} {'persons/s':>10}")
    for n in args.persons:
        rows = run(n, args.seed, root)
        for stage, sec, mib in rows:
            print(f"{n:>9,} {stage:<10} {sec:>9.1f} {mib:>9.0f} {n / sec:>10,.0f}")
        total = sum(r[1] for r in rows)
        print(
            f"{n:>9,} {'total':<10} {total:>9.1f} {max(r[2] for r in rows):>9.0f} "
            f"{n / total:>10,.0f}"
        )


if __name__ == "__main__":
    main()
