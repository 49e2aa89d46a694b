"""Generate and cache the five-site data set of the federation benchmark (``bench/federated.py``).

Usage::

    .venv/bin/python bench/federated_data.py                    # 1,000,000 persons
    .venv/bin/python bench/federated_data.py --persons 100000
    .venv/bin/python bench/federated_data.py --force            # rebuild even if cached

Five sites (the demo federation's ids) each hold a DuckDB file with one analysis table ``tte``,
one row per person::

    person_id BIGINT, age DOUBLE (decades from 50), female BIGINT, severity DOUBLE,
    treated BIGINT, days INTEGER (follow-up in whole days, at least 1), event TINYINT

Survival follows a Weibull proportional-hazards model with the log hazard ratios
``TRUE_LOG_HR`` and a baseline hazard that differs between sites (``SITE_LOG_HAZARD``), so a
Cox model stratified by site is the right model. Treatment is confounded by indication
(sicker persons are treated more often), so the Kaplan-Meier curves by ``treated`` are not
the adjusted effect; the Cox model recovers it. Sites differ in size (``SITE_SHARES``), age and
severity. Every draw comes from numpy generators seeded by ``(seed, site)``: the files depend
only on the number of persons and the seed.

The files go to ``bench/.data/federated_<persons>_s<seed>_v<version>/<site>.duckdb`` with
``truth.json`` (the true coefficients) beside them. The directory is built under a temporary
name and renamed when complete, so a directory that exists is whole; a change to the generator
bumps ``GENERATOR_VERSION`` and so the directory name.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import yaml

DATA_DIR = Path(__file__).resolve().parent / ".data"
GENERATOR_VERSION = 2
DEFAULT_SEED = 7
PERSONS = 1_000_000
TABLE = "tte"

SITES = ("luxembourg", "strasbourg", "basel", "freiburg", "homburg")
SITE_SHARES = (0.30, 0.25, 0.20, 0.15, 0.10)
SITE_LOG_HAZARD = (0.0, 0.25, -0.15, 0.4, -0.3)
SITE_AGE_SHIFT = (0.0, 0.2, -0.1, 0.3, 0.1)  # decades
SITE_SEVERITY_SHIFT = (0.0, 0.1, -0.2, 0.2, 0.0)
COVARIATES = ("age", "female", "severity", "treated")
TRUE_LOG_HR = {"age": 0.3, "female": -0.2, "severity": 0.45, "treated": float(np.log(0.7))}
SHAPE, SCALE_DAYS = 1.2, 2500.0
FOLLOW_UP_DAYS = (30.0, 3650.0)


def site_sizes(persons: int) -> dict[str, int]:
    """Persons per site: ``SITE_SHARES`` of ``persons``, the last site taking the remainder."""
    sizes = [round(share * persons) for share in SITE_SHARES[:-1]]
    sizes.append(persons - sum(sizes))
    if min(sizes) < 1:
        raise ValueError(f"{persons} persons are too few for {len(SITES)} sites")
    return dict(zip(SITES, sizes, strict=True))


def site_frame(index: int, persons: int, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """The ``tte`` rows of site number ``index`` (see the module docstring)."""
    rng = np.random.default_rng([seed, index])
    age = rng.normal(SITE_AGE_SHIFT[index], 1.5, persons)
    female = (rng.random(persons) < 0.55).astype(np.int64)
    severity = rng.normal(SITE_SEVERITY_SHIFT[index], 1.0, persons)
    # confounding by indication: the sicker a person, the likelier the treatment
    treated = (rng.random(persons) < 1.0 / (1.0 + np.exp(-(severity - 0.2)))).astype(np.int64)
    lp = (
        TRUE_LOG_HR["age"] * age
        + TRUE_LOG_HR["female"] * female
        + TRUE_LOG_HR["severity"] * severity
        + TRUE_LOG_HR["treated"] * treated
        + SITE_LOG_HAZARD[index]
    )
    t = SCALE_DAYS * (rng.standard_exponential(persons) / np.exp(lp)) ** (1.0 / SHAPE)
    c = rng.uniform(*FOLLOW_UP_DAYS, persons)
    return pd.DataFrame(
        {
            "person_id": np.arange(1, persons + 1, dtype=np.int64) + index * 10_000_000_000,
            "age": age,
            "female": female,
            "severity": severity,
            "treated": treated,
            "days": np.ceil(np.minimum(t, c)).astype(np.int32),
            "event": (t <= c).astype(np.int8),
        }
    )


def data_dir(persons: int, seed: int = DEFAULT_SEED) -> Path:
    """Cache directory of one data set."""
    return DATA_DIR / f"federated_{persons}_s{seed}_v{GENERATOR_VERSION}"


def ensure_sites(
    persons: int = PERSONS, seed: int = DEFAULT_SEED, *, force: bool = False
) -> dict[str, Path]:
    """``{site id: DuckDB file}`` of the data set, generated first if missing (or ``force``)."""
    out = data_dir(persons, seed)
    paths = {site: out / f"{site}.duckdb" for site in SITES}
    if out.exists() and not force:
        return paths
    t0 = time.perf_counter()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for index, (site, n) in enumerate(site_sizes(persons).items()):
        frame = site_frame(index, n, seed)
        with duckdb.connect(str(tmp / f"{site}.duckdb")) as con:
            con.register("frame", frame)
            con.execute(f"CREATE TABLE {TABLE} AS SELECT * FROM frame")
    truth = {
        "persons": persons,
        "seed": seed,
        "sites": site_sizes(persons),
        "log_hr": TRUE_LOG_HR,
        "site_log_hazard": dict(zip(SITES, SITE_LOG_HAZARD, strict=True)),
    }
    (tmp / "truth.json").write_text(json.dumps(truth, indent=2), encoding="utf-8")
    if force:
        shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    print(f"wrote {out} ({persons:,} persons, 5 sites) in {time.perf_counter() - t0:.1f} s")
    return paths


def write_catalog(
    paths: dict[str, Path], directory: Path, policy: dict[str, object] | None = None
) -> Path:
    """A catalog file in ``directory`` listing the sites (absolute DuckDB paths).

    The sites' audit logs go beside it (``directory/audit``), so a throwaway directory keeps
    the cached data free of them.
    """
    sites = [
        {
            "id": site,
            "name": f"benchmark site {site}",
            "country": "XX",
            "backend": "duckdb",
            "location": str(path.resolve()),
            # each site shares its prepared table, and only that one, as an analysis table
            "policy": {**(policy or {}), "analysis_tables": [TABLE]},
        }
        for site, path in paths.items()
    ]
    path = directory / "data_catalog.yaml"
    path.write_text(
        yaml.safe_dump({"name": "bench-federated", "sites": sites}, sort_keys=False),
        encoding="utf-8",
    )
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=PERSONS)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--force", action="store_true", help="Rebuild even if cached.")
    args = ap.parse_args()
    for site, path in ensure_sites(args.persons, args.seed, force=args.force).items():
        print(f"{site}: {path}")


if __name__ == "__main__":
    main()
