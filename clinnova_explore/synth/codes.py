"""Source codes a site would write for a standard concept, read from the shipped vocabulary.

For a standard concept and a site's vocabularies (in the spec's order) the site writes a source
code whose 'Maps to' target is that concept. When the site's code system cannot express the
concept (WHO ICD-10 and CIM-10 have only G35 for every MS course) it writes a code of the nearest
ancestor instead (the ancestor with the fewest descendants). When several codes map to the
concept (K50.0, K50.1, K50.9 for Crohn's disease) each person gets one of them, chosen by the
person's number, so a person's code is stable over time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from clinnova_explore.cdm import vocabulary

__all__ = ["CodeTable", "code_table", "unmapped_code"]


@dataclass(frozen=True)
class CodeTable:
    """Source codes and labels for a set of standard concepts in one site's vocabularies."""

    concepts: np.ndarray  # sorted standard concept ids
    offset: np.ndarray  # first candidate of each concept in codes/labels
    count: np.ndarray  # number of candidates of each concept
    codes: np.ndarray  # object array of code strings
    labels: np.ndarray  # object array of labels (source concept_name)

    def pick(self, concept: np.ndarray, number: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Code and label per row, for concept ids and person numbers."""
        pos = np.searchsorted(self.concepts, concept)
        if pos.size and (
            np.any(pos >= self.concepts.size)
            or np.any(self.concepts[np.minimum(pos, self.concepts.size - 1)] != concept)
        ):
            missing = sorted(set(concept.tolist()) - set(self.concepts.tolist()))
            raise KeyError(f"no source code for standard concept(s) {missing}")
        j = self.offset[pos] + number % self.count[pos]
        return self.codes[j], self.labels[j]


def _candidates(concept: int, vocabularies: tuple[str, ...]) -> list[tuple[str, int]]:
    """(code, source_concept_id) that map to ``concept`` or to its nearest ancestor."""
    tables = [vocabulary.source_to_standard(v) for v in vocabularies]
    for t in tables:
        hit = t.loc[t["standard_concept_id"] == concept]
        if len(hit):
            return list(zip(hit["source_code"], hit["source_concept_id"], strict=True))
    best: tuple[int, list[tuple[str, int]]] | None = None
    for t in tables:
        for std, grp in t.groupby("standard_concept_id"):
            try:
                below = vocabulary.descendants(int(std))
            except KeyError:
                continue
            if concept in below and (best is None or len(below) < best[0]):
                best = (
                    len(below),
                    list(zip(grp["source_code"], grp["source_concept_id"], strict=True)),
                )
        if best is not None:
            return best[1]
    raise KeyError(
        f"vocabularies {list(vocabularies)} cannot express concept {concept} "
        "or any of its ancestors; add a source code to cdm/data/concept*.csv"
    )


@cache
def code_table(
    concepts: tuple[int, ...], vocabularies: tuple[str, ...], undotted: bool = False
) -> CodeTable:
    """Build the :class:`CodeTable` of ``concepts`` for a site's ``vocabularies``."""
    ids = sorted(set(concepts))
    codes: list[str] = []
    labels: list[str] = []
    offset, count = [], []
    for concept in ids:
        cands = sorted(_candidates(concept, vocabularies))
        offset.append(len(codes))
        count.append(len(cands))
        for code, source_id in cands:
            codes.append(code.replace(".", "") if undotted else code)
            labels.append(vocabulary.concept_name(int(source_id)))
    return CodeTable(
        np.array(ids, dtype=np.int64),
        np.array(offset, dtype=np.int64),
        np.array(count, dtype=np.int64),
        np.array(codes, dtype=object),
        np.array(labels, dtype=object),
    )


_UNMAPPED = {
    "diagnoses": "U99.8",
    "medications": "V99ZZ99",
    "labs": "XLAB999",
    "procedures": "ZZ99.99",
}


def unmapped_code(table: str, vocabularies: tuple[str, ...], undotted: bool = False) -> str:
    """A code that no vocabulary of the site knows (for the ``unmapped_code`` fault)."""
    known = set()
    for v in vocabularies:
        known |= set(vocabulary.source_to_standard(v)["source_code"])
    code = _UNMAPPED[table]
    while code in known or code.replace(".", "") in known:
        code += "9"
    return code.replace(".", "") if undotted else code
