"""Small-cell suppression, primary and complementary."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from clinnova_explore.disclosure import suppress_counts


def test_primary_and_secondary_suppression_per_group() -> None:
    df = pd.DataFrame({"site": ["a"] * 4 + ["b"] * 3, "n": [0, 3, 9, 40, 2, 4, 30]})
    out = suppress_counts(df, ["n"], 5, group_by=["site"])
    # site a: 3 is small, 9 is the smallest other non-zero cell -> hidden too; 0 stays
    assert out.n.tolist()[:4] == [0, pd.NA, pd.NA, 40]
    # site b: two small cells already, nothing more to hide
    assert out.n.tolist()[4:] == [pd.NA, pd.NA, 30]
    assert out.suppressed.tolist() == [False, True, True, False, True, True, False]
    assert str(out.n.dtype) == "Int64"


def test_no_group_and_no_secondary() -> None:
    df = pd.DataFrame({"n": [3, 50, 60], "m": [10, 1, 70]})
    alone = suppress_counts(df, ["n", "m"], 5, group_by=[])
    assert alone.n.tolist() == [pd.NA, 50, 60] and alone.m.tolist() == [10, pd.NA, 70]
    whole = suppress_counts(df, ["n", "m"], 5)
    assert whole.n.tolist() == [pd.NA, pd.NA, 60] and whole.m.tolist() == [pd.NA, pd.NA, 70]
    assert whole.suppressed.tolist() == [True, True, False]


def test_single_small_cell_without_partner_stays_single() -> None:
    out = suppress_counts(pd.DataFrame({"n": [0, 2, 0]}), ["n"], 5)
    assert out.n.tolist() == [0, pd.NA, 0]


def test_existing_flag_is_kept() -> None:
    df = pd.DataFrame({"n": [50, 60], "suppressed": [True, False]})
    assert suppress_counts(df, ["n"], 5).suppressed.tolist() == [True, False]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 40)), min_size=1, max_size=30),
    st.integers(2, 11),
)
def test_no_hidden_cell_is_recoverable_from_its_group_total(
    cells: list[tuple[str, int]], k: int
) -> None:
    df = pd.DataFrame(cells, columns=["g", "n"])
    out = suppress_counts(df, ["n"], k, group_by=["g"])
    for g, part in out.groupby("g"):
        src = df[df.g == g].n
        hidden = part.n.isna()
        # visible cells are released unchanged, every small cell is hidden
        assert (part.n[~hidden] == src[~hidden]).all()
        assert not ((src > 0) & (src < k) & ~hidden).any()
        # a lone hidden cell only when no other non-zero cell could partner it
        if hidden.sum() == 1:
            assert ((src > 0) & ~hidden).sum() == 0
