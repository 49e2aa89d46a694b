"""Site servers that misbehave on request, and site copies for the process-runner tests.

:func:`fault_server` has the signature of
:func:`~clinnova_explore.federated.process_runner.serve_site`, so
``ProcessRunner.start(catalog, server=fault_server)`` runs it in each spawned site process
(spawn passes ``sys.path`` to the child, which imports this module). It serves the site's real
runtime, except when the requester asks for a fault: a requester containing ``slow:<site>``
makes that site sleep :data:`SLOW_SECONDS` before answering a ``release``, and one containing
``raise:<site>`` makes its handler raise instead of answering.

:func:`survival_catalog` copies some sites of the session federation into a folder of their
own (so their audit logs are theirs too) and adds to each database a small ``survival`` table
(one row per person: duration, event, treatment, female, age), so that KM and Cox over
``Federation.from_site_tables`` need no cohort building.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import yaml

from clinnova_explore.catalog import Catalog
from clinnova_explore.federated import rpc
from clinnova_explore.federated.protocol import SiteRequest, SiteResponse
from clinnova_explore.federated.runtime import runtime_for

SLOW_SECONDS = 3.5


class InjectedFault(RuntimeError):
    """What a site told to ``raise`` raises."""


def fault_server(
    catalog_path: str | Path,
    site_id: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    authkey: bytes,
    ready: Callable[[tuple[str, int]], None] | None = None,
    lock: threading.Lock | None = None,
) -> None:
    """Serve ``site_id`` like ``serve_site``, with the faults the requester asks for."""
    site = Catalog.load(catalog_path).site(site_id)
    runtime = runtime_for(site)

    def handle(request: SiteRequest) -> SiteResponse:
        asks = request.requester.split()
        if f"raise:{site_id}" in asks:
            raise InjectedFault(f"site {site_id} was told to fail")
        if f"slow:{site_id}" in asks and request.kind == "release":
            time.sleep(SLOW_SECONDS)
        return runtime.handle(request)

    rpc.serve(handle, site_id, authkey=authkey, host=host, port=port, ready=ready, lock=lock)


def _survival_rows(rng: np.random.Generator, n: int) -> pd.DataFrame:
    treatment = rng.integers(0, 2, n)
    female = rng.integers(0, 2, n)
    age = rng.normal(45, 12, n).round(1)
    hazard = 0.002 * np.exp(0.5 * treatment + 0.3 * female + 0.02 * (age - 45))
    event_time = np.ceil(rng.exponential(1 / hazard))
    censor_time = np.ceil(rng.uniform(30, 900, n))
    return pd.DataFrame(
        {
            "person_id": np.arange(1, n + 1, dtype="int64"),
            "duration": np.minimum(event_time, censor_time),
            "event": (event_time <= censor_time).astype("int64"),
            "treatment": treatment.astype("int64"),
            "female": female.astype("int64"),
            "age": age,
        }
    )


def survival_catalog(
    catalog_path: Path, folder: Path, sites: Sequence[str], policy: Mapping[str, Any]
) -> Path:
    """Copy ``sites`` of a catalog into ``folder`` with ``policy`` and a ``survival`` table."""
    doc = yaml.safe_load(catalog_path.read_text(encoding="utf-8"))
    doc["sites"] = [s for s in doc["sites"] if s["id"] in sites]
    (folder / "cdm").mkdir(parents=True, exist_ok=True)
    for i, site in enumerate(doc["sites"]):
        target = folder / "cdm" / f"{site['id']}.duckdb"
        shutil.copyfile(catalog_path.parent / site["location"], target)
        rows = _survival_rows(np.random.default_rng(100 + i), 120 + 40 * i)
        with duckdb.connect(str(target)) as con:
            con.register("rows", rows)
            con.execute("CREATE TABLE survival AS SELECT * FROM rows")
        site["location"] = f"cdm/{site['id']}.duckdb"
        site["policy"].update({"analysis_tables": ["survival"], **policy})
    path = folder / "data_catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path
