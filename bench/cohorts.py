"""Benchmark one cohort: the compiled definition against hand-written DuckDB SQL and pandas.

Usage::

    .venv/bin/python bench/cohorts.py                    # 1,000,000 persons (~20M events)
    .venv/bin/python bench/cohorts.py --persons 20000 --rounds 2
    .venv/bin/python bench/cohorts.py --engines compiled hand-sql

The cohort: entry at each person's first MS disease-modifying therapy (DMT) exposure, with at
least 365 days of prior observation; inclusion rule "an exposure to a high-efficacy DMT 0 to 90
days after index" (inside the same observation period, as Circe requires); exit at the end of
the observation period. The data is the synthetic CDM of ``bench/synth_cdm.py`` (generated and
cached on first use).

Engines, each in its own fresh process so that its peak resident memory is measured alone:

``compiled``
    ``cohort_rows(defn, open_cdm(path))`` (``rows``), ``compile_cohort(defn, cdm)`` then
    ``.to_pandas()`` (``rows-compiled``), the lazy ``.cohort.to_pandas()`` (``rows-ibis``),
    ``.count()`` and ``.attrition()``; apart from ``rows``, ``compile_cohort`` is called
    inside every timing. The library may reuse
    SQL it compiled earlier for the same definition, so the ``first s`` column (the first call
    in a fresh process) is the uncached cost; ``compile`` times ``compile_cohort`` +
    ``to_sql()`` alone.
``compiled-sql``
    the SQL text of ``CompiledCohort.to_sql()`` run directly by DuckDB (the SQL alone,
    without ibis).
``hand-sql``
    the same logic written by hand in DuckDB SQL; the reference the others are checked against.
``pandas``
    the same logic in pandas; ``load`` reads the needed tables from the DuckDB file, the
    other tasks compute on the loaded frames.

Each process runs every task once (``first s``) and then ``--repeat`` more times; engines take
turns for ``--rounds`` rounds (so that load from other programs spreads over all of them) and
the table keeps the best wall (``best s``) and CPU (``cpu s``, all threads) times of all rounds.
``base MiB`` is the resident memory after imports and connecting, ``peak MiB`` the largest peak
(VmHWM) of the engine's processes. All engines must return identical persons, records, cohort
rows and attrition, or the script stops with the differences.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from proc_memory import memory_mib  # bench/ is on sys.path
from synth_cdm import DEFAULT_PERSONS, DEFAULT_SEED, ensure_cdm  # bench/ is on sys.path

from clinnova_explore.cdm import concepts as c

RULE = "High-efficacy DMT within 90 days after index"
DEFINITION = f"""
name: MS DMT start with early high-efficacy therapy (benchmark)
concept_sets:
  dmt: {{include: [{{concept_id: {c.MS_DMT}, descendants: true}}]}}
  he_dmt: {{include: [{{concept_id: {c.MS_DMT_HIGH_EFFICACY}, descendants: true}}]}}
entry:
  events: [{{domain: drug, concept_set: dmt, first: true}}]
  observation: {{prior_days: 365, post_days: 0}}
  limit: first
qualified_limit: first
inclusion_rules:
  - name: {RULE}
    group:
      type: all
      criteria:
        - event: {{domain: drug, concept_set: he_dmt}}
          occurrence: {{type: at_least, count: 1}}
          start_window: {{start: 0, end: 90}}
expression_limit: first
exit: {{type: observation_end}}
"""

# The same cohort by hand. The first DMT exposure in history (before the observation-period
# check, as Circe's "first" does); its date only matters, so min() replaces row_number().
HAND_ENTRY = f"""
WITH dmt AS (
    SELECT descendant_concept_id AS concept_id FROM concept_ancestor
    WHERE ancestor_concept_id = {c.MS_DMT}
), he AS (
    SELECT descendant_concept_id AS concept_id FROM concept_ancestor
    WHERE ancestor_concept_id = {c.MS_DMT_HIGH_EFFICACY}
), first_dmt AS (
    SELECT person_id, min(drug_exposure_start_date) AS start_date
    FROM drug_exposure JOIN dmt ON drug_concept_id = dmt.concept_id
    GROUP BY person_id
), entry AS (
    SELECT f.person_id, f.start_date,
        op.observation_period_start_date AS op_start, op.observation_period_end_date AS op_end
    FROM first_dmt f JOIN observation_period op ON op.person_id = f.person_id
        AND f.start_date >= op.observation_period_start_date + 365
        AND f.start_date <= op.observation_period_end_date
), qualified AS (
    SELECT * FROM entry e WHERE EXISTS (
        SELECT 1 FROM drug_exposure d JOIN he ON d.drug_concept_id = he.concept_id
        WHERE d.person_id = e.person_id
            AND d.drug_exposure_start_date BETWEEN e.start_date AND e.start_date + 90
            AND d.drug_exposure_start_date BETWEEN e.op_start AND e.op_end)
)
"""
HAND_ROWS = (
    HAND_ENTRY + "SELECT person_id AS subject_id, start_date AS cohort_start_date, "
    "op_end AS cohort_end_date FROM qualified"
)
HAND_COUNT = (
    HAND_ENTRY + "SELECT count(DISTINCT person_id) AS persons, count(*) AS records FROM qualified"
)
HAND_ATTRITION = (
    HAND_ENTRY + "SELECT 'Qualifying entry events' AS rule, count(DISTINCT person_id) AS persons, "
    "count(*) AS records, 0 AS k FROM entry UNION ALL "
    f"SELECT '{RULE}', count(DISTINCT person_id), count(*), 1 FROM qualified ORDER BY k"
)

Task = Callable[[], Any]
QUIET = "SET enable_progress_bar = false"  # no progress bars on the terminal during timings


def _compiled(path: str) -> dict[str, Task]:
    from clinnova_explore.cdm.source import open_cdm
    from clinnova_explore.cohort import CohortDefinition, compile_cohort
    from clinnova_explore.cohort.compile import cohort_rows

    cdm = open_cdm(Path(path))
    cdm.connect().raw_sql(QUIET)
    defn = CohortDefinition.from_yaml(DEFINITION)
    return {
        "compile": lambda: compile_cohort(defn, cdm).to_sql(),
        "rows": lambda: cohort_rows(defn, cdm),
        "rows-compiled": lambda: compile_cohort(defn, cdm).to_pandas(),
        "rows-ibis": lambda: compile_cohort(defn, cdm).cohort.to_pandas(),
        "count": lambda: compile_cohort(defn, cdm).count(),
        "attrition": lambda: compile_cohort(defn, cdm).attrition(),
    }


def _compiled_sql(path: str) -> dict[str, Task]:
    import duckdb

    from clinnova_explore.cdm.source import open_cdm
    from clinnova_explore.cohort import CohortDefinition, compile_cohort

    sql = compile_cohort(CohortDefinition.from_yaml(DEFINITION), open_cdm(Path(path))).to_sql()
    con = duckdb.connect(path, read_only=True)
    con.execute(QUIET)
    return {"rows": lambda: con.sql(sql).df()}


def _hand_sql(path: str) -> dict[str, Task]:
    import duckdb

    con = duckdb.connect(path, read_only=True)
    con.execute(QUIET)

    def count() -> dict[str, int]:
        persons, records = con.sql(HAND_COUNT).fetchone()  # type: ignore[misc]
        return {"persons": int(persons), "records": int(records)}

    return {
        "rows": lambda: con.sql(HAND_ROWS).df(),
        "count": count,
        "attrition": lambda: con.sql(HAND_ATTRITION).df().drop(columns="k"),
    }


def _pandas(path: str) -> dict[str, Task]:
    import duckdb

    con = duckdb.connect(path, read_only=True)
    con.execute(QUIET)
    frames: dict[str, pd.DataFrame] = {}
    columns = {
        "concept_ancestor": "ancestor_concept_id, descendant_concept_id",
        "observation_period": "person_id, observation_period_start_date AS op_start, "
        "observation_period_end_date AS op_end",
        "drug_exposure": "person_id, drug_concept_id, drug_exposure_start_date AS start_date",
    }

    def load() -> None:
        for table, cols in columns.items():
            frames[table] = con.sql(f"SELECT {cols} FROM {table}").df()

    def stages() -> tuple[pd.DataFrame, pd.DataFrame]:
        ca, op, de = (frames[t] for t in columns)
        dmt = ca.loc[ca["ancestor_concept_id"] == c.MS_DMT, "descendant_concept_id"]
        he = ca.loc[ca["ancestor_concept_id"] == c.MS_DMT_HIGH_EFFICACY, "descendant_concept_id"]
        first = (
            de.loc[de["drug_concept_id"].isin(dmt)]
            .groupby("person_id", as_index=False)["start_date"]
            .min()
        )
        entry = first.merge(op, on="person_id")
        entry = entry.loc[
            (entry["start_date"] >= entry["op_start"] + pd.Timedelta(days=365))
            & (entry["start_date"] <= entry["op_end"])
        ]
        he_rows = de.loc[de["drug_concept_id"].isin(he), ["person_id", "start_date"]]
        pairs = entry.merge(he_rows, on="person_id", suffixes=("", "_he"))
        day = pairs["start_date_he"]
        hit = pairs.loc[
            (day >= pairs["start_date"])
            & (day <= pairs["start_date"] + pd.Timedelta(days=90))
            & (day >= pairs["op_start"])
            & (day <= pairs["op_end"]),
            "person_id",
        ]
        return entry, entry.loc[entry["person_id"].isin(hit.unique())]

    def rows() -> pd.DataFrame:
        qualified = stages()[1]
        return qualified.rename(
            columns={
                "person_id": "subject_id",
                "start_date": "cohort_start_date",
                "op_end": "cohort_end_date",
            }
        )[["subject_id", "cohort_start_date", "cohort_end_date"]]

    def count() -> dict[str, int]:
        qualified = stages()[1]
        return {"persons": int(qualified["person_id"].nunique()), "records": len(qualified)}

    def attrition() -> pd.DataFrame:
        steps = zip(("Qualifying entry events", RULE), stages(), strict=True)
        return pd.DataFrame(
            [(rule, df["person_id"].nunique(), len(df)) for rule, df in steps],
            columns=["rule", "persons", "records"],
        )

    return {"load": load, "rows": rows, "count": count, "attrition": attrition}


ENGINES: dict[str, Callable[[str], dict[str, Task]]] = {
    "compiled": _compiled,
    "compiled-sql": _compiled_sql,
    "hand-sql": _hand_sql,
    "pandas": _pandas,
}


def _child(engine: str, path: str, repeat: int, q: mp.Queue) -> None:
    try:
        tasks = ENGINES[engine](path)
        base = memory_mib("VmRSS")
        timings: dict[str, tuple[float, float, float]] = {}
        outputs: dict[str, Any] = {}
        for name, task in tasks.items():
            t0 = time.perf_counter()
            outputs[name] = task()  # warm-up; its result is the one checked
            cold = time.perf_counter() - t0
            wall = cpu = float("inf")
            for _ in range(repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                task()
                wall = min(wall, time.perf_counter() - t0)
                cpu = min(cpu, time.process_time() - c0)
            timings[name] = (cold, wall, cpu)
        peak = memory_mib("VmHWM")
        outputs.pop("load", None)
        outputs.pop("compile", None)
        q.put({"timings": timings, "outputs": outputs, "base": base, "peak": peak})
    except BaseException as err:  # report any failure to the parent, then re-raise
        q.put({"error": f"{type(err).__name__}: {err}"})
        raise


def _normal_rows(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "subject_id": df["subject_id"].astype("int64"),
            "cohort_start_date": pd.to_datetime(df["cohort_start_date"]).astype("datetime64[s]"),
            "cohort_end_date": pd.to_datetime(df["cohort_end_date"]).astype("datetime64[s]"),
        }
    )
    return out.sort_values(list(out.columns)).reset_index(drop=True)


def _normal_attrition(df: pd.DataFrame) -> pd.DataFrame:
    out = df[["rule", "persons", "records"]].astype({"persons": "int64", "records": "int64"})
    return out.reset_index(drop=True)


def check(results: dict[str, dict[str, Any]]) -> list[str]:
    """Compare every engine's outputs with hand-sql's; return the differences found."""
    ref = results["hand-sql"]["outputs"]
    ref_rows = _normal_rows(ref["rows"])
    ref_attr = _normal_attrition(ref["attrition"])
    problems = []
    for engine, res in results.items():
        out = res["outputs"]
        for task in (t for t in out if t.startswith("rows")):
            rows = _normal_rows(out[task])
            if not rows.equals(ref_rows):
                diff = rows.merge(ref_rows, how="outer", indicator=True)
                diff = diff.loc[diff["_merge"] != "both"]
                problems.append(
                    f"{engine} {task}: {len(rows):,} cohort rows vs {len(ref_rows):,} by "
                    f"hand-sql; differing rows (left_only = {engine}):\n{diff.head(10).to_string()}"
                )
        if "count" in out and dict(out["count"]) != dict(ref["count"]):
            problems.append(f"{engine}: count {out['count']} vs {ref['count']} by hand-sql")
        if "attrition" in out:
            attr = _normal_attrition(out["attrition"])
            if not attr.equals(ref_attr):
                problems.append(
                    f"{engine}: attrition\n{attr.to_string()}\nvs hand-sql\n{ref_attr.to_string()}"
                )
    return problems


def _spawn(engine: str, path: Path, repeat: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=_child, args=(engine, str(path), repeat, q))
    p.start()
    res: dict[str, Any] = q.get()
    p.join()
    if "error" in res or p.exitcode != 0:
        sys.exit(f"engine {engine} failed: {res.get('error', f'exit code {p.exitcode}')}")
    return res


def run(
    path: Path, repeat: int, rounds: int, engines: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Run each engine in a fresh process, ``rounds`` times in turn; merge the timings.

    Taking turns spreads any load from other programs over all engines. The merged result
    keeps the first round's outputs and first-run times, the best of all rounds' best times,
    and the largest peak memory.
    """
    results: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        for engine in engines:
            res = _spawn(engine, path, repeat)
            if engine not in results:
                results[engine] = res
                continue
            merged = results[engine]
            for task, (_, wall, cpu) in res["timings"].items():
                cold, best_wall, best_cpu = merged["timings"][task]
                merged["timings"][task] = (cold, min(wall, best_wall), min(cpu, best_cpu))
            merged["peak"] = max(merged["peak"], res["peak"])
    return results


def report(results: dict[str, dict[str, Any]]) -> None:
    """Print the timing table, the ratios and the peak memory."""
    print(
        f"\n{'engine':<13}{'task':<15}{'first s':>9}{'best s':>9}{'cpu s':>9}"
        f"{'base MiB':>10}{'peak MiB':>10}"
    )
    for engine, res in results.items():
        for task, (cold, wall, cpu) in res["timings"].items():
            print(
                f"{engine:<13}{task:<15}{cold:>9.3f}{wall:>9.3f}{cpu:>9.3f}"
                f"{res['base']:>10.0f}{res['peak']:>10.0f}"
            )

    def best(engine: str, task: str, column: int) -> float:
        return float(results[engine]["timings"][task][column])

    count = results["hand-sql"]["outputs"]["count"]
    print(f"\ncohort: {count['persons']:,} persons, {count['records']:,} records")
    # (label, numerator (engine, tasks), denominator (engine, task)); times of tasks add up
    pairs: list[tuple[str, tuple[str, tuple[str, ...]], tuple[str, str]]] = []
    if "compiled" in results:
        for task in ("rows", "rows-compiled", "rows-ibis", "count", "attrition"):
            ref = task.removesuffix("-ibis").removesuffix("-compiled")
            pairs.append((f"compiled / hand-sql, {task}", ("compiled", (task,)), ("hand-sql", ref)))
    if "compiled-sql" in results:
        pairs.append(
            ("compiled-sql / hand-sql, rows", ("compiled-sql", ("rows",)), ("hand-sql", "rows"))
        )
    if "pandas" in results:
        ours = "compiled" if "compiled" in results else "hand-sql"
        pairs.append((f"pandas / {ours}, rows", ("pandas", ("rows",)), (ours, "rows")))
        pairs.append(
            (f"pandas incl. load / {ours}, rows", ("pandas", ("load", "rows")), (ours, "rows"))
        )
    print(f"ratios of best times {'wall':>19}{'cpu':>8}")
    for label, (num_engine, num_tasks), (den_engine, den_task) in pairs:
        cells = [
            sum(best(num_engine, t, col) for t in num_tasks) / best(den_engine, den_task, col)
            for col in (1, 2)
        ]
        print(f"  {label:<36}{cells[0]:>7.2f}{cells[1]:>8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=DEFAULT_PERSONS)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--repeat", type=int, default=3, help="Timed runs per task after warm-up.")
    ap.add_argument("--rounds", type=int, default=5, help="Fresh processes per engine, in turn.")
    ap.add_argument("--engines", nargs="+", choices=list(ENGINES), default=list(ENGINES))
    args = ap.parse_args()
    if "hand-sql" not in args.engines:
        ap.error("--engines must include hand-sql (the reference the others are checked against)")
    path = ensure_cdm(args.persons, args.seed)
    print(
        f"CDM: {path} ({args.persons:,} persons); per engine {args.rounds} fresh processes, "
        f"each one warm-up then best of {args.repeat}"
    )
    results = run(path, args.repeat, args.rounds, tuple(args.engines))
    problems = check(results)
    report(results)
    if problems:
        print("\nRESULTS DIFFER:\n" + "\n\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print("\nall engines agree: persons, records, cohort rows and attrition are identical")


if __name__ == "__main__":
    main()
