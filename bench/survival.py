"""Benchmark Kaplan-Meier and Cox regression against lifelines.

Usage::

    .venv/bin/python bench/survival.py                   # KM on 10M rows, Cox on 1M rows
    .venv/bin/python bench/survival.py --only cox --repeat 5
    .venv/bin/python bench/survival.py --km-rows 1000000 --cox-rows 100000 --lifelines-repeat 2

Kaplan-Meier (``km``): two arms at day resolution (``bench/survival_data.py``). ``ours`` is
:func:`clinnova_explore.analysis.survival.km.kaplan_meier` on an ibis table of the DuckDB file
(the counting runs in the database; only the event table reaches Python); ``lifelines`` reads
the table into pandas (``load``) and fits a ``KaplanMeierFitter`` per arm. Both produce
log-log ("exponential Greenwood") bands. Check: identical numbers at risk, events and
censorings at every time, and the largest absolute difference of the survival curves and bands.

Cox (``cox``): Efron ties, eight covariates, stratified by ``site`` (five strata), on the
continuous follow-up (all times distinct) and on the same follow-up in whole days (heavy ties).
Both engines read the same parquet columns into pandas (``load``, timed apart) and fit:
``ours`` is :func:`clinnova_explore.analysis.survival.cox.cox`, ``lifelines`` is
``CoxPHFitter().fit(..., strata=["site"])`` with its default settings (damped Newton steps
that stop slightly short of the optimum, so the coefficients differ by about 1e-9;
``--tight`` fits lifelines to full convergence instead, see ``TIGHT``). Check: the largest
absolute difference of coefficients and standard errors, and of the log partial likelihoods.

Every engine and case runs in its own fresh process (so its peak resident memory, VmHWM, is
its own) ``--repeat`` times; lifelines runs as often except on continuous-time Cox, which
takes it minutes and runs once (``--lifelines-repeat`` sets lifelines' count everywhere); the
tables give the first and the best wall time, the CPU time of the best run (load + fit, all
threads: less sensitive to other programs' load than wall time, but it counts ours' parallel
DuckDB and BLAS threads in full) and the memory after imports (``base MiB``) and at the
peak. Ratios are lifelines / ours, so larger is better for ours. The machine's load average is
printed before and after: timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import inspect
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from proc_memory import memory_mib  # bench/ is on sys.path
from survival_data import (  # bench/ is on sys.path
    COVARIATES,
    COX_ROWS,
    DEFAULT_SEED,
    KM_ROWS,
    ensure_cox,
    ensure_km,
)

DURATIONS = {"continuous": "time", "day": "day"}  # Cox case -> duration column
TARGETS = {"km": 4.0, "continuous": 50.0, "day": 10.0}  # wall-time ratio lifelines / ours
KM_MEMORY_TARGET = 5.0  # lifelines peak / ours peak
# lifelines CoxPHFitter fit_options for full convergence (undamped steps, no relative-loglik stop)
TIGHT = {"precision": 1e-14, "r_precision": 0.0, "step_size": 1.0}


@dataclass(frozen=True)
class Case:
    """What one benchmark process times: ``fit(load())``, then ``result`` of the first fit."""

    load: Callable[[], Any] | None
    fit: Callable[[Any], Any]
    result: Callable[[Any], Any]  # a small picklable summary to compare between engines


def _km_ours(path: str, options: dict[str, Any]) -> Case:
    import ibis

    from clinnova_explore.analysis.survival.km import kaplan_meier

    con = ibis.duckdb.connect(path, read_only=True)
    con.raw_sql("SET enable_progress_bar = false")
    table = con.table("km")

    def fit(_: None) -> Any:
        return kaplan_meier(
            table, duration="duration", event="event", group="arm", conf_type="log-log"
        )

    def result(fit: Any) -> pd.DataFrame:
        s = fit.summary.rename(columns={"group": "arm"})
        return s[["arm", "time", "n_at_risk", "n_events", "n_censored", "survival"]].assign(
            lower=s["lower"], upper=s["upper"]
        )

    return Case(None, fit, result)


def _km_lifelines(path: str, options: dict[str, Any]) -> Case:
    import duckdb
    from lifelines import KaplanMeierFitter

    con = duckdb.connect(path, read_only=True)
    con.execute("SET enable_progress_bar = false")

    def fit(df: pd.DataFrame) -> dict[int, Any]:
        fits = {}
        for arm, part in df.groupby("arm", sort=True):
            fits[int(arm)] = KaplanMeierFitter().fit(part["duration"], part["event"])
        return fits

    def result(fits: dict[int, Any]) -> pd.DataFrame:
        parts = []
        for arm, kmf in fits.items():
            et = kmf.event_table
            et = et.loc[et["removed"] > 0]
            ci = kmf.confidence_interval_
            parts.append(
                pd.DataFrame(
                    {
                        "arm": arm,
                        "time": et.index.to_numpy(np.float64),
                        "n_at_risk": et["at_risk"].to_numpy(),
                        "n_events": et["observed"].to_numpy(),
                        "n_censored": et["censored"].to_numpy(),
                        "survival": kmf.survival_function_.iloc[:, 0].loc[et.index].to_numpy(),
                        "lower": ci.iloc[:, 0].loc[et.index].to_numpy(),
                        "upper": ci.iloc[:, 1].loc[et.index].to_numpy(),
                    }
                )
            )
        return pd.concat(parts, ignore_index=True)

    return Case(lambda: con.sql("SELECT arm, duration, event FROM km").df(), fit, result)


def _cox_load(path: str, duration: str) -> Callable[[], pd.DataFrame]:
    return lambda: pd.read_parquet(path, columns=["site", *COVARIATES, duration, "event"])


def _cox_ours(path: str, options: dict[str, Any]) -> Case:
    from clinnova_explore.analysis.survival.cox import cox

    duration = DURATIONS[options["case"]]

    def fit(df: pd.DataFrame) -> Any:
        return cox(df, duration=duration, event="event", covariates=COVARIATES, strata="site")

    def result(fit: Any) -> dict[str, Any]:
        return {
            "coef": fit.summary["coef"],
            "se": fit.summary["se"],
            "loglik": fit.loglik,
            "iterations": fit.iterations,
            "tol": inspect.signature(cox).parameters["tol"].default,
        }

    return Case(_cox_load(path, duration), fit, result)


def _cox_lifelines(path: str, options: dict[str, Any]) -> Case:
    from lifelines import CoxPHFitter

    duration = DURATIONS[options["case"]]
    fit_options = TIGHT if options["tight"] else None

    def fit(df: pd.DataFrame) -> Any:
        return CoxPHFitter().fit(
            df, duration_col=duration, event_col="event", strata=["site"], fit_options=fit_options
        )

    def result(fit: Any) -> dict[str, Any]:
        return {
            "coef": fit.params_.rename_axis("covariate"),
            "se": fit.standard_errors_.rename_axis("covariate"),
            "loglik": float(fit.log_likelihood_),
            "iterations": None,
            "tol": None,
        }

    return Case(_cox_load(path, duration), fit, result)


ENGINES: dict[str, Callable[[str, dict[str, Any]], Case]] = {
    "km/ours": _km_ours,
    "km/lifelines": _km_lifelines,
    "cox/ours": _cox_ours,
    "cox/lifelines": _cox_lifelines,
}


def _child(engine: str, path: str, options: dict[str, Any], repeat: int, q: mp.Queue) -> None:
    try:
        case = ENGINES[engine](path, options)
        base = memory_mib("VmRSS")
        runs: list[tuple[float, float, float]] = []  # (load wall, fit wall, cpu)
        result = None
        for i in range(repeat):
            data = out = None  # free the previous run's data before loading again
            t0, c0 = time.perf_counter(), time.process_time()
            data = case.load() if case.load is not None else None
            t1 = time.perf_counter()
            out = case.fit(data)
            t2 = time.perf_counter()
            runs.append((t1 - t0, t2 - t1, time.process_time() - c0))
            if i == 0:
                result = case.result(out)
        q.put({"runs": runs, "result": result, "base": base, "peak": memory_mib("VmHWM")})
    except BaseException as err:  # report any failure to the parent, then re-raise
        q.put({"error": f"{type(err).__name__}: {err}"})
        raise


def _spawn(engine: str, path: Path, options: dict[str, Any], repeat: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=_child, args=(engine, str(path), options, repeat, q))
    p.start()
    res: dict[str, Any] = q.get()
    p.join()
    if "error" in res or p.exitcode != 0:
        sys.exit(f"{engine} {options} failed: {res.get('error', f'exit code {p.exitcode}')}")
    return res


@dataclass
class Row:
    """Timings and memory of one engine on one case, over its fresh processes."""

    part: str
    engine: str
    case: str
    runs: list[tuple[float, float, float]]  # (load, fit, cpu) of every run of every process
    firsts: list[float]  # fit time of the first run of each process
    base: float
    peak: float
    result: Any  # of the first process

    @property
    def best(self) -> tuple[float, float, float]:
        """(load, fit, cpu) of the run with the fastest fit."""
        return min(self.runs, key=lambda r: r[1])


def _pair(
    part: str, case: str, path: Path, options: dict[str, Any], runs: dict[str, int], rounds: int
) -> list[Row]:
    """Run ours and lifelines on one case, taking turns for ``rounds`` fresh processes each."""
    rows: dict[str, Row] = {}
    for _ in range(rounds):
        for engine, n in runs.items():
            print(f"  {part}/{engine} {case}: {n} run(s) in a fresh process ...", flush=True)
            res = _spawn(f"{part}/{engine}", path, {**options, "case": case}, n)
            row = rows.setdefault(
                engine, Row(part, engine, case, [], [], res["base"], 0.0, res["result"])
            )
            row.runs += res["runs"]
            row.firsts.append(res["runs"][0][1])
            row.base, row.peak = max(row.base, res["base"]), max(row.peak, res["peak"])
    return [rows["ours"], rows["lifelines"]]


def compare_km(ours: pd.DataFrame, theirs: pd.DataFrame) -> dict[str, Any]:
    """Counts must be identical; return the largest curve and band differences."""
    keys = ["arm", "time"]
    a = ours.astype({"arm": "int64"}).sort_values(keys).reset_index(drop=True)
    b = theirs.astype({"arm": "int64"}).sort_values(keys).reset_index(drop=True)
    counts = ["arm", "time", "n_at_risk", "n_events", "n_censored"]
    same = len(a) == len(b) and bool((a[counts].to_numpy() == b[counts].to_numpy()).all())
    out: dict[str, Any] = {"rows": len(a), "counts identical": same}
    if same:
        for col in ("survival", "lower", "upper"):
            out[f"max |d {col}|"] = float(np.nanmax(np.abs(a[col] - b[col])))
    return out


def compare_cox(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Largest coefficient and standard-error differences and the log-likelihood difference."""
    coef = ours["coef"] - theirs["coef"].reindex(ours["coef"].index)
    se = ours["se"] - theirs["se"].reindex(ours["se"].index)
    return {
        "max |d coef|": float(coef.abs().max()),
        "max |d se|": float(se.abs().max()),
        "d loglik": float(ours["loglik"] - theirs["loglik"]),
    }


def _load_average() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def report(rows: list[Row], checks: dict[str, dict[str, Any]], notes: list[str]) -> bool:
    """Print the markdown tables; return whether every check passed."""
    print(
        "\n| part | engine | case | processes x runs | load s | first fit s | best fit s | cpu s "
        "| base MiB | peak MiB | peak - base MiB |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for r in rows:
        load, fit, cpu = r.best
        n_runs = len(r.runs) // len(r.firsts)
        print(
            f"| {r.part} | {r.engine} | {r.case} | {len(r.firsts)} x {n_runs} | {load:.3f} "
            f"| {min(r.firsts):.3f} | {fit:.3f} | {cpu:.3f} | {r.base:.0f} | {r.peak:.0f} "
            f"| {r.peak - r.base:.0f} |"
        )
    print(
        "\n| comparison (lifelines / ours) | best fit | first fit | load + fit | cpu "
        "| peak memory | peak - base | target | agreement |\n"
        "|---|---:|---:|---:|---:|---:|---:|---|---|"
    )
    ok = True
    by_key = {(r.part, r.engine, r.case): r for r in rows}
    for part, case in dict.fromkeys((r.part, r.case) for r in rows):
        ours, theirs = by_key[(part, "ours", case)], by_key[(part, "lifelines", case)]
        fit = theirs.best[1] / ours.best[1]
        first = min(theirs.firsts) / min(ours.firsts)
        total = sum(theirs.best[:2]) / sum(ours.best[:2])
        cpu = theirs.best[2] / ours.best[2]
        memory = theirs.peak / ours.peak
        working = (theirs.peak - theirs.base) / (ours.peak - ours.base)
        target = TARGETS["km" if part == "km" else case]
        if part == "km":  # ours needs no load: the data stays in the database
            met = total >= target and memory >= KM_MEMORY_TARGET
            goal = f"load + fit >= {target:g}x, peak memory >= {KM_MEMORY_TARGET:g}x"
        else:
            met, goal = fit >= target, f"best fit >= {target:g}x"
        check = checks[f"{part} {case}"]
        if part == "km" and not check["counts identical"]:
            ok = False
        agreement = "; ".join(
            f"{k} {v:.2e}" if isinstance(v, float) else f"{k} {v}" for k, v in check.items()
        )
        print(
            f"| {part} {case} | {fit:.1f}x | {first:.1f}x | {total:.1f}x | {cpu:.1f}x "
            f"| {memory:.2f}x "
            f"| {working:.1f}x "
            f"| {goal}: {'met' if met else 'NOT met'} | {agreement} |"
        )
    for note in notes:
        print(f"\n{note}")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["km", "cox"], help="Run one part only.")
    ap.add_argument("--rows", type=int, help="Rows of both data sets (overrides the two below).")
    ap.add_argument("--km-rows", type=int, default=KM_ROWS)
    ap.add_argument("--cox-rows", type=int, default=COX_ROWS)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--repeat", type=int, default=3, help="Runs per process for ours.")
    ap.add_argument(
        "--rounds", type=int, default=1, help="Fresh processes per engine and case, in turn."
    )
    ap.add_argument(
        "--lifelines-repeat",
        type=int,
        help="Runs per process for lifelines (default: --repeat, but 1 on continuous-time Cox).",
    )
    ap.add_argument(
        "--tight",
        action="store_true",
        help=f"Fit lifelines' Cox with fit_options={TIGHT} (to check agreement; slower).",
    )
    args = ap.parse_args()
    km_rows = args.rows or args.km_rows
    cox_rows = args.rows or args.cox_rows
    parts = [args.only] if args.only else ["km", "cox"]
    print(f"load average at start: {_load_average()} ({os.cpu_count()} CPUs)", flush=True)
    t_start = time.perf_counter()
    opts: dict[str, Any] = {"tight": args.tight}

    def repeats(case: str) -> dict[str, int]:
        theirs = args.lifelines_repeat
        if theirs is None:
            theirs = 1 if case == "continuous" else args.repeat
        return {"ours": args.repeat, "lifelines": theirs}

    rows: list[Row] = []
    checks: dict[str, dict[str, Any]] = {}
    notes = [
        "Memory: 'base' is the resident size after imports (and connecting), 'peak' the "
        "process's VmHWM; the KM memory target is judged on whole-process peaks, 'peak - base' "
        "is the working memory of the computation alone.",
        "Each engine and case ran in fresh processes (engines taking turns), each doing "
        "'runs' fits (fewer for lifelines where it takes minutes). 'first fit' is the fastest "
        "first run of a process (cold caches and allocator: what a one-off analysis pays); "
        "'best fit' the fastest of all runs; 'load' and 'cpu' (load + fit) belong to that run.",
    ]
    if "km" in parts:
        path = ensure_km(km_rows, args.seed)
        print(f"KM: {path} ({km_rows:,} rows, 2 arms, day resolution)", flush=True)
        pair = _pair("km", "day", path, opts, repeats("day"), args.rounds)
        rows += pair
        checks["km day"] = compare_km(pair[0].result, pair[1].result)
        notes.append(
            "KM: ours counts in DuckDB (no load step); lifelines' 'load + fit' includes reading "
            "the table into pandas."
        )
    if "cox" in parts:
        path = ensure_cox(cox_rows, args.seed)
        print(f"Cox: {path} ({cox_rows:,} rows, 8 covariates, 5 site strata)", flush=True)
        for case in DURATIONS:
            pair = _pair("cox", case, path, opts, repeats(case), args.rounds)
            rows += pair
            checks[f"cox {case}"] = compare_cox(pair[0].result, pair[1].result)
            its, tol = pair[0].result["iterations"], pair[0].result["tol"]
            notes.append(f"Cox {case}: ours converged in {its} Newton iterations (tol {tol:g}).")
        notes.append(
            f"Cox: lifelines fitted with fit_options={TIGHT} (--tight)."
            if args.tight
            else "Cox: lifelines fitted with its default fit_options. Its damped Newton steps "
            "(step_size 0.95) and stopping rules leave its coefficients slightly short of the "
            "optimum, so a small 'max |d coef|' measures lifelines' convergence; --tight fits it "
            "to full convergence."
        )
    ok = report(rows, checks, notes)
    print(f"\nload average at end: {_load_average()}; total {time.perf_counter() - t_start:.0f} s")
    if not ok:
        sys.exit("RESULTS DIFFER: the KM counts of the engines are not identical")


if __name__ == "__main__":
    main()
