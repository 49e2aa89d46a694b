"""Benchmark federated Kaplan-Meier and stratified Cox: process per site, in process, lifelines.

Usage::

    .venv/bin/python bench/federated.py                  # 1,000,000 persons over five sites
    .venv/bin/python bench/federated.py --quick          # 100,000 persons
    .venv/bin/python bench/federated.py --persons 300000 --repeat 3 --policy exact

Five sites hold 1,000,000 persons in total, one DuckDB file each with the analysis table
``tte`` (``bench/federated_data.py``: Weibull survival in whole days, four covariates with
known log hazard ratios, a baseline hazard per site). Three engines, each in its own fresh
process (engines run one after the other, so they do not compete for the CPUs):

``process``
    :class:`~clinnova_explore.federated.process_runner.ProcessRunner` starts one process per
    site from the catalog (``startup``: spawning each process until it serves); the
    coordinator builds ``Federation.from_site_tables(catalog, "tte", runner=...)``. Every round
    is pickled to the sites over loopback and every payload comes back as bytes; the sites
    apply their policy and append to their audit logs.
``in-process``
    The same federation with the default in-process runner (sites in the coordinator's
    process; payloads are still encoded and decoded, and audited).
``lifelines``
    What a user would do with the rows pooled: read the five tables into one pandas frame
    (``load``), ``KaplanMeierFitter`` per group, ``CoxPHFitter(...).fit(strata=["site"])``
    with ``fit_options=TIGHT`` (full convergence, so the coefficients can be compared tightly).

The analyses: Kaplan-Meier by ``treated`` (log-log bands) and an Efron Cox model on ``age,
female, severity, treated`` stratified by site. ``--repeat`` runs each federated analysis that
many times (the first pays for opening and caching the site tables, and with the process
runner for what the site processes import on their first request); lifelines runs
``--lifelines-repeat`` times. A ratio ``a / b`` is the wall time of engine ``a`` over that of
``b`` (above 1: ``a`` is slower). ``rounds`` and
payload ``bytes`` come from the runners' ``traffic`` records (one per payload a site sent);
the bytes on the wire (request and answer messages, pickled and framed) come from the process
runner's ``wire`` records. Under the
default policy (``min_cell_count`` 5) sites merge small event-time cells, so the federated KM
differs slightly from lifelines'; ``--policy exact`` (cell count 1) makes them identical;
``--policy guard`` / ``no-guard`` turn the differencing guard on / off (to measure its cost).
Timings on a shared machine are noisy: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from federated_data import (  # bench/ is on sys.path
    COVARIATES,
    DEFAULT_SEED,
    PERSONS,
    TABLE,
    TRUE_LOG_HR,
    ensure_sites,
    write_catalog,
)
from proc_memory import memory_mib  # bench/ is on sys.path

QUICK_PERSONS = 100_000
ENGINES = ("process", "in-process", "lifelines")
GROUP, DURATION, EVENT = "treated", "days", "event"
TIGHT = {"precision": 1e-12, "r_precision": 0.0, "step_size": 1.0}
POLICIES: dict[str, dict[str, object] | None] = {
    "default": None,  # the catalog's defaults (min_cell_count 5, min_cohort_size 10, 1-day bins)
    "exact": {"min_cell_count": 1, "min_cohort_size": 1},
    "guard": {"differencing_guard": True},  # the defaults with the differencing guard on
    "no-guard": {"differencing_guard": False},  # the defaults with the guard off
}
SHOWN = ("min_cell_count", "min_cohort_size", "km_time_bin_days", "km_min_events_per_bin")
COX_TOLERANCE = 1e-6  # largest |d coef| between federated and lifelines that passes
KM_EXACT = 1e-9  # largest |d survival| (and bands) that passes under the exact policy


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _traffic(records: list[Any]) -> dict[str, list[int]]:
    """``{site: [bytes of each payload]}`` from a runner's traffic records."""
    out: dict[str, list[int]] = defaultdict(list)
    for r in records:
        out[r.site].append(int(r.nbytes))
    return dict(out)


def _federation(catalog: Any, runner: Any) -> Any:
    from clinnova_explore.federated.federation import Federation

    if hasattr(Federation, "from_site_tables"):
        return Federation.from_site_tables(catalog, TABLE, runner=runner)
    if runner is not None:
        raise RuntimeError("Federation.from_site_tables is missing: no remote runner possible")
    tables = {s.id: s.table(TABLE) for s in catalog}
    return Federation.from_tables(tables, policy={s.id: s.policy for s in catalog})


def _federated(catalog_path: str, options: dict[str, Any], *, process: bool) -> dict[str, Any]:
    """Time KM and Cox over the federation (see the module docstring)."""
    from clinnova_explore.catalog import Catalog
    from clinnova_explore.federated.federation import Federation  # noqa: F401 (imported, untimed)

    out: dict[str, Any] = {"base": memory_mib("VmRSS"), "km": [], "cox": []}
    catalog = Catalog.load(catalog_path)
    runner = None
    if process:
        from clinnova_explore.federated.process_runner import ProcessRunner

        out["startup"], runner = _timed(lambda: ProcessRunner.start(catalog))
    fed = None
    try:
        out["setup"], fed = _timed(lambda: _federation(catalog, runner))
        traffic = fed.runner.traffic
        wire: list[Any] = runner.wire if runner is not None else []  # (site, kind, sent, ...)
        for i in range(options["repeat"]):
            start, start_wire = len(traffic), len(wire)
            seconds, km = _timed(
                lambda: fed.kaplan_meier(
                    duration=DURATION, event=EVENT, group=GROUP, conf_type="log-log"
                )
            )
            out["km"].append(seconds)
            if i == 0:
                out["km_traffic"] = _traffic(traffic[start:])
                out["km_wire"] = [(w.sent, w.received) for w in wire[start_wire:]]
                cols = ["group", "time", "n_at_risk", "n_events", "survival", "lower", "upper"]
                out["km_result"] = km.summary[cols].rename(columns={"group": GROUP})
        for i in range(options["repeat"]):
            start, start_wire = len(traffic), len(wire)
            seconds, cox = _timed(
                lambda: fed.cox(duration=DURATION, event=EVENT, covariates=COVARIATES)
            )
            out["cox"].append(seconds)
            if i == 0:
                out["cox_traffic"] = _traffic(traffic[start:])
                out["cox_wire"] = [(w.sent, w.received) for w in wire[start_wire:]]
                out["cox_result"] = {
                    "coef": cox.summary["coef"],
                    "se": cox.summary["se"],
                    "loglik": float(cox.loglik),
                    "iterations": int(cox.iterations),
                }
        if runner is not None:
            out["site_peak"] = {s: memory_mib("VmHWM", pid) for s, pid in runner.pids.items()}
    finally:
        t0 = time.perf_counter()
        if fed is not None:
            fed.close()
        if runner is not None:
            runner.close()
        catalog.close()
        out["close"] = time.perf_counter() - t0
    return out


def _lifelines(catalog_path: str, options: dict[str, Any]) -> dict[str, Any]:
    """Pool the sites' rows into pandas, then lifelines' KM per group and stratified Cox."""
    import duckdb
    from lifelines import CoxPHFitter, KaplanMeierFitter

    from clinnova_explore.catalog import Catalog

    out: dict[str, Any] = {"base": memory_mib("VmRSS"), "km": [], "cox": []}
    catalog = Catalog.load(catalog_path)
    columns = ", ".join([*COVARIATES, DURATION, EVENT])

    def load() -> pd.DataFrame:
        frames = []
        for site in catalog:
            with duckdb.connect(site.resolved_location(), read_only=True) as con:
                frames.append(con.sql(f"SELECT {columns} FROM {TABLE}").df().assign(site=site.id))
        return pd.concat(frames, ignore_index=True)

    out["setup"], df = _timed(load)
    for i in range(options["lifelines_repeat"]):
        seconds, fits = _timed(
            lambda: {
                int(g): KaplanMeierFitter().fit(part[DURATION], part[EVENT])
                for g, part in df.groupby(GROUP, sort=True)
            }
        )
        out["km"].append(seconds)
        if i == 0:
            out["km_result"] = {
                g: (k.survival_function_, k.confidence_interval_, int(k.event_observed.sum()))
                for g, k in fits.items()
            }
    for i in range(options["lifelines_repeat"]):
        seconds, cph = _timed(
            lambda: CoxPHFitter().fit(
                df, duration_col=DURATION, event_col=EVENT, strata=["site"], fit_options=TIGHT
            )
        )
        out["cox"].append(seconds)
        if i == 0:
            out["cox_result"] = {
                "coef": cph.params_.rename_axis("covariate"),
                "se": cph.standard_errors_.rename_axis("covariate"),
                "loglik": float(cph.log_likelihood_),
                "iterations": None,
            }
    return out


def _child(engine: str, catalog_path: str, options: dict[str, Any], q: mp.Queue) -> None:
    try:
        if engine == "lifelines":
            res = _lifelines(catalog_path, options)
        else:
            res = _federated(catalog_path, options, process=engine == "process")
        res["peak"] = memory_mib("VmHWM")
        q.put(res)
    except BaseException as err:  # report any failure to the parent, then re-raise
        q.put({"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()})
        raise


def _spawn(engine: str, catalog_path: Path, options: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=_child, args=(engine, str(catalog_path), options, q))
    p.start()
    res: dict[str, Any] = q.get()
    p.join()
    if "error" in res or p.exitcode != 0:
        print(res.get("traceback", ""), file=sys.stderr)
        sys.exit(f"{engine} failed: {res.get('error', f'exit code {p.exitcode}')}")
    return res


def compare_km(fed: pd.DataFrame, fits: dict[int, Any]) -> dict[str, float]:
    """Differences of the federated curves and bands from lifelines' at the released times.

    Returns the largest and the median |difference| of the survival, the largest of the bands
    and the largest difference of the number of events per group (merging small cells moves
    events to later times but keeps them).
    """
    worst = {"survival": 0.0, "bands": 0.0, "events": 0.0}
    diffs = []
    for g, part in fed.groupby(GROUP):
        sf, ci, events = fits[int(g)]
        worst["events"] = max(worst["events"], abs(float(part["n_events"].sum()) - events))
        # lifelines' step functions evaluated at the federated (released) times
        idx = np.searchsorted(sf.index.to_numpy(np.float64), part["time"].to_numpy(), "right") - 1
        d = np.abs(part["survival"].to_numpy() - sf.iloc[idx, 0].to_numpy())
        diffs.append(d)
        worst["survival"] = max(worst["survival"], float(d.max()))
        for col, j in (("lower", 0), ("upper", 1)):
            band = np.nanmax(np.abs(part[col].to_numpy() - ci.iloc[idx, j].to_numpy()))
            worst["bands"] = max(worst["bands"], float(band))
    worst["median survival"] = float(np.median(np.concatenate(diffs)))
    return worst


def compare_cox(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float]:
    """Largest |difference| of coefficients and standard errors, and of the log-likelihoods."""
    coef = ours["coef"] - theirs["coef"].reindex(ours["coef"].index)
    se = ours["se"] - theirs["se"].reindex(ours["se"].index)
    return {
        "coef": float(coef.abs().max()),
        "se": float(se.abs().max()),
        "loglik": abs(ours["loglik"] - theirs["loglik"]),
    }


def _load_average() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _wall(res: dict[str, Any]) -> dict[str, float]:
    """First-run and best-run times of one engine's analyses, and its end-to-end time."""
    fixed = res.get("startup", 0.0) + res["setup"]
    return {
        "km": min(res["km"]),
        "cox": min(res["cox"]),
        "both": min(res["km"]) + min(res["cox"]),
        "end to end": fixed + res["km"][0] + res["cox"][0],
    }


def _describe(catalog_path: Path) -> str:
    """The policy the benchmark's sites apply (the fields that matter here)."""
    from clinnova_explore.catalog import Catalog

    policy = Catalog.load(catalog_path).sites[0].policy
    fields = [f for f in (*SHOWN, "differencing_guard") if hasattr(policy, f)]
    return ", ".join(f"{f} {getattr(policy, f)}" for f in fields)


def report(results: dict[str, dict[str, Any]], persons: int, policy: str, shown: str) -> bool:
    """Print the timing, ratio, traffic and agreement tables; True if every check passed."""
    print(
        f"\n### {persons:,} persons, 5 sites, policy {policy} ({shown})\n\n"
        "| engine | startup s | setup/load s | KM first s | KM best s | Cox first s | Cox best s "
        "| end to end s | close s | peak MiB (coordinator) | peak MiB (sites) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for engine, r in results.items():
        sites = r.get("site_peak")
        site_mib = f"{sum(sites.values()):.0f} ({len(sites)} processes)" if sites else "-"
        seconds = (
            r.get("startup", 0.0), r["setup"], r["km"][0], min(r["km"]), r["cox"][0],
            min(r["cox"]), _wall(r)["end to end"], r.get("close", 0.0),
        )  # fmt: skip
        times = " | ".join(f"{c:.2f}" for c in seconds)
        print(f"| {engine} | {times} | {r['peak']:.0f} | {site_mib} |")
    walls = {e: _wall(r) for e, r in results.items()}
    print(
        "\n| ratio (wall time) | KM best | Cox best | KM + Cox best | end to end (first runs, "
        "with startup/load) |\n|---|---:|---:|---:|---:|"
    )
    for a, b in (("process", "in-process"), ("process", "lifelines"), ("in-process", "lifelines")):
        if a in walls and b in walls:
            cells = " | ".join(f"{walls[a][k] / walls[b][k]:.2f}x" for k in walls[a])
            print(f"| {a} / {b} | {cells} |")
    _traffic_table(results)
    return _agreement_table(results, policy)


def _traffic_table(results: dict[str, dict[str, Any]]) -> None:
    """Rounds and bytes per round per site of each federated engine and analysis."""
    print(
        "\n| engine | analysis | rounds per site | Newton iterations | payload bytes per round per "
        "site (mean) | min - max | payload bytes in total | on the wire per round per site: "
        "request / answer bytes (mean) |\n|---|---|---:|---:|---:|---:|---:|---:|"
    )
    for engine, r in results.items():
        for part in ("km", "cox"):
            if f"{part}_traffic" not in r:
                continue
            per_site = r[f"{part}_traffic"]
            sizes = [n for v in per_site.values() for n in v]
            rounds = sorted({len(v) for v in per_site.values()})
            its = r["cox_result"]["iterations"] if part == "cox" else "-"
            wire = r.get(f"{part}_wire")
            on_wire = (
                f"{np.mean([w[0] for w in wire]):,.0f} / {np.mean([w[1] for w in wire]):,.0f}"
                if wire
                else "-"
            )
            print(
                f"| {engine} | {part} | {'/'.join(map(str, rounds))} | {its} "
                f"| {np.mean(sizes):,.0f} | {min(sizes):,} - {max(sizes):,} | {sum(sizes):,} "
                f"| {on_wire} |"
            )


def _agreement_table(results: dict[str, dict[str, Any]], policy: str) -> bool:
    """Federated vs lifelines, process vs in-process, estimates vs truth; True if all pass."""
    ok = True
    print("\n| agreement | max abs difference | pass |\n|---|---:|---|")
    theirs = results.get("lifelines")
    for engine in ("in-process", "process"):
        if engine not in results or theirs is None:
            continue
        d = compare_cox(results[engine]["cox_result"], theirs["cox_result"])
        passed = d["coef"] <= COX_TOLERANCE
        ok &= passed
        print(
            f"| Cox {engine} vs lifelines (coef; se {d['se']:.1e}; loglik {d['loglik']:.1e}) "
            f"| {d['coef']:.2e} | {'yes' if passed else 'NO'} (<= {COX_TOLERANCE:g}) |"
        )
        k = compare_km(results[engine]["km_result"], theirs["km_result"])
        if policy == "exact":
            passed, rule = k["survival"] <= KM_EXACT and k["bands"] <= KM_EXACT, f"<= {KM_EXACT:g}"
        else:  # small cells merged into later times: only the event totals must agree
            passed, rule = k["events"] == 0, "events per group equal; cells merged"
        ok &= passed
        print(
            f"| KM {engine} vs lifelines (survival; median {k['median survival']:.1e}, bands "
            f"{k['bands']:.1e}, events per group {k['events']:.0f}) | {k['survival']:.2e} "
            f"| {'yes' if passed else 'NO'} ({rule}) |"
        )
    if "process" in results and "in-process" in results:
        proc, inproc = results["process"], results["in-process"]
        d = compare_cox(proc["cox_result"], inproc["cox_result"])
        km_a, km_b = proc["km_result"], inproc["km_result"]
        same_km = km_a.shape == km_b.shape and bool(
            np.allclose(km_a.to_numpy(float), km_b.to_numpy(float), rtol=0, atol=0, equal_nan=True)
        )
        passed = d["coef"] == 0.0 and same_km
        ok &= passed
        print(
            f"| process vs in-process (Cox coef; KM identical: {same_km}) | {d['coef']:.2e} "
            f"| {'yes' if passed else 'NO'} (identical) |"
        )
    for engine, r in results.items():
        coef = r["cox_result"]["coef"]
        err = max(abs(float(coef[c]) - v) for c, v in TRUE_LOG_HR.items())
        print(f"| {engine} Cox vs the true log hazard ratios (information) | {err:.2e} | - |")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=PERSONS)
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_PERSONS:,} persons.")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--repeat", type=int, default=2, help="Runs of each federated analysis.")
    ap.add_argument("--lifelines-repeat", type=int, default=1, help="Runs of each lifelines fit.")
    ap.add_argument("--policy", choices=sorted(POLICIES), default="default")
    ap.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    args = ap.parse_args()
    persons = QUICK_PERSONS if args.quick else args.persons
    print(f"load average at start: {_load_average()} ({os.cpu_count()} CPUs)", flush=True)
    t_start = time.perf_counter()
    paths = ensure_sites(persons, args.seed)
    options = {"repeat": args.repeat, "lifelines_repeat": args.lifelines_repeat}
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-federated-") as tmp:
        for engine in args.engines:
            directory = Path(tmp) / engine  # its own catalog, so its own audit logs
            directory.mkdir()
            catalog = write_catalog(paths, directory, POLICIES[args.policy])
            shown = _describe(catalog)
            print(f"  {engine}: fresh process ...", flush=True)
            results[engine] = _spawn(engine, catalog, options)
            entries = sum(
                len(p.read_text(encoding="utf-8").splitlines()) for p in directory.rglob("*.jsonl")
            )
            results[engine]["audit_entries"] = entries
    ok = report(results, persons, args.policy, shown)
    for engine, r in results.items():
        if engine == "lifelines":
            continue
        print(f"\n{engine}: {r['audit_entries']} audit entries written by the sites.")
        if engine == "process":
            print(
                "process: 'KM first' includes each site's first request (the site process "
                "imports the analysis modules and opens its table): "
                f"{r['km'][0] - min(r['km']):.2f} s more than 'KM best'."
            )
    print(
        f"\nlifelines: CoxPHFitter fit_options={TIGHT}; federated Cox: Efron ties, "
        "strata='site', tol 1e-12 (rounds per site include the design and probe rounds)."
    )
    print(f"\nload average at end: {_load_average()}; total {time.perf_counter() - t_start:.0f} s")
    if not ok:
        sys.exit("RESULTS DIFFER: see the agreement table")


if __name__ == "__main__":
    main()
