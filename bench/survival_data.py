"""Generate and cache the data sets of the survival benchmark (``bench/survival.py``).

Usage::

    .venv/bin/python bench/survival_data.py                     # both data sets, default sizes
    .venv/bin/python bench/survival_data.py --km-rows 100000 --cox-rows 20000
    .venv/bin/python bench/survival_data.py --force              # rebuild even if cached

Both data sets follow a Weibull proportional-hazards model with known coefficients; every draw
comes from one seeded numpy generator, so a file depends only on its size and seed.

``km``
    Two arms (``arm`` 0/1, hazard ratio ``KM_HAZARD_RATIO`` for arm 1); ``duration`` in whole
    days (follow-up rounded up, at least 1) and ``event`` (1 event, 0 censored). Stored as the
    table ``km`` of a DuckDB file ``bench/.data/km_<rows>_s<seed>_v<version>.duckdb`` with
    ``arm`` and ``event`` as TINYINT and ``duration`` as INTEGER (compact, also for pandas).
``cox``
    ``site`` (five strings with different baseline hazards and sizes), eight covariates
    ``x1..x8`` (normal, binary, uniform, a correlated normal and a count) with the log hazard
    ratios ``COX_COEFS``, ``time`` (continuous follow-up, all values distinct), ``day``
    (the same follow-up rounded up to whole days: heavy ties) and ``event``. Stored as
    ``bench/.data/cox_<rows>_s<seed>_v<version>.parquet``.

Files are written under a temporary name and renamed when complete, so a file that exists is
whole; a change to the generator bumps ``GENERATOR_VERSION`` and so the file names.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

DATA_DIR = Path(__file__).resolve().parent / ".data"
GENERATOR_VERSION = 1
DEFAULT_SEED = 42
KM_ROWS = 10_000_000
COX_ROWS = 1_000_000

KM_HAZARD_RATIO = 0.7
KM_SHAPE, KM_SCALE_DAYS = 1.1, 2000.0
FOLLOW_UP_DAYS = 3650.0

COVARIATES = tuple(f"x{i}" for i in range(1, 9))
COX_COEFS = (0.5, -0.3, 0.2, 0.4, -0.25, 0.1, 0.15, -0.6)
SITES = ("S1", "S2", "S3", "S4", "S5")
SITE_SHARES = (0.3, 0.25, 0.2, 0.15, 0.1)
SITE_LOG_HAZARD = (0.0, 0.3, -0.2, 0.5, -0.4)
COX_SHAPE, COX_SCALE_DAYS = 1.3, 1500.0


def _weibull_times(
    rng: np.random.Generator, log_hazard: np.ndarray, shape: float, scale: float
) -> np.ndarray:
    """Event times of a Weibull PH model: ``S(t | lp) = exp(-(t / scale) ** shape * exp(lp))``."""
    return scale * (rng.standard_exponential(log_hazard.size) / np.exp(log_hazard)) ** (1 / shape)


def km_frame(rows: int, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """The two-arm data set at day resolution (see the module docstring)."""
    rng = np.random.default_rng([seed, 1])
    arm = rng.integers(0, 2, rows, dtype=np.int8)
    t = _weibull_times(rng, np.log(KM_HAZARD_RATIO) * arm, KM_SHAPE, KM_SCALE_DAYS)
    c = rng.uniform(1.0, FOLLOW_UP_DAYS, rows)
    return pd.DataFrame(
        {
            "arm": arm,
            "duration": np.ceil(np.minimum(t, c)).astype(np.int32),
            "event": (t <= c).astype(np.int8),
        }
    )


def cox_frame(rows: int, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """The stratified eight-covariate data set (see the module docstring)."""
    rng = np.random.default_rng([seed, 2])
    site = rng.choice(len(SITES), size=rows, p=SITE_SHARES)
    z = rng.standard_normal((rows, 3))
    x = np.column_stack(
        [
            z[:, 0],  # x1: normal (e.g. standardised age)
            rng.random(rows) < 0.6,  # x2: binary, 60%
            z[:, 1],  # x3: normal
            rng.random(rows) < 0.3,  # x4: binary, 30%
            rng.uniform(-1.0, 1.0, rows),  # x5: uniform
            0.5 * z[:, 0] + np.sqrt(0.75) * z[:, 2],  # x6: normal, correlated with x1
            rng.poisson(1.0, rows),  # x7: count
            rng.random(rows) < 0.1,  # x8: binary, 10%
        ]
    ).astype(np.float64)
    lp = x @ np.asarray(COX_COEFS) + np.asarray(SITE_LOG_HAZARD)[site]
    t = _weibull_times(rng, lp, COX_SHAPE, COX_SCALE_DAYS)
    c = rng.uniform(30.0, FOLLOW_UP_DAYS, rows)
    follow_up = np.minimum(t, c)
    out = pd.DataFrame({"site": np.asarray(SITES, dtype=object)[site]})
    for i, name in enumerate(COVARIATES):
        out[name] = x[:, i]
    out["time"] = follow_up
    out["day"] = np.ceil(follow_up).astype(np.int64)
    out["event"] = (t <= c).astype(np.int64)
    return out


def km_path(rows: int, seed: int = DEFAULT_SEED) -> Path:
    """Cache file of the KM data set."""
    return DATA_DIR / f"km_{rows}_s{seed}_v{GENERATOR_VERSION}.duckdb"


def cox_path(rows: int, seed: int = DEFAULT_SEED) -> Path:
    """Cache file of the Cox data set."""
    return DATA_DIR / f"cox_{rows}_s{seed}_v{GENERATOR_VERSION}.parquet"


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def ensure_km(rows: int = KM_ROWS, seed: int = DEFAULT_SEED, *, force: bool = False) -> Path:
    """Path of the KM DuckDB file, generated first if missing (or ``force``)."""
    path = km_path(rows, seed)
    if path.exists() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    df = km_frame(rows, seed)
    tmp = _tmp(path)
    tmp.unlink(missing_ok=True)
    with duckdb.connect(str(tmp)) as con:
        con.register("frame", df)
        con.execute(
            "CREATE TABLE km AS SELECT arm::TINYINT AS arm, duration::INTEGER AS duration, "
            "event::TINYINT AS event FROM frame"
        )
    os.replace(tmp, path)
    print(f"wrote {path} ({rows:,} rows) in {time.perf_counter() - t0:.1f} s")
    return path


def ensure_cox(rows: int = COX_ROWS, seed: int = DEFAULT_SEED, *, force: bool = False) -> Path:
    """Path of the Cox parquet file, generated first if missing (or ``force``)."""
    path = cox_path(rows, seed)
    if path.exists() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    df = cox_frame(rows, seed)
    if df["time"].nunique() != len(df):
        raise RuntimeError("continuous follow-up times are not all distinct; change the seed")
    tmp = _tmp(path)
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    print(f"wrote {path} ({rows:,} rows) in {time.perf_counter() - t0:.1f} s")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--km-rows", type=int, default=KM_ROWS)
    ap.add_argument("--cox-rows", type=int, default=COX_ROWS)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--force", action="store_true", help="Rebuild even if cached.")
    args = ap.parse_args()
    print(ensure_km(args.km_rows, args.seed, force=args.force))
    print(ensure_cox(args.cox_rows, args.seed, force=args.force))


if __name__ == "__main__":
    main()
