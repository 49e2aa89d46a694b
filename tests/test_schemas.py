"""Declared payload schemas: every real local step's payload validates; anything else is rejected.

The CDM analyses run on the 800-person federation's DuckDB files; the table steps on real
TableSites holding drawn rows. Rejections name analysis, site, table and column, never a value.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from clinnova_explore.analysis import contract
from clinnova_explore.analysis.characterize import Characterize, CharacterizeSpec
from clinnova_explore.analysis.counts import COHORT_COUNTS
from clinnova_explore.analysis.effects.federated import MomentsSpec, MomentsStep
from clinnova_explore.analysis.incidence import IncidenceAnalysis, IncidenceSpec
from clinnova_explore.analysis.pathways import PathwaysAnalysis, PathwaysSpec
from clinnova_explore.analysis.payload import Payload, PayloadError
from clinnova_explore.analysis.survival.presets import comparison
from clinnova_explore.catalog import Catalog, DisclosurePolicy
from clinnova_explore.cdm import concepts as c
from clinnova_explore.cohort import builtin_definition
from clinnova_explore.cohort.model import ConceptSet
from clinnova_explore.federated.schemas import (
    SCHEMAS,
    PayloadSchema,
    TableSchema,
    identifier_like,
    schema_for,
    validate_payload,
)
from clinnova_explore.federated.steps import (
    CountSpec,
    CountStep,
    CoxRound,
    CoxStep,
    DesignSpec,
    DesignStep,
    EventTableSpec,
    EventTableStep,
    LogisticRound,
    LogisticStep,
)
from clinnova_explore.federated.table_site import TableSite
from clinnova_explore.pipeline import BuildResult
from clinnova_explore.report.tte_attrition import TteAttritionStep

POLICY = DisclosurePolicy(min_cell_count=5, min_cohort_size=10, max_params_per_obs=0.33)


def release(step: Any, spec: Any, site: Any) -> Payload:
    """The site side of the contract (policy gate, local step, label check)."""
    return contract.release(step, spec, site)


def _rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "person_id": np.arange(n) + 1000,
            "t": rng.integers(1, 400, n).astype(float),
            "e": rng.integers(0, 2, n),
            "arm": rng.integers(0, 2, n),
            "sex": rng.choice(["F", "M"], n),
            "age": rng.normal(50, 12, n).round(),
            "w": rng.uniform(0.5, 2.0, n),
            "site": "a",
        }
    )


@pytest.fixture(scope="module")
def site() -> TableSite:
    return TableSite("a", POLICY, _rows(240, 1))


def _table_steps() -> list[tuple[Any, Any]]:
    return [
        (EventTableStep(), EventTableSpec("t", "e", by=("arm",))),
        (EventTableStep(), EventTableSpec("t", "e", by=("sex",), weights="w")),
        (DesignStep("cox"), DesignSpec(("t", "e", "age", "sex"), ("age", "sex"), event="e")),
        (DesignStep("logistic"), DesignSpec(("arm", "age"), ("age",))),
        (CoxStep(), CoxRound("t", "e", ("age", "arm"), (), ("sex",), (0.01, -0.2))),
        (LogisticStep(), LogisticRound("arm", ("age",), (), (0.1, 0.0))),
        (CountStep(), CountSpec(by=("arm", "sex"), event="e")),
        (CountStep(), CountSpec()),
        (MomentsStep(), MomentsSpec("arm", ("age", "e"), rows="t", levels="site")),
        (MomentsStep(), MomentsSpec("arm", ("age",), weights="w")),
    ]


@pytest.mark.parametrize(("step", "spec"), _table_steps(), ids=lambda x: type(x).__name__)
def test_each_table_step_payload_validates(site: TableSite, step: Any, spec: Any) -> None:
    payload = release(step, spec, site)
    assert payload.refused is None
    assert validate_payload(payload, step, POLICY) is payload
    decoded = Payload.from_arrow(payload.to_arrow())  # the coordinator may check it again
    assert validate_payload(decoded, step, POLICY) is decoded


@pytest.fixture(scope="module")
def catalog(small_build: BuildResult) -> Catalog:
    return Catalog.load(small_build.catalog_path)


def _cdm_steps() -> list[tuple[Any, Any]]:
    ms = builtin_definition("ms_diagnosis")
    drugs = {
        "natalizumab": c.NATALIZUMAB,
        "fingolimod": c.FINGOLIMOD,
        "interferon": c.INTERFERON_BETA_1A,
    }
    events = {k: ConceptSet(include=(v,)) for k, v in drugs.items()}
    return [
        (COHORT_COUNTS, ms),
        (Characterize(), CharacterizeSpec(target=ms)),
        (
            IncidenceAnalysis(),
            IncidenceSpec(ms, builtin_definition("ms_relapse"), groupings=((), ("sex",))),
        ),
        (PathwaysAnalysis(), PathwaysSpec(ms, events)),  # type: ignore[arg-type]
        (TteAttritionStep(), comparison("ms_high_efficacy_vs_platform")),
    ]


@pytest.mark.parametrize(("step", "spec"), _cdm_steps(), ids=lambda x: type(x).__name__)
def test_each_cdm_analysis_payload_validates(catalog: Catalog, step: Any, spec: Any) -> None:
    released = 0
    for source in catalog.sites[:3]:
        payload = release(step, spec, source)
        validate_payload(payload, step, source.policy)
        released += payload.refused is None
    assert released >= 1


def test_every_local_step_in_the_package_has_a_schema() -> None:
    steps = [s for s, _ in _table_steps()] + [s for s, _ in _cdm_steps()]
    keys = {f"{type(s).__module__}.{type(s).__qualname__}" for s in steps}
    assert keys == set(SCHEMAS)
    for step in steps:
        assert isinstance(schema_for(step), PayloadSchema)


# ---------------------------------------------------------------------- rejections


def _counts(site: TableSite) -> Payload:
    return release(CountStep(), CountSpec(by=("arm",)), site)


def _with_table(payload: Payload, name: str, df: pd.DataFrame) -> Payload:
    return Payload(payload.analysis, payload.site, {**payload.tables, name: df}, payload.values)


def test_an_extra_column_is_rejected(site: TableSite) -> None:
    design = release(DesignStep("cox"), DesignSpec(("age",), ("age",)), site)
    levels = design.tables["levels"].assign(extra="x")
    with pytest.raises(
        PayloadError,
        match=r"analysis 'cox' at site 'a', table 'levels', column 'extra': not declared",
    ):
        validate_payload(_with_table(design, "levels", levels), DesignStep("cox"))


def test_a_person_level_table_is_rejected(site: TableSite) -> None:
    payload = _counts(site)
    rows = site.frame(["person_id", "t", "e"])
    with pytest.raises(PayloadError, match=r"site 'a': table 'rows' is not declared"):
        validate_payload(_with_table(payload, "rows", rows), CountStep())
    keyed = payload.tables["counts"].assign(person_id=np.arange(len(payload.tables["counts"])))
    with pytest.raises(PayloadError, match=r"column 'person_id': looks like a person identifier"):
        validate_payload(_with_table(payload, "counts", keyed), CountStep())
    dated = payload.tables["counts"].assign(index=pd.Timestamp("2020-01-01"))
    with pytest.raises(PayloadError, match=r"column 'index': a key column of dtype datetime64"):
        validate_payload(_with_table(payload, "counts", dated), CountStep())


def test_a_small_cell_is_rejected_without_its_value(site: TableSite) -> None:
    payload = _counts(site)
    small = payload.tables["counts"].copy()
    small.loc[0, "persons"] = 3
    bad = _with_table(payload, "counts", small)
    validate_payload(bad, CountStep())  # without a policy only the shape is checked
    with pytest.raises(PayloadError) as info:
        validate_payload(bad, CountStep(), POLICY)
    message = str(info.value)
    assert re.search(r"analysis 'cohort' at site 'a', table 'counts', column 'persons'", message)
    assert "min_cell_count" in message and "3" not in message
    design = release(DesignStep("cox"), DesignSpec(("e",), (), event="e"), site)
    few = Payload("cox", "a", design.tables, {"n": 7, "events": 120})
    with pytest.raises(PayloadError, match=r"value 'n': a total below min_cohort_size"):
        validate_payload(few, DesignStep("cox"), POLICY)
    events = Payload("cox", "a", design.tables, {"n": 240, "events": 2})
    with pytest.raises(PayloadError, match=r"value 'events': a count in \(0, min_cell_count\)"):
        validate_payload(events, DesignStep("cox"), POLICY)
    validate_payload(
        Payload("cox", "a", design.tables, {"n": 240, "events": None}), DesignStep("cox"), POLICY
    )


def test_kinds_values_and_tables_are_checked(site: TableSite) -> None:
    payload = _counts(site)
    floats = payload.tables["counts"].astype({"persons": "float64"})
    with pytest.raises(PayloadError, match=r"column 'persons': dtype float64 is not a count"):
        validate_payload(_with_table(payload, "counts", floats), CountStep())
    valued = Payload("cohort", "a", payload.tables, {"note": "x"})
    with pytest.raises(PayloadError, match=r"value 'note' is not declared"):
        validate_payload(valued, CountStep())
    with pytest.raises(PayloadError, match=r"declared table\(s\) \['counts'\] are missing"):
        validate_payload(Payload("cohort", "a", {}), CountStep())
    refused = Payload("cohort", "a", refused="min_cohort_size")
    assert validate_payload(refused, CountStep(), POLICY) is refused


def test_weighted_event_counts_are_not_checked_as_counts(site: TableSite) -> None:
    spec = EventTableSpec("t", "e", weights="w")
    payload = release(EventTableStep(), spec, site)
    events = payload.tables["events"]
    assert events["n_events"].dtype == np.float64
    tweaked = events.copy()
    tweaked.loc[0, "n_events"] = 0.7  # a weighted sum may be small
    validate_payload(_with_table(payload, "events", tweaked), EventTableStep(), POLICY)
    counted = release(EventTableStep(), EventTableSpec("t", "e"), site)
    small = counted.tables["events"].copy()
    small.loc[0, "n_censored"] = 1
    with pytest.raises(PayloadError, match=r"table 'events', column 'n_censored'"):
        validate_payload(_with_table(counted, "events", small), EventTableStep(), POLICY)


def test_an_analysis_without_a_schema_is_not_released() -> None:
    class Homemade:
        name = "cohort"

    with pytest.raises(PayloadError, match=r"analysis 'cohort' \(.*Homemade\) has no declared"):
        validate_payload(Payload("cohort", "a"), Homemade())

    class Declared:
        name = "cohort"
        payload_schema: ClassVar[PayloadSchema] = PayloadSchema(
            {"tally": TableSchema({"n": "count"})}
        )

    ok = Payload("cohort", "a", {"tally": pd.DataFrame({"n": [0, 12]})})
    assert validate_payload(ok, Declared(), POLICY) is ok
    with pytest.raises(PayloadError, match="column 'n'"):
        validate_payload(
            Payload("cohort", "a", {"tally": pd.DataFrame({"n": [4]})}), Declared(), POLICY
        )


def test_identifier_like_names() -> None:
    flagged = ["person_id", "subject_id", "Patient", "id", "visit_date", "dob", "person_source"]
    fine = ["arm", "sex", "age_group", "drug_concept_id", "persons", "stratum", "paid"]
    assert all(identifier_like(n) for n in flagged)
    assert not any(identifier_like(n) for n in fine)
