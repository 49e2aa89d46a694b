"""The analysis contract: exact payload encodings, the site boundary, combine helpers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from clinnova_explore.analysis import (
    AnalysisResult,
    InProcessRunner,
    Moments,
    Payload,
    PayloadError,
    Provenance,
    combine_counts,
    combine_moments,
    refuse,
    refuse_small_cohort,
    run,
    spec_hashes,
    suppress,
    suppressed_cells,
)
from clinnova_explore.catalog import Catalog, DisclosurePolicy
from clinnova_explore.federated.schemas import PayloadSchema, TableSchema
from clinnova_explore.pipeline import BuildResult

INT64 = st.integers(-(2**63), 2**63 - 1)
TIMES = st.integers(-(2**62), 2**62)  # clear of NaT (the smallest int64)
TEXT = st.text(max_size=8)
KINDS = [
    "int64",
    "Int64",
    "float64",
    "Float64",
    "bool",
    "boolean",
    "string[python]",
    "string[pyarrow]",
    "object:str",
    "object:date",
    "datetime64[s]",
    "datetime64[ms]",
    "datetime64[us]",
    "datetime64[ns]",
]
CELLS: dict[str, st.SearchStrategy[Any]] = {
    "int64": INT64,
    "Int64": st.none() | INT64,
    "float64": st.floats(),
    "Float64": st.none() | st.floats(),
    "bool": st.booleans(),
    "boolean": st.none() | st.booleans(),
    "string[python]": st.none() | TEXT,
    "string[pyarrow]": st.none() | TEXT,
    "object:str": st.none() | TEXT,
    "object:date": st.none() | st.dates(),
    **{f"datetime64[{u}]": st.none() | TIMES for u in ("s", "ms", "us", "ns")},
}


def build_column(kind: str, cells: list[Any]) -> Any:
    """A column of the given kind, built with plain pandas/numpy constructors."""
    missing = np.array([c is None for c in cells], dtype=bool)
    if kind in ("int64", "float64", "bool"):
        return np.array(cells, dtype=kind)
    if kind == "Int64":
        return pd.array(cells, dtype="Int64")
    if kind == "Float64":
        values = np.array([0.0 if c is None else c for c in cells], dtype=np.float64)
        return pd.arrays.FloatingArray(values, missing)
    if kind == "boolean":
        return pd.array(cells, dtype="boolean")
    if kind.startswith("string["):
        return pd.array(cells, dtype=pd.StringDtype(kind[7:-1]))
    if kind.startswith("datetime64["):
        ticks = np.array([0 if c is None else c for c in cells], dtype=np.int64)
        return np.where(missing, np.datetime64("NaT"), ticks.view(kind)).astype(kind)
    column = np.empty(len(cells), dtype=object)
    column[:] = cells
    return column


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    rows = draw(st.integers(0, 6))
    names = draw(st.lists(st.text(min_size=1, max_size=6), max_size=6, unique=True))
    data = {}
    for name in names:
        kind = draw(st.sampled_from(KINDS))
        data[name] = build_column(kind, draw(st.lists(CELLS[kind], min_size=rows, max_size=rows)))
    return pd.DataFrame(data, index=pd.RangeIndex(rows))


SCALARS = st.none() | st.booleans() | INT64 | st.floats() | TEXT
PAYLOADS = st.builds(
    Payload,
    analysis=st.text(min_size=1, max_size=8),
    site=st.text(min_size=1, max_size=8),
    tables=st.dictionaries(st.text(min_size=1, max_size=6), frames(), max_size=3),
    values=st.dictionaries(st.text(min_size=1, max_size=6), SCALARS, max_size=5),
)


def float_bits(x: float) -> bytes:
    return struct.pack("<d", x)


def assert_same_column(a: pd.Series, b: pd.Series) -> None:
    """Independent exactness check: dtype, missing positions and every value's bits."""
    assert str(a.dtype) == str(b.dtype)
    assert type(a.array) is type(b.array)
    if isinstance(a.array, pd.arrays.FloatingArray | pd.arrays.IntegerArray):
        np.testing.assert_array_equal(a.array._mask, b.array._mask)
        keep = ~a.array._mask
        assert a.array._data[keep].tobytes() == b.array._data[keep].tobytes()
    elif a.dtype.kind in "fiubM":
        assert a.to_numpy().tobytes() == b.to_numpy().tobytes()
    else:
        assert [(type(x), x) for x in a] == [(type(y), y) for y in b]


def assert_same_payload(a: Payload, b: Payload) -> None:
    assert (a.analysis, a.site, a.refused) == (b.analysis, b.site, b.refused)
    assert list(a.values) == list(b.values)
    for key, x in a.values.items():
        y = b.values[key]
        assert type(x) is type(y)
        if isinstance(x, float) and isinstance(y, float):
            assert float_bits(x) == float_bits(y)
        else:
            assert x == y
    assert list(a.tables) == list(b.tables)
    for name, df in a.tables.items():
        other = b.tables[name]
        assert list(df.columns) == list(other.columns) and len(df) == len(other)
        assert isinstance(other.index, pd.RangeIndex)
        for col in df.columns:
            assert_same_column(df[col], other[col])


# ---------------------------------------------------------------------- round trips


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PAYLOADS)
def test_random_payloads_round_trip_exactly_in_json_and_arrow(payload: Payload) -> None:
    for back in (Payload.from_json(payload.to_json()), Payload.from_arrow(payload.to_arrow())):
        assert_same_payload(payload, back)
        assert back.equals(payload)


def test_special_floats_and_missing_values_keep_their_identity() -> None:
    odd_nan = struct.unpack("<d", bytes.fromhex("010000000000f8ff"))[0]
    df = pd.DataFrame(
        {
            "x": [-0.0, np.inf, -np.inf, odd_nan, 5e-324, 0.1 + 0.2],
            "y": pd.arrays.FloatingArray(
                np.array([np.nan, 1.5, 0.0, 2.0, np.nan, -0.0]),
                np.array([False, False, True, False, True, False]),
            ),
        }
    )
    payload = Payload("a", "s", {"t": df}, {"nan": odd_nan, "neg0": -0.0})
    doc = orjson.loads(payload.to_json())
    data = doc["tables"]["t"]["columns"]
    assert data[0]["data"][:4] == [-0.0, "Infinity", "-Infinity", "NaN:fff8000000000001"]
    assert data[1]["data"][:3] == ["NaN", 1.5, None]  # NaN is a value, None is <NA>
    for back in (Payload.from_json(payload.to_json()), Payload.from_arrow(payload.to_arrow())):
        assert_same_payload(payload, back)
        y = back.tables["t"]["y"]
        assert y.isna().tolist() == [False, False, True, False, True, False]
        assert np.isnan(y.array._data[0])


def test_payload_keeps_its_own_copies_and_refuses_rows_of_objects() -> None:
    df = pd.DataFrame({"n": [1, 2]})
    payload = Payload("a", "s", {"t": df})
    df.loc[0, "n"] = 99
    assert payload.tables["t"]["n"].tolist() == [1, 2]
    with pytest.raises(TypeError):
        payload.tables["u"] = df  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        payload.site = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tables": {"t": pd.DataFrame({"c": pd.Categorical(["a"])})}}, "column 'c'.*category"),
        ({"tables": {"t": pd.DataFrame({"c": ["a", 1]})}}, "column 'c' holds int"),
        ({"tables": {"t": pd.DataFrame({"c": ["a", np.nan]})}}, "holds float value nan"),
        ({"tables": {"t": pd.DataFrame({"c": [1]}, index=[5])}}, "default RangeIndex"),
        ({"tables": {"t": pd.DataFrame({0: [1]})}}, "column names"),
        ({"tables": {"t": [1, 2]}}, "expected a pandas DataFrame"),
        ({"tables": {"t": pd.DataFrame({"c": pd.array([1], dtype="Int32")})}}, "Int32"),
        ({"values": {"v": 2**63}}, "does not fit in int64"),
        ({"values": {"v": [1]}}, "list is not int"),
        ({"values": {"v": 1}, "refused": "min_cohort_size"}, "refused payload must carry"),
    ],
)
def test_construction_rejects_what_cannot_travel(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        Payload("cohort", "basel", **kwargs)


def test_numpy_scalars_become_python_values() -> None:
    values = {"i": np.int64(3), "f": np.float64(0.5), "b": np.bool_(True)}
    p = Payload("a", "s", values=values)  # type: ignore[arg-type]
    assert [type(v) for v in p.values.values()] == [int, float, bool]


def good_json() -> dict[str, Any]:
    frame = pd.DataFrame({"n": pd.array([3, None], dtype="Int64"), "d": [dt.date(2020, 1, 2)] * 2})
    return orjson.loads(Payload("cohort", "basel", {"t": frame}, {"v": 1.5}).to_json())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("site"), "fields .* differ"),
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d.update(site=3), "`site` must be str"),
        (lambda d: d["tables"]["t"]["columns"][0].update(dtype="int8"), "unknown dtype 'int8'"),
        (lambda d: d["tables"]["t"]["columns"][0]["data"].pop(), "2 data cells"),
        (lambda d: d["tables"]["t"]["columns"][0]["data"].__setitem__(0, 1.0), "'n'.*1.0 is not"),
        (lambda d: d["tables"]["t"]["columns"][1]["data"].__setitem__(0, "2020-13-01"), "ISO"),
        (lambda d: d["values"]["v"].update(value="NaN:0000000000000001"), "not a float"),
        (lambda d: d["values"]["v"].update(type="float", value=None), "None is not a float"),
        (lambda d: d["values"].update(w=5), "value 'w': expected"),
    ],
)
def test_json_decoding_names_what_is_malformed(edit: Any, message: str) -> None:
    doc = good_json()
    edit(doc)
    with pytest.raises(PayloadError, match=message):
        Payload.from_json(orjson.dumps(doc))


def test_json_and_arrow_decoding_reject_garbage() -> None:
    with pytest.raises(PayloadError, match="not valid JSON"):
        Payload.from_json(b"{nope")
    good = Payload("cohort", "basel", {"t": pd.DataFrame({"n": [1]})}).to_arrow()
    with pytest.raises(PayloadError, match="not a readable Arrow IPC stream"):
        Payload.from_arrow(good[: len(good) // 2])
    foreign = pa.table({"kind": ["x"]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, foreign.schema) as writer:
        writer.write_table(foreign)
    with pytest.raises(PayloadError, match="not a clinnova_explore payload"):
        Payload.from_arrow(sink.getvalue().to_pybytes())


def test_arrow_decoding_checks_column_types_against_their_tags() -> None:
    # a table whose column claims Int64 but carries strings
    inner = pa.table(
        {"n": pa.array(["x"])},
        schema=pa.schema(
            [pa.field("n", pa.string(), metadata={"dtype": "Int64"})], metadata={"rows": "1"}
        ),
    )
    payload = Payload("cohort", "basel", {"t": pd.DataFrame({"n": [1]})})
    envelope = pa.ipc.open_stream(payload.to_arrow()).read_all()
    rows = envelope.to_pylist()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, inner.schema) as writer:
        writer.write_table(inner)
    rows[1]["data"] = sink.getvalue().to_pybytes()
    forged = pa.Table.from_pylist(rows, schema=envelope.schema)
    out = pa.BufferOutputStream()
    with pa.ipc.new_stream(out, forged.schema) as writer:
        writer.write_table(forged)
    with pytest.raises(
        PayloadError, match=r"table 't', column 'n'.*does not match dtype tag 'Int64'"
    ):
        Payload.from_arrow(out.getvalue().to_pybytes())


# ---------------------------------------------------------------------- the boundary


@dataclasses.dataclass
class Echo:
    """A test analysis: persons by gender at each site; remembers what crossed."""

    payload_schema: ClassVar[PayloadSchema] = PayloadSchema(
        {"by_gender": TableSchema({"gender_concept_id": "integer", "n": "count"})},
        {"spec": "text"},
    )
    name: str = "cohort"
    sent: list[Payload] = dataclasses.field(default_factory=list)
    received: list[Payload] = dataclasses.field(default_factory=list)

    def local(self, site: Any, spec: str) -> Payload:
        person = site.table("person")
        counts = person.group_by("gender_concept_id").aggregate(n=person.count())
        frame = counts.order_by("gender_concept_id").to_pandas().reset_index(drop=True)
        payload = Payload(self.name, site.id, {"by_gender": frame}, {"spec": spec})
        self.sent.append(payload)
        return payload

    def combine(self, payloads: Sequence[Payload], spec: str, provenance: Provenance) -> Any:
        self.received.extend(payloads)
        return provenance


@pytest.fixture(scope="module")
def catalog(small_build: BuildResult) -> Catalog:
    return Catalog.load(small_build.catalog_path)


@pytest.mark.parametrize("transport", ["arrow", "json"])
def test_payloads_cross_a_real_boundary(catalog: Catalog, transport: str) -> None:
    echo = Echo()
    runner = InProcessRunner()
    provenance = run(echo, "spec-1", catalog, transport=transport, runner=runner)
    assert [p.site for p in echo.received] == catalog.site_ids
    for sent, got in zip(echo.sent, echo.received, strict=True):
        assert got is not sent
        assert got.tables["by_gender"] is not sent.tables["by_gender"]
        for col in sent.tables["by_gender"]:
            a, b = sent.tables["by_gender"][col].to_numpy(), got.tables["by_gender"][col].to_numpy()
            assert not np.shares_memory(a, b)
        assert_same_payload(sent, got)
    # what crossed is what an independent count per site gives
    for site, got in zip(catalog, echo.received, strict=True):
        persons = site.table("person").to_pandas()
        expected = persons.groupby("gender_concept_id").size()
        assert (
            got.tables["by_gender"].set_index("gender_concept_id")["n"].to_dict()
            == expected.to_dict()
        )
    assert [t.site for t in runner.traffic] == catalog.site_ids
    assert all(t.transport == transport and t.nbytes > 0 for t in runner.traffic)
    assert provenance.transport == transport and provenance.mode == "federated"
    assert provenance.sites == tuple(catalog.site_ids)
    assert provenance.catalog == str(catalog.path)


def test_transport_changes_the_bytes_not_the_payloads(catalog: Catalog) -> None:
    sizes = {}
    received = {}
    for transport in ("arrow", "json"):
        echo, runner = Echo(), InProcessRunner()
        run(echo, "s", catalog, transport=transport, runner=runner)
        sizes[transport] = [t.nbytes for t in runner.traffic]
        received[transport] = echo.received
    assert sizes["arrow"] != sizes["json"]
    for a, b in zip(received["arrow"], received["json"], strict=True):
        assert_same_payload(a, b)


def test_a_site_that_disallows_the_analysis_refuses_it(catalog: Catalog, tmp_path: Path) -> None:
    strict = DisclosurePolicy(allowed_analyses=("characterize",))
    sites = [s.model_copy(update={"policy": strict}) if s.id == "basel" else s for s in catalog]
    echo = Echo()
    provenance = run(echo, "s", sites)
    refused = [p for p in echo.received if p.refused]
    assert [(p.site, p.refused, dict(p.tables)) for p in refused] == [
        ("basel", "allowed_analyses", {})
    ]
    assert "basel" not in [p.site for p in echo.sent]  # local() never ran there
    assert dict(provenance.refused) == {"basel": "allowed_analyses"}


def test_a_payload_must_name_its_own_site(catalog: Catalog) -> None:
    class Liar(Echo):
        def local(self, site: Any, spec: str) -> Payload:
            return Payload(self.name, "elsewhere", {})

    with pytest.raises(PayloadError, match=r"at site 'luxembourg'.*labelled site 'elsewhere'"):
        run(Liar(), "s", catalog)


def test_errors_in_a_local_step_name_the_site(catalog: Catalog) -> None:
    class Broken(Echo):
        def local(self, site: Any, spec: str) -> Payload:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom") as info:
        run(Broken(), "s", catalog)
    assert "at site 'luxembourg'" in "\n".join(info.value.__notes__)


def test_run_rejects_bad_arguments(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="unknown transport 'xml'"):
        run(Echo(), "s", catalog, transport="xml")
    with pytest.raises(ValueError, match="mode must be"):
        run(Echo(), "s", catalog, mode="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duplicate site ids"):
        run(Echo(), "s", [catalog.sites[0], catalog.sites[0]])
    with pytest.raises(ValueError, match="no sites"):
        run(Echo(), "s", [])


def test_pooled_mode_runs_the_same_local_step_once(catalog: Catalog) -> None:
    echo = Echo()
    provenance = run(echo, "s", catalog, mode="pooled", transport="json")
    assert [p.site for p in echo.received] == ["pooled"]
    pooled = echo.received[0].tables["by_gender"].set_index("gender_concept_id")["n"]
    federated = Echo()
    run(federated, "s", catalog)
    summed = sum(
        p.tables["by_gender"].set_index("gender_concept_id")["n"] for p in federated.received
    )
    assert pooled.to_dict() == summed.to_dict()
    assert provenance.mode == "pooled" and provenance.sites == tuple(catalog.site_ids)


# ---------------------------------------------------------------------- helpers


def test_refusal_helpers_name_the_rule_only() -> None:
    p = refuse("basel", "cohort", "min_cohort_size")
    assert (p.site, p.analysis, p.refused, dict(p.tables), dict(p.values)) == (
        "basel",
        "cohort",
        "min_cohort_size",
        {},
        {},
    )
    assert b"min_cohort_size" in p.to_json()

    @dataclasses.dataclass
    class Src:
        id: str
        policy: DisclosurePolicy

    site = Src("basel", DisclosurePolicy(min_cohort_size=20))
    assert refuse_small_cohort(site, "cohort", 19) is not None  # type: ignore[arg-type]
    assert refuse_small_cohort(site, "cohort", 20) is None  # type: ignore[arg-type]


def test_suppress_follows_the_policy_minimum() -> None:
    df = pd.DataFrame({"k": ["a", "b", "c"], "n": [2, 7, 30]})
    low = suppress(df, ["n"], DisclosurePolicy(min_cell_count=2), group_by=[])
    high = suppress(df, ["n"], DisclosurePolicy(min_cell_count=8), group_by=[])
    assert low.n.tolist() == [2, 7, 30] and not low.suppressed.any()
    assert high.n.tolist() == [pd.NA, pd.NA, 30] and high.suppressed.tolist() == [True, True, False]
    secondary = suppress(df, ["n"], DisclosurePolicy(min_cell_count=5))
    assert secondary.n.tolist() == [pd.NA, pd.NA, 30]  # complementary cell hidden as well
    labels = suppressed_cells(Payload("cohort", "basel", {"t": high}))
    assert labels == ["basel: t k=a", "basel: t k=b"]


@st.composite
def site_tables(draw: st.DrawFn) -> list[pd.DataFrame]:
    tables = []
    for _ in range(draw(st.integers(1, 4))):
        keys = draw(st.lists(st.sampled_from("abcde"), unique=True, max_size=5))
        n = [draw(st.none() | st.integers(0, 50)) for _ in keys]
        m = [draw(st.none() | st.integers(0, 50)) for _ in keys]
        tables.append(
            pd.DataFrame(
                {
                    "k": pd.Series(keys, dtype=object),
                    "n": pd.array(n, dtype="Int64"),
                    "m": pd.array(m, dtype="Int64"),
                    "suppressed": [a is None or b is None for a, b in zip(n, m, strict=True)],
                }
            )
        )
    return tables


@settings(max_examples=80, deadline=None)
@given(site_tables())
def test_combine_counts_sums_and_never_reports_a_lower_bound(tables: list[pd.DataFrame]) -> None:
    out = combine_counts(tables, ["k"], ["n", "m"])
    expected: dict[str, dict[str, Any]] = {}
    for df in tables:
        for row in df.itertuples():
            cell = expected.setdefault(row.k, {"n": 0, "m": 0, "suppressed": False})
            for col in ("n", "m"):
                value = getattr(row, col)
                cell[col] = None if cell[col] is None or value is pd.NA else cell[col] + value
            cell["suppressed"] |= bool(row.suppressed)
    assert out["k"].tolist() == list(expected)  # first-appearance order
    for row in out.itertuples():
        want = expected[row.k]
        assert [None if v is pd.NA else v for v in (row.n, row.m)] == [want["n"], want["m"]]
        assert row.suppressed == want["suppressed"]
    assert str(out["n"].dtype) == "Int64" and out["suppressed"].dtype == bool


def test_combine_counts_sums_float_columns_as_nullable_floats() -> None:
    a = pd.DataFrame({"k": ["x", "y"], "days": [1.5, np.nan], "n": [3, 4]})
    b = pd.DataFrame({"k": ["x", "y"], "days": [2.25, 1.0], "n": [5, 6]})
    out = combine_counts([a, b], ["k"], ["days", "n"])
    assert [str(out[c].dtype) for c in ("days", "n")] == ["Float64", "Int64"]
    assert out["days"].tolist() == [3.75, pd.NA] and out["n"].tolist() == [8, 10]
    assert out["suppressed"].tolist() == [False, True]


def test_combine_counts_without_keys_and_without_tables() -> None:
    a = pd.DataFrame({"n": pd.array([4], dtype="Int64")})
    b = pd.DataFrame({"n": pd.array([6], dtype="Int64")})
    assert combine_counts([a, b], [], ["n"]).to_dict("records") == [{"n": 10, "suppressed": False}]
    empty = combine_counts([], ["k"], ["n"])
    assert list(empty.columns) == ["k", "n", "suppressed"] and empty.empty


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=30), min_size=1, max_size=5)
)
def test_moments_combine_like_numpy_on_the_pooled_values(groups: list[list[float]]) -> None:
    everything = np.array([x for g in groups for x in g])
    by_values = combine_moments(Moments.from_values(g) for g in groups)
    by_sums = combine_moments(
        Moments.from_sums(len(g), float(np.sum(g)), float(np.sum(np.square(g)))) for g in groups
    )
    assert by_values.n == by_sums.n == len(everything)
    if len(everything) == 0:
        return
    scale = max(1.0, float(np.abs(everything).max()))
    assert by_values.mean == pytest.approx(everything.mean(), abs=1e-12 * scale)
    if len(everything) > 1:
        sd = float(np.std(everything, ddof=1))
        assert by_values.sd == pytest.approx(sd, rel=1e-9, abs=1e-9 * scale)
        assert by_sums.sd == pytest.approx(sd, rel=1e-6, abs=1e-6 * scale)


def test_moments_of_few_values() -> None:
    assert np.isnan(Moments.from_values([3.0]).sd)
    assert Moments.from_sums(0, 0.0, 0.0).n == 0 and np.isnan(combine_moments([]).mean)
    m = combine_moments([Moments.from_sums(2, 3.0, 5.0), Moments.from_sums(1, 4.0, 16.0)])
    assert (m.n, m.mean, m.sd) == pytest.approx((3, 7 / 3, np.std([1.0, 2.0, 4.0], ddof=1)))


# ---------------------------------------------------------------------- provenance and results


def test_spec_hashes_find_definitions_in_specs() -> None:
    @dataclasses.dataclass
    class Defn:
        name: str
        definition_hash: str

    @dataclasses.dataclass
    class Spec:
        target: Defn
        events: dict[str, Defn]
        windows: tuple[int, ...] = (0,)

    t, a = Defn("T", "aaa"), Defn("A", "bbb")
    assert spec_hashes(t) == {"T": "aaa"}
    assert spec_hashes(Spec(t, {"nat": a})) == {"target": "aaa", "events.nat": "bbb"}
    assert spec_hashes({"comparator": a}) == {"comparator": "bbb"}

    class Model(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        target: Defn
        outcomes: tuple[Defn, ...]

    assert spec_hashes(Model(target=t, outcomes=(a,))) == {"target": "aaa", "outcomes.0": "bbb"}
    assert spec_hashes("plain") == {}


@dataclasses.dataclass(frozen=True, eq=False)
class Tiny(AnalysisResult):
    def plot(self) -> Any:
        return None


def test_result_html_shows_summary_and_provenance() -> None:
    provenance = Provenance(
        analysis="cohort",
        mode="federated",
        sites=("basel", "homburg"),
        definition_hashes={"MS <first>": "abc123"},
        suppressed=("basel: attrition rule=Aged 18-60",),
        refused={"homburg": "min_cohort_size"},
        transport="json",
    )
    html = Tiny(pd.DataFrame({"site": ["basel"], "persons": [42]}), provenance)._repr_html_()
    for text in (
        "<td>42</td>",
        "federated (transport: json)",
        "basel, homburg",
        "MS &lt;first&gt;: <code>abc123</code>",
        "1: basel: attrition rule=Aged 18-60",
        "homburg (min_cohort_size)",
        f"clinnova_explore {provenance.library_version} at {provenance.created}",
    ):
        assert text in html
    assert provenance.created.endswith("+00:00")
    assert orjson.loads(orjson.dumps(provenance.to_dict()))["refused"] == {
        "homburg": "min_cohort_size"
    }
    with pytest.raises(TypeError):
        AnalysisResult(pd.DataFrame(), provenance)  # type: ignore[abstract]
