"""Generate a large synthetic OMOP CDM DuckDB file for the cohort benchmark.

Usage::

    .venv/bin/python bench/synth_cdm.py                    # 1,000,000 persons (~20M events)
    .venv/bin/python bench/synth_cdm.py --persons 20000    # a smaller file
    .venv/bin/python bench/synth_cdm.py --force            # rebuild even if cached

The whole population is generated inside DuckDB with SQL: ``range()`` makes the persons and
``unnest(range(n))`` their events; every random draw is a hash of (person, stream, index, seed),
so a file depends only on ``--persons`` and ``--seed`` (not on thread scheduling). The tables
come from :func:`clinnova_explore.cdm.schema.create_cdm_tables` and the vocabulary from
:func:`clinnova_explore.cdm.vocabulary.write_vocabulary`; all concept ids are real entries of
the shipped vocabulary (:mod:`clinnova_explore.cdm.concepts`).

The population: 30% MS, 20% RA, 15% IBD, the rest without a chronic inflammatory disease.
MS patients start a disease-modifying therapy (DMT) some time after diagnosis and go through
one to three treatment lines of 28-day exposures; the first line is high-efficacy for about one
in five, later lines for about one in two. About 5% of MS patients also have one DMT exposure
recorded before their observation starts, and one in eight persons observed for over four
years has two observation periods with a gap between them, so "first exposure in history" and
"inside an observation period" differ.

Files are cached as ``bench/.data/cdm_<persons>_s<seed>.duckdb`` (git-ignored); a file is reused
when its ``cdm_source`` row names the same persons, seed and generator version.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import duckdb
import ibis

from clinnova_explore.cdm import concepts as c
from clinnova_explore.cdm.schema import create_cdm_tables
from clinnova_explore.cdm.vocabulary import write_vocabulary

DATA_DIR = Path(__file__).resolve().parent / ".data"
GENERATOR_VERSION = 2
DEFAULT_PERSONS = 1_000_000
DEFAULT_SEED = 42

PLATFORM_DMT = (c.INTERFERON_BETA_1A, c.GLATIRAMER, c.TERIFLUNOMIDE, c.DIMETHYL_FUMARATE)
HIGH_EFFICACY_DMT = (c.NATALIZUMAB, c.FINGOLIMOD, c.OCRELIZUMAB)
RA_DRUGS = (c.METHOTREXATE, c.ADALIMUMAB, c.ETANERCEPT, c.TOCILIZUMAB, c.TOFACITINIB)
IBD_DRUGS = (
    c.MESALAMINE,
    c.AZATHIOPRINE,
    c.INFLIXIMAB,
    c.ADALIMUMAB,
    c.VEDOLIZUMAB,
    c.USTEKINUMAB,
)
COMORBIDITIES = (
    c.HYPERTENSION,
    c.TYPE_2_DIABETES,
    c.DEPRESSION,
    c.PNEUMONIA,
    c.SEPSIS,
    c.HYPERTENSIVE_DISORDER,
    c.DIABETES_MELLITUS,
)
TABLES = (
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "drug_exposure",
    "measurement",
)


def _pick(ids: tuple[int, ...], draw: str) -> str:
    """SQL choosing one of ``ids`` uniformly with the uniform draw ``draw``."""
    values = ", ".join(str(i) for i in ids)
    return f"[{values}][1 + floor({draw} * {len(ids)})::INT]"


def _description(persons: int, seed: int) -> str:
    return f"clinnova bench synthetic CDM: persons={persons} seed={seed} v{GENERATOR_VERSION}"


def cdm_path(persons: int, seed: int = DEFAULT_SEED, root: Path = DATA_DIR) -> Path:
    """Return the cache path of the file for ``persons`` and ``seed``."""
    return root / f"cdm_{persons}_s{seed}.duckdb"


def _statements(persons: int, seed: int) -> list[str]:
    """The SQL statements that fill the (already created, empty) CDM tables."""
    ehr = c.EHR
    # uniform [0, 1) draws: one per (person, stream) and one per (person, stream, index)
    macros = [
        f"CREATE TEMP MACRO u(p, s) AS ((hash(p, s, {seed}) >> 11)::DOUBLE / 9007199254740992.0)",
        f"CREATE TEMP MACRO ue(p, s, k) AS "
        f"((hash(p, s, k, {seed}) >> 11)::DOUBLE / 9007199254740992.0)",
        # a day offset in [0, n) as INTEGER, ready for DATE + INTEGER
        "CREATE TEMP MACRO days(x, n) AS floor(x * n)::INT",
    ]
    base = f"""
    CREATE TEMP TABLE base AS
    WITH p AS (
        SELECT range + 1 AS person_id FROM range({persons})
    ), s AS (
        SELECT person_id,
            CASE WHEN u(person_id, 1) < 0.62 THEN {c.FEMALE} ELSE {c.MALE} END AS gender,
            1940 + days(u(person_id, 2), 66) AS yob,
            CASE WHEN u(person_id, 3) < 0.30 THEN 'MS' WHEN u(person_id, 3) < 0.50 THEN 'RA'
                 WHEN u(person_id, 3) < 0.65 THEN 'IBD' ELSE 'NONE' END AS disease,
            DATE '2005-01-01' + days(u(person_id, 4), 3650) AS obs_start
        FROM p
    ), e AS (
        SELECT *, least(obs_start + 365 + days(u(person_id, 5), 12 * 365),
                        DATE '2024-12-31') AS obs_end
        FROM s
    )
    SELECT *,
        (obs_end - obs_start)::INT AS span,
        u(person_id, 6) < 0.12 AND obs_end - obs_start > 1460 AS split,
        obs_start + days(0.3 + 0.4 * u(person_id, 7), (obs_end - obs_start)::INT) AS gap_start,
        60 + days(u(person_id, 8), 300) AS gap_len,
        obs_start + days(u(person_id, 9), ((obs_end - obs_start) * 0.6)::INT) AS dx_date
    FROM e
    """
    person = f"""
    INSERT INTO person BY NAME
    SELECT person_id, gender AS gender_concept_id, yob AS year_of_birth,
        1 + days(u(person_id, 20), 12) AS month_of_birth,
        1 + days(u(person_id, 21), 28) AS day_of_birth,
        0 AS race_concept_id, 0 AS ethnicity_concept_id,
        'P' || person_id AS person_source_value,
        CASE WHEN gender = {c.FEMALE} THEN 'F' ELSE 'M' END AS gender_source_value
    FROM base
    """
    observation_period = f"""
    INSERT INTO observation_period BY NAME
    SELECT person_id * 2 AS observation_period_id, person_id,
        obs_start AS observation_period_start_date,
        CASE WHEN split THEN gap_start ELSE obs_end END AS observation_period_end_date,
        {ehr} AS period_type_concept_id
    FROM base
    UNION ALL
    SELECT person_id * 2 + 1, person_id, gap_start + gap_len, obs_end, {ehr}
    FROM base WHERE split
    """
    visits = f"""
    INSERT INTO visit_occurrence BY NAME
    WITH v AS (
        SELECT person_id, obs_start, span, unnest(range(days(u(person_id, 10), 11))) AS k
        FROM base
    ), d AS (
        SELECT *, ue(person_id, 11, k) AS kind,
            obs_start + days(ue(person_id, 12, k), span) AS start_date
        FROM v
    )
    SELECT person_id * 1000 + k AS visit_occurrence_id, person_id,
        CASE WHEN kind < 0.85 THEN {c.OUTPATIENT_VISIT} WHEN kind < 0.95
             THEN {c.INPATIENT_VISIT} ELSE {c.ER_VISIT} END AS visit_concept_id,
        start_date AS visit_start_date,
        CASE WHEN kind >= 0.85 AND kind < 0.95 THEN start_date + 1 + days(ue(person_id, 13, k), 14)
             ELSE start_date END AS visit_end_date,
        {ehr} AS visit_type_concept_id
    FROM d
    """
    dx = {
        "MS": (c.MULTIPLE_SCLEROSIS, c.RRMS, c.RRMS, c.SPMS, c.PPMS),
        "RA": (c.RHEUMATOID_ARTHRITIS, c.SEROPOSITIVE_RA),
        "IBD": (c.CROHNS_DISEASE, c.ULCERATIVE_COLITIS, c.IBD),
    }
    dx_case = " ".join(
        f"WHEN disease = '{d}' THEN {_pick(ids, 'ue(person_id, 31, k)')}" for d, ids in dx.items()
    )
    conditions = f"""
    INSERT INTO condition_occurrence BY NAME
    WITH diag AS (
        SELECT person_id, disease, dx_date, obs_end,
            unnest(range(1 + days(u(person_id, 30), 6))) AS k
        FROM base WHERE disease <> 'NONE'
    ), co AS (
        SELECT person_id, obs_start, span, unnest(range(days(u(person_id, 32), 7))) AS k
        FROM base
    ), rows AS (
        SELECT person_id, k, CASE {dx_case} END AS concept_id,
            CASE WHEN k = 0 THEN dx_date
                 ELSE dx_date + days(ue(person_id, 33, k), (obs_end - dx_date)::INT + 1) END
                AS start_date
        FROM diag
        UNION ALL
        SELECT person_id, 100 + k, {_pick(COMORBIDITIES, "ue(person_id, 34, k)")},
            obs_start + days(ue(person_id, 35, k), span)
        FROM co
    )
    SELECT person_id * 1000 + k AS condition_occurrence_id, person_id,
        concept_id AS condition_concept_id, start_date AS condition_start_date,
        {ehr} AS condition_type_concept_id
    FROM rows
    """
    he = _pick(HIGH_EFFICACY_DMT, "ue(person_id, 42, j)")
    platform = _pick(PLATFORM_DMT, "ue(person_id, 42, j)")
    drugs = f"""
    INSERT INTO drug_exposure BY NAME
    WITH ms AS (
        SELECT person_id, obs_start, obs_end,
            dx_date + days(u(person_id, 40), 400) AS dmt_start,
            60 + days(u(person_id, 41), 600) AS slot,
            1 + days(u(person_id, 43), 3) AS n_lines
        FROM base WHERE disease = 'MS'
    ), lines AS (
        SELECT person_id, obs_end, j, dmt_start + (j * slot)::INT AS line_start,
            least(3 + days(ue(person_id, 44, j), 10), (slot + 27) // 28) AS m,
            CASE WHEN ue(person_id, 45, j) < CASE WHEN j = 0 THEN 0.2 ELSE 0.55 END
                 THEN {he} ELSE {platform} END AS drug
        FROM (SELECT *, unnest(range(n_lines)) AS j FROM ms)
    ), ms_rows AS (
        SELECT person_id, obs_end, j * 100 + i AS k, drug,
            line_start + (i * 28)::INT + days(ue(person_id, 46, j * 100 + i), 4) AS start_date
        FROM (SELECT *, unnest(range(m)) AS i FROM lines)
    ), history AS (
        SELECT person_id, 999 AS k, {_pick(PLATFORM_DMT, "u(person_id, 49)")} AS drug,
            obs_start - 30 - days(u(person_id, 47), 1000) AS start_date
        FROM ms WHERE u(person_id, 48) < 0.05
    ), other AS (
        SELECT person_id, disease, obs_start, span,
            unnest(range(CASE WHEN disease IN ('RA', 'IBD') THEN days(u(person_id, 50), 13)
                              ELSE days(u(person_id, 50), 3) END)) AS k
        FROM base WHERE disease <> 'MS'
    ), other_rows AS (
        SELECT person_id, 500 + k AS k,
            CASE WHEN disease = 'RA' THEN {_pick(RA_DRUGS, "ue(person_id, 51, k)")}
                 WHEN disease = 'IBD' THEN {_pick(IBD_DRUGS, "ue(person_id, 51, k)")}
                 ELSE {c.PREDNISOLONE} END AS drug,
            obs_start + days(ue(person_id, 52, k), span) AS start_date
        FROM other
    ), rows AS (
        SELECT person_id, k, drug, start_date FROM ms_rows WHERE start_date <= obs_end
        UNION ALL SELECT * FROM history
        UNION ALL SELECT * FROM other_rows
    )
    SELECT person_id * 1000 + k AS drug_exposure_id, person_id, drug AS drug_concept_id,
        start_date AS drug_exposure_start_date, start_date + 27 AS drug_exposure_end_date,
        28 AS days_supply, {ehr} AS drug_type_concept_id
    FROM rows
    """
    kinds = {  # concept -> (unit, SQL value from a uniform draw x)
        c.CRP: (c.CANONICAL_UNIT[c.CRP], "round(exp(x * 4.5), 1)"),
        c.HEMOGLOBIN: (c.CANONICAL_UNIT[c.HEMOGLOBIN], "round(10 + 7 * x, 1)"),
        c.BODY_WEIGHT: (c.CANONICAL_UNIT[c.BODY_WEIGHT], "round(45 + 75 * x, 1)"),
        c.EDSS: (c.UNIT_SCORE, "floor(x * 19) / 2"),
        c.DAS28_CRP: (c.UNIT_SCORE, "round(1.5 + 5.5 * x, 2)"),
        c.FECAL_CALPROTECTIN: (c.CANONICAL_UNIT[c.FECAL_CALPROTECTIN], "round(exp(x * 7.6))"),
    }
    special = {"MS": c.EDSS, "RA": c.DAS28_CRP, "IBD": c.FECAL_CALPROTECTIN}
    special_case = " ".join(f"WHEN disease = '{d}' THEN {cid}" for d, cid in special.items())
    unit_case = " ".join(f"WHEN {cid} THEN {unit}" for cid, (unit, _) in kinds.items())
    value_case = " ".join(f"WHEN {cid} THEN {expr}" for cid, (_, expr) in kinds.items())
    general = (c.CRP, c.HEMOGLOBIN, c.BODY_WEIGHT)
    measurements = f"""
    INSERT INTO measurement BY NAME
    WITH m AS (
        SELECT person_id, disease, obs_start, span,
            unnest(range(days(u(person_id, 60), 8))) AS k
        FROM base
    ), r AS (
        SELECT person_id, k, obs_start + days(ue(person_id, 61, k), span) AS d,
            ue(person_id, 62, k) AS x,
            CASE WHEN disease <> 'NONE' AND ue(person_id, 63, k) < 0.4
                 THEN CASE {special_case} END
                 ELSE {_pick(general, "ue(person_id, 64, k)")} END AS concept_id
        FROM m
    )
    SELECT person_id * 1000 + k AS measurement_id, person_id,
        concept_id AS measurement_concept_id, d AS measurement_date,
        {ehr} AS measurement_type_concept_id,
        CASE concept_id {value_case} END AS value_as_number,
        CASE concept_id {unit_case} END AS unit_concept_id
    FROM r
    """
    source = f"""
    INSERT INTO cdm_source BY NAME
    SELECT 'clinnova bench' AS cdm_source_name, 'CLXBENCH' AS cdm_source_abbreviation,
        'clinnova_explore' AS cdm_holder, '{_description(persons, seed)}' AS source_description,
        current_date AS source_release_date, current_date AS cdm_release_date,
        'v5.4' AS cdm_version, 756265 AS cdm_version_concept_id,
        'clinnova subset' AS vocabulary_version
    """
    return [
        *macros,
        base,
        person,
        observation_period,
        visits,
        conditions,
        drugs,
        measurements,
        source,
    ]


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.sql(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def build(path: Path, persons: int, seed: int = DEFAULT_SEED) -> dict[str, int]:
    """Write a new CDM file at ``path`` (replacing it) and return its table row counts."""
    tmp = path.with_suffix(".tmp.duckdb")
    tmp.unlink(missing_ok=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    backend = ibis.duckdb.connect(str(tmp))
    create_cdm_tables(backend)
    write_vocabulary(backend)
    raw: duckdb.DuckDBPyConnection = backend.con
    raw.execute("SET enable_progress_bar = false")
    for statement in _statements(persons, seed):
        raw.execute(statement)
    counts = {t: _count(raw, t) for t in TABLES}
    raw.execute("CHECKPOINT")
    backend.disconnect()
    os.replace(tmp, path)
    return counts


def is_current(path: Path, persons: int, seed: int) -> bool:
    """True when ``path`` exists and was written by this generator for ``persons``/``seed``."""
    if not path.exists():
        return False
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            row = con.sql("SELECT source_description FROM cdm_source").fetchone()
    except duckdb.Error:
        return False
    return row is not None and row[0] == _description(persons, seed)


def ensure_cdm(
    persons: int = DEFAULT_PERSONS, seed: int = DEFAULT_SEED, *, force: bool = False
) -> Path:
    """Return the path of a cached benchmark CDM, generating it first when needed."""
    path = cdm_path(persons, seed)
    if force or not is_current(path, persons, seed):
        t0 = time.perf_counter()
        counts = build(path, persons, seed)
        seconds = time.perf_counter() - t0
        events = sum(n for t, n in counts.items() if t != "person")
        print(f"generated {path} in {seconds:.1f} s: {persons:,} persons, {events:,} events")
        for table, n in counts.items():
            print(f"  {table:<22}{n:>12,}")
        print(f"  file size {path.stat().st_size / 2**20:,.0f} MiB")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=DEFAULT_PERSONS)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--force", action="store_true", help="Rebuild even if a cached file exists.")
    args = ap.parse_args()
    if args.persons < 1:
        ap.error(f"--persons must be at least 1, got {args.persons}")
    path = ensure_cdm(args.persons, args.seed, force=args.force)
    print(path)


if __name__ == "__main__":
    main()
