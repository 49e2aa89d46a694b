"""Property tests of the disclosure policy over random cohorts (hypothesis, derandomized).

Random small federations (``Federation.from_tables``: random durations, events and groups per
site, random policies) go through the real site steps and the real boundary; every released
payload is checked cell by cell: no count in ``(0, min_cell_count)``, no total below
``min_cohort_size``, and a payload that does not grow with the number of persons beyond its
binned table.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from clinnova_explore.analysis.payload import Payload
from clinnova_explore.catalog import DisclosurePolicy
from clinnova_explore.disclosure import suppress_counts
from clinnova_explore.federated import Federation
from clinnova_explore.federated.bins import binned_event_table
from clinnova_explore.federated.schemas import validate_payload
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

SETTINGS = settings(
    derandomize=True,
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

policies = st.builds(
    lambda k, m, days, extra, p: DisclosurePolicy(
        min_cell_count=k,
        min_cohort_size=m,
        km_time_bin_days=days,
        km_min_events_per_bin=None if extra is None else k + extra,
        max_params_per_obs=p,
        differencing_guard=False,  # the guard has its own tests; here every query is fresh
    ),
    st.integers(1, 8),
    st.integers(1, 20),
    st.sampled_from([1, 7, 30]),
    st.none() | st.integers(0, 4),
    st.sampled_from([0.05, 0.1, 0.33, 1.0]),
)


def _rows(seed: int, n: int, max_time: int, groups: int, first_id: int = 0) -> pd.DataFrame:
    """``n`` persons with integer durations in ``0..max_time``, events and a group."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "person_id": np.arange(first_id, first_id + n),
            "t": rng.integers(0, max_time + 1, n).astype(np.float64),
            "e": rng.integers(0, 2, n),
            "g": rng.integers(0, groups, n),
        }
    )


@st.composite
def federations(draw: st.DrawFn) -> tuple[dict[str, pd.DataFrame], int, int]:
    """``({site: rows}, max_time, groups)`` for one to three sites of 0 to 90 persons."""
    max_time = draw(st.integers(1, 120))
    groups = draw(st.integers(1, 3))
    tables = {}
    for i in range(draw(st.integers(1, 3))):
        n = draw(st.integers(0, 90))
        tables[f"s{i}"] = _rows(draw(st.integers(0, 2**32 - 1)), n, max_time, groups)
    return tables, max_time, groups


def _no_small(values: pd.Series | list[Any], floor: int) -> bool:
    arr = pd.Series(values, dtype="Float64").dropna().to_numpy(dtype=float)
    return not bool(((arr > 0) & (arr < floor)).any())


def _released(step: Any, spec: Any, tables: dict[str, pd.DataFrame], policy: Any) -> list[Payload]:
    fed = Federation.from_tables(tables, policy=policy)
    try:
        payloads = fed.collect(step, spec)
    finally:
        fed.close()
    for payload in payloads:
        validate_payload(payload, step, policy)
    return payloads


STEPS: list[tuple[Any, Any]] = [
    (EventTableStep(), EventTableSpec("t", "e", by=("g",))),
    (CountStep(), CountSpec(by=("g",), event="e")),
    (DesignStep("cox"), DesignSpec(("t", "e", "g"), ("g",), event="e")),
    (DesignStep("logistic"), DesignSpec(("e", "g"), ("g",), event="e")),
    (CoxStep(), CoxRound("t", "e", ("g",), (), (), (0.1,))),
    (LogisticStep(), LogisticRound("e", ("g",), (), (0.0, 0.2))),
]


@SETTINGS
@given(federations(), policies)
def test_no_released_payload_holds_a_small_cell(
    fed: tuple[dict[str, pd.DataFrame], int, int], policy: DisclosurePolicy
) -> None:
    tables, _, _ = fed
    k, m = policy.min_cell_count, policy.min_cohort_size
    for step, spec in STEPS:
        for payload in _released(step, spec, tables, policy):
            n = len(tables[payload.site])
            event(f"{type(step).__name__} {payload.refused or 'released'}")
            if payload.refused is not None:
                assert payload.refused in ("min_cohort_size", "max_params_per_obs")
                assert not payload.tables and not payload.values
                continue
            if step.name != "cohort" or n > 0:  # a count may say "nobody here"
                assert n >= m
            if isinstance(step, EventTableStep):
                events = payload.tables["events"]
                assert _no_small(events["n_events"], k) and _no_small(events["n_censored"], k)
            elif isinstance(step, CountStep):
                counts = payload.tables["counts"]
                assert _no_small(counts["persons"], k) and _no_small(counts["events"], k)
                hidden = counts["persons"].isna() | counts["events"].isna()
                assert (counts["suppressed"] == hidden).all()
            elif isinstance(step, DesignStep):
                assert payload.values["n"] == n
                assert _no_small([payload.values["events"]], k)
            else:  # model statistics carry no counts at all
                assert list(payload.tables) == ["stats"]
                assert set(payload.tables["stats"]["term"]) <= {"loglik", "score", "information"}


@settings(SETTINGS, max_examples=20)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(20, 100),
    st.integers(1, 60),
    st.integers(1, 3),
    policies,
)
def test_payloads_do_not_grow_with_the_number_of_persons(
    seed: int, n: int, max_time: int, groups: int, policy: DisclosurePolicy
) -> None:
    """Doubling, then multiplying by five, the persons (durations from the same bounded set)
    leaves every released table within the number of bins times groups."""
    policy = policy.model_copy(update={"min_cohort_size": 1})
    days = policy.km_time_bin_days
    bins = math.ceil(max_time / days) + 1  # time 0 and the end of every bin
    sizes = {}
    for factor in (1, 2, 5):
        rows = pd.concat(
            [_rows(seed + i, n, max_time, groups, first_id=i * n) for i in range(factor)],
            ignore_index=True,
        )
        shapes = {}
        for step, spec in STEPS:
            (payload,) = _released(step, spec, {"a": rows}, policy)
            if payload.refused is None:
                shapes[type(step).__name__ + step.name] = {
                    t: len(df) for t, df in payload.tables.items()
                }
        assert shapes["EventTableStepsurvival"]["events"] <= bins * groups
        assert shapes["CountStepcohort"]["counts"] <= groups
        assert shapes["DesignStepcox"]["levels"] == 0  # numeric covariate: no levels
        sizes[factor] = shapes
    for name, shape in sizes[5].items():
        if name.startswith(("CoxStep", "LogisticStep")):  # fixed by the number of coefficients
            assert shape == sizes[1].get(name, shape)


@SETTINGS
@given(federations(), policies)
def test_event_tables_obey_the_minimum_events_per_bin(
    fed: tuple[dict[str, pd.DataFrame], int, int], policy: DisclosurePolicy
) -> None:
    """Every released event or censoring count is 0 or at least ``km_min_count``, and no
    event is lost: released events plus those of unreleased groups are all events."""
    tables, _, _ = fed
    floor = policy.km_min_count
    for rows in tables.values():
        table, _, dropped = binned_event_table(
            rows,
            duration="t",
            event="e",
            by=("g",),
            bin_days=policy.km_time_bin_days,
            min_cell_count=floor,
        )
        assert _no_small(table["n_events"], floor) and _no_small(table["n_censored"], floor)
        kept = rows[rows["g"].isin(table["g"])]
        assert int(table["n_events"].sum()) == int(kept["e"].sum())
        assert int(table["n_censored"].sum()) == int((kept["e"] == 0).sum())
        assert len(dropped) == rows["g"].nunique() - table["g"].nunique()
        assert (np.asarray(table["time"]) % policy.km_time_bin_days == 0).all()


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 30)), min_size=1, max_size=25),
    st.integers(2, 10),
)
def test_suppression_leaves_no_hidden_cell_recoverable(
    cells: list[tuple[str, int]], k: int
) -> None:
    """Within each group: visible cells are unchanged and never small; hidden cells, which a
    group total minus the visible cells would sum up, are never a lone cell, a small sum or
    all ones, unless no visible non-zero cell was left to hide with them."""
    df = pd.DataFrame(cells, columns=["g", "n"])
    out = suppress_counts(df, ["n"], k, group_by=["g"])
    assert (out["suppressed"] == out["n"].isna()).all()
    for g, part in out.groupby("g"):
        src = df.loc[df["g"] == g, "n"]
        hidden = part["n"].isna().to_numpy()
        visible = src[~hidden]
        assert (part["n"][~hidden].astype(int) == visible).all()
        assert not ((visible > 0) & (visible < k)).any()
        assert (src[hidden] > 0).all()  # zeros are never hidden
        h, total = int(hidden.sum()), int(src[hidden].sum())
        if h and (h == 1 or total < k or total == h):
            assert not (visible > 0).any()


def test_suppression_hides_a_partner_for_two_ones() -> None:
    """Two hidden ones beside a released total would both be known: a third cell goes too."""
    out = suppress_counts(pd.DataFrame({"n": [1, 1, 30, 44]}), ["n"], 5)
    assert out["n"].isna().tolist() == [True, True, True, False]
    kept = suppress_counts(pd.DataFrame({"n": [2, 4, 30]}), ["n"], 5)
    assert kept["n"].isna().tolist() == [True, True, False]  # 2 + 4: nothing pinned down
