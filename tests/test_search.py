"""Concept search and descendant preview over the shipped vocabulary, checked against the CSVs."""

from __future__ import annotations

import csv
from importlib import resources

import pytest

from clinnova_explore.cdm import concepts as c
from clinnova_explore.cdm.search import (
    SEARCH_COLUMNS,
    descendant_preview,
    normalize_text,
    search_concepts,
)


def _csv(name: str) -> list[dict[str, str]]:
    path = resources.files("clinnova_explore.cdm") / "data" / f"{name}.csv"
    with resources.as_file(path) as file, file.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


CONCEPTS = _csv("concept")
ANCESTORS = _csv("concept_ancestor")
RELATIONSHIPS = _csv("concept_relationship")


def test_name_search_is_case_insensitive_and_requires_every_word() -> None:
    got = search_concepts("MULTIPLE Sclerosis")
    expected = {
        int(r["concept_id"])
        for r in CONCEPTS
        if "multiple" in r["concept_name"].lower() and "sclerosis" in r["concept_name"].lower()
    }
    assert set(got.concept_id) == expected
    assert len(expected) >= 4
    assert got.concept_id.iloc[0] == c.MULTIPLE_SCLEROSIS  # name prefix, standard
    assert list(got.columns) == list(SEARCH_COLUMNS)
    # a second word narrows the result: every row must contain both
    assert set(search_concepts("multiple sclerosis relapse").concept_id) == {c.MS_RELAPSE}


def test_search_ignores_accents_both_ways() -> None:
    # the French source concept has accents; the query may or may not
    accented = [r for r in CONCEPTS if r["concept_name"].startswith("Sclérose")]
    assert accented
    want = {int(r["concept_id"]) for r in accented}
    assert set(search_concepts("sclerose en plaques").concept_id) == want
    assert set(search_concepts("SCLÉROSE").concept_id) == want
    german = [r for r in CONCEPTS if "näher" in r["concept_name"]]
    assert set(search_concepts("nicht naher bezeichnet").concept_id) == {
        int(r["concept_id"]) for r in german
    }
    assert normalize_text("Épisode Größe") == "episode grosse"


def test_search_by_id_and_code() -> None:
    by_id = search_concepts(str(c.NATALIZUMAB))
    assert by_id.concept_id.iloc[0] == c.NATALIZUMAB
    # an exact source code finds its standard concept first, then the source concepts
    got = search_concepts("G35")
    assert got.concept_id.iloc[0] == c.MULTIPLE_SCLEROSIS
    exact = {int(r["concept_id"]) for r in CONCEPTS if r["concept_code"] == "G35"}
    assert exact <= set(got.concept_id[: len(exact) + 1])
    prefixed = {int(r["concept_id"]) for r in CONCEPTS if r["concept_code"].startswith("G35")}
    assert set(got.concept_id) == prefixed | {c.MULTIPLE_SCLEROSIS}


def test_domain_filter_and_limit() -> None:
    drugs = search_concepts("", domain="drug", limit=500)
    assert set(drugs.domain_id) == {"Drug"}
    assert len(drugs) == sum(r["domain_id"] == "Drug" for r in CONCEPTS)
    # standard concepts first, then classification, then source
    order = drugs.standard_concept.map({"S": 0, "C": 1}).fillna(2).tolist()
    assert order == sorted(order)
    assert len(search_concepts("", domain="Drug", limit=3)) == 3
    assert search_concepts("mab", domain="Condition").empty
    mabs = search_concepts("mab", domain="Drug")
    assert len(mabs) > 3 and mabs.concept_name.str.contains("mab", case=False).all()
    with pytest.raises(ValueError, match=r"unknown domain 'drugs'.*Condition"):
        search_concepts("x", domain="drugs")
    with pytest.raises(ValueError, match="limit"):
        search_concepts("x", limit=0)


def test_descendant_preview_matches_concept_ancestor() -> None:
    for root in (c.MS_DMT, c.ANTI_TNF, c.IBD, c.MULTIPLE_SCLEROSIS):
        preview = descendant_preview(root)
        rows = [r for r in ANCESTORS if int(r["ancestor_concept_id"]) == root]
        assert set(preview.concept_id) == {int(r["descendant_concept_id"]) for r in rows}
        levels = {int(r["descendant_concept_id"]): int(r["min_levels_of_separation"]) for r in rows}
        assert dict(zip(preview.concept_id, preview.levels, strict=True)) == levels
        assert preview.concept_id.iloc[0] == root and preview.levels.iloc[0] == 0
        names = {int(r["concept_id"]): r["concept_name"] for r in CONCEPTS}
        assert all(
            names[i] == n for i, n in zip(preview.concept_id, preview.concept_name, strict=True)
        )
    # the high-efficacy class sits between MS_DMT and natalizumab
    dmt = descendant_preview(c.MS_DMT).set_index("concept_id")
    assert dmt.loc[c.MS_DMT_HIGH_EFFICACY, "levels"] == 1
    assert dmt.loc[c.NATALIZUMAB, "levels"] == 2


def test_descendant_preview_lists_mapped_source_codes() -> None:
    by_id = {r["concept_id"]: r for r in CONCEPTS}
    expected = sorted(
        f"{by_id[r['concept_id_1']]['vocabulary_id']}:{by_id[r['concept_id_1']]['concept_code']}"
        for r in RELATIONSHIPS
        if r["relationship_id"] == "Maps to"
        and r["concept_id_2"] == str(c.MULTIPLE_SCLEROSIS)
        and r["concept_id_1"] != r["concept_id_2"]
    )
    preview = descendant_preview(c.MULTIPLE_SCLEROSIS).set_index("concept_id")
    assert preview.loc[c.MULTIPLE_SCLEROSIS, "source_codes"] == ", ".join(expected)
    assert "ICD10:G35" in expected
    with pytest.raises(KeyError, match="not in the shipped vocabulary"):
        descendant_preview(123)
