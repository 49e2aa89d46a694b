"""Concept sets resolved inside the CDM database, as lazy ibis tables of concept ids.

Resolution follows OHDSI Circe's concept set expression: each item's own concept (looked up in
``concept``), plus, for items with ``descendants``, every valid descendant in
``concept_ancestor``; items with ``mapped`` add the concepts that ``'Maps to'`` them (as
Circe's ``includeMapped`` does, they are matched like any other member); excluded items are
resolved the same way and removed. Source codes (this project's extension) are looked up by
vocabulary and code in ``concept``: records whose source concept is one of them match, and so
do records whose standard concept is a ``'Maps to'`` target of one of them.

Nothing is resolved in Python: the result is a lazy subquery on the site's own vocabulary, so
the same definition works on any OMOP CDM (the project's sites, Eunomia, a hospital's CDM).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Protocol

import ibis
import ibis.expr.types as ir

from clinnova_explore.cohort.model import ConceptItem, ConceptSet

__all__ = ["ResolvedConceptSet", "TableSource", "resolve_concept_set"]


class TableSource(Protocol):
    """Anything that hands out lazy CDM tables by lower-case name (a CDM source)."""

    def table(self, name: str) -> ir.Table:
        """The lazy table ``name``."""
        ...


@dataclass(frozen=True)
class ResolvedConceptSet:
    """The two lazy id lists a concept set matches records against.

    Attributes
    ----------
    standard
        Table with one column ``concept_id``, matched against a domain's standard concept
        column (``condition_concept_id``, ...).
    source
        Table with one column ``concept_id`` matched against the domain's source concept column
        (``condition_source_concept_id``, ...), or ``None`` when the set has no source codes.
    """

    standard: ir.Table
    source: ir.Table | None

    def matches(
        self, concept: ir.IntegerColumn, source: ir.IntegerColumn | None
    ) -> ir.BooleanValue:
        """Whether a record with these concept columns belongs to the set."""
        cond = concept.isin(self.standard.concept_id)
        if self.source is not None and source is not None:
            cond = cond | source.isin(self.source.concept_id)
        return cond


def _union(tables: list[ir.Table], empty: ir.Table) -> ir.Table:
    if not tables:
        return empty
    return reduce(lambda a, b: a.union(b, distinct=True), tables).distinct()


def _expand(items: tuple[ConceptItem, ...], cdm: TableSource) -> list[ir.Table]:
    """Each item's concept, its valid descendants and the concepts mapped to them."""
    if not items:
        return []
    concept = cdm.table("concept")
    ancestor = cdm.table("concept_ancestor")
    own = concept.filter(concept.concept_id.isin([i.concept_id for i in items]))
    parts = [own.select(concept_id=own.concept_id.cast("int64"))]
    with_desc = [i.concept_id for i in items if i.descendants]
    if with_desc:
        valid = concept.filter(concept.invalid_reason.isnull())
        below = ancestor.filter(
            ancestor.ancestor_concept_id.isin(with_desc),
            ancestor.descendant_concept_id.isin(valid.concept_id),
        )
        parts.append(below.select(concept_id=below.descendant_concept_id.cast("int64")))
    mapped_items = tuple(
        ConceptItem(concept_id=i.concept_id, descendants=i.descendants) for i in items if i.mapped
    )
    if mapped_items:
        targets = _union(_expand(mapped_items, cdm), parts[0])
        rel = cdm.table("concept_relationship")
        maps = rel.filter(
            (rel.relationship_id == "Maps to")
            & rel.invalid_reason.isnull()
            & rel.concept_id_2.isin(targets.concept_id)
        )
        parts.append(maps.select(concept_id=maps.concept_id_1.cast("int64")))
    return parts


def _source_concepts(concept_set: ConceptSet, cdm: TableSource) -> ir.Table:
    concept = cdm.table("concept")
    cond = reduce(
        lambda a, b: a | b,
        [
            (concept.vocabulary_id == code.vocabulary) & (concept.concept_code == code.code)
            for code in concept_set.source_codes
        ],
    )
    found = concept.filter(cond)
    return found.select(concept_id=found.concept_id.cast("int64")).distinct()


def resolve_concept_set(
    concept_set: ConceptSet, cdm: TableSource, *, alias: str | None = None
) -> ResolvedConceptSet:
    """Resolve a concept set against the CDM's vocabulary tables (lazily).

    Parameters
    ----------
    concept_set
        The concept set of a :class:`~clinnova_explore.cohort.CohortDefinition`.
    cdm
        Any CDM source; its ``concept``, ``concept_ancestor`` and ``concept_relationship``
        tables are used.
    alias
        Name of the resulting common table expressions in generated SQL (``alias`` and
        ``alias_source``); unnamed when ``None``.

    Returns
    -------
    ResolvedConceptSet
        Lazy tables of standard and source concept ids.
    """
    concept = cdm.table("concept")
    empty = concept.filter(ibis.literal(False)).select(concept_id=concept.concept_id.cast("int64"))
    included = _expand(concept_set.include, cdm)
    source: ir.Table | None = None
    if concept_set.source_codes:
        source = _source_concepts(concept_set, cdm)
        rel = cdm.table("concept_relationship")
        maps = rel.filter(
            (rel.relationship_id == "Maps to")
            & rel.invalid_reason.isnull()
            & rel.concept_id_1.isin(source.concept_id)
        )
        included.append(maps.select(concept_id=maps.concept_id_2.cast("int64")))
    standard = _union(included, empty)
    if concept_set.exclude:
        excluded = _union(_expand(concept_set.exclude, cdm), empty)
        standard = standard.filter(~standard.concept_id.isin(excluded.concept_id))
    if alias is not None:
        standard = standard.alias(alias)
        source = None if source is None else source.alias(f"{alias}_source")
    return ResolvedConceptSet(standard=standard, source=source)
