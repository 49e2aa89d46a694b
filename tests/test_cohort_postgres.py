"""Every shipped cohort gives identical rows and attrition on DuckDB and on PostgreSQL.

One site of the small federation is copied into a throwaway PostgreSQL cluster; each shipped
definition, plus one exercising the remaining features (censoring, censor window, additional
criteria, measurement values, distinct counts, nested groups), is compiled for both backends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ibis
import pytest

from clinnova_explore.catalog import Catalog
from clinnova_explore.cdm import concepts as c
from clinnova_explore.cohort import (
    CohortDefinition,
    builtin_definition,
    builtin_definition_names,
    compile_cohort,
)
from clinnova_explore.pipeline import BuildResult
from clinnova_explore.transfer import copy_cdm
from tests.cohort_reference import normalise
from tests.support import throwaway_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SITE = "freiburg"

EVERYTHING_ELSE = f"""
name: remaining features
concept_sets:
  ms: {{include: [{c.MULTIPLE_SCLEROSIS}]}}
  dmt: {{include: [{c.MS_DMT}]}}
  relapse: {{include: [{{concept_id: {c.MS_RELAPSE}, descendants: false}}]}}
  edss: {{include: [{c.EDSS}]}}
entry:
  events:
    - {{domain: drug, concept_set: dmt}}
    - {{domain: measurement, concept_set: edss, value: {{gte: 4.5}}}}
  observation: {{prior_days: 180, post_days: 30}}
  limit: all
additional_criteria:
  type: any
  criteria:
    - event: {{domain: condition, concept_set: ms}}
      occurrence: {{type: at_least, count: 2, distinct: start_date}}
      start_window: {{start: -730, end: 0}}
  groups:
    - type: at_most
      count: 0
      criteria: [{{event: {{domain: observation, concept_set: relapse}},
                   start_window: {{start: -365, end: -1}}}}]
qualified_limit: all
inclusion_rules:
  - name: adult women or any man over 40
    group:
      type: any
      demographics: [{{age: {{gte: 18}}, sex: [{c.FEMALE}]}}, {{age: {{gt: 40}}}}]
  - name: EDSS measured near index
    group:
      criteria:
        - event: {{domain: measurement, concept_set: edss}}
          start_window: {{start: -90, end: 90}}
          end_window: {{start: -89, end: 91, use_event_end: true}}
expression_limit: all
exit: {{type: fixed_offset, anchor: end, offset_days: 180}}
censoring: [{{domain: observation, concept_set: relapse}}, {{domain: death}}]
collapse: {{pad_days: 30}}
censor_window: {{start: 2014-01-01, end: 2024-06-30}}
"""


@pytest.fixture(scope="module")
def two_sites(
    small_build: BuildResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Catalog, Catalog]]:
    with throwaway_postgres() as url:
        duck = Catalog.load(small_build.catalog_path)
        src = ibis.duckdb.connect(duck.site(SITE).resolved_location(), read_only=True)
        dst = ibis.connect(url)
        copy_cdm(src, dst, src.list_tables())
        src.disconnect()
        dst.disconnect()
        path = Path(tmp_path_factory.mktemp("pgcohort")) / "data_catalog.yaml"
        path.write_text(
            f"sites:\n  - {{id: {SITE}, name: on PostgreSQL, country: DE, backend: postgres,"
            " location_env: CLX_COHORT_PG}\n",
            encoding="utf-8",
        )
        mp = pytest.MonkeyPatch()
        mp.setenv("CLX_COHORT_PG", url)
        pg = Catalog.load(path)
        try:
            yield duck, pg
        finally:
            duck.close()
            pg.close()
            mp.undo()


DEFINITIONS = [*builtin_definition_names(), "everything_else"]


@pytest.mark.parametrize("name", DEFINITIONS)
def test_duckdb_and_postgres_agree(two_sites: tuple[Catalog, Catalog], name: str) -> None:
    duck, pg = two_sites
    defn = (
        CohortDefinition.from_yaml(EVERYTHING_ELSE)
        if name == "everything_else"
        else builtin_definition(name)
    )
    on_duck = compile_cohort(defn, duck.site(SITE))
    on_pg = compile_cohort(defn, pg.site(SITE))
    rows_duck = normalise(on_duck.to_pandas())
    rows_pg = normalise(on_pg.to_pandas())
    assert len(rows_duck) > 0, name
    assert rows_duck.to_dict("records") == rows_pg.to_dict("records")
    att_duck, att_pg = on_duck.attrition(), on_pg.attrition()
    assert att_duck.to_dict("list") == att_pg.to_dict("list")
    assert on_duck.count() == on_pg.count()
    if name == "everything_else":  # every rule selects something and removes something
        assert att_duck.persons.iloc[-1] > 0
        assert att_duck.records.is_monotonic_decreasing
        assert att_duck.records.iloc[-1] < att_duck.records.iloc[0]
