"""Find concepts in the shipped vocabulary, and preview what a concept set would include.

:func:`search_concepts` is the concept-set search of the cohort dashboard: a few words, a code
(``G35``, ``L04AA23``) or a concept id, matched case- and accent-insensitively against concept
names, codes and ids. :func:`descendant_preview` lists what "include descendants" adds for a
concept: every descendant with its name, distance in the hierarchy and the source codes that map
to it.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import pandas as pd

from clinnova_explore.cdm.vocabulary import descendants, load_vocabulary, source_to_standard

__all__ = ["SEARCH_COLUMNS", "descendant_preview", "normalize_text", "search_concepts"]

SEARCH_COLUMNS: tuple[str, ...] = (
    "concept_id",
    "concept_name",
    "domain_id",
    "vocabulary_id",
    "concept_class_id",
    "standard_concept",
    "concept_code",
)
"""Columns of :func:`search_concepts`'s result, in order."""

# rank of a match: lower is better
_EXACT_ID_OR_CODE, _NAME_PREFIX, _WORD_PREFIX, _SUBSTRING = 0, 1, 2, 3


def normalize_text(text: str) -> str:
    """Fold case and strip accents, so that ``"Sclérose"`` matches ``"sclerose"``.

    Examples
    --------
    >>> normalize_text("Épisode dépressif, Größe")
    'episode depressif, grosse'
    """
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=1)
def _index() -> pd.DataFrame:
    concept = load_vocabulary()["concept"]
    frame = concept[list(SEARCH_COLUMNS)].copy()
    frame["_name"] = frame["concept_name"].map(normalize_text)
    frame["_code"] = frame["concept_code"].fillna("").map(normalize_text)
    frame["_words"] = frame["_name"].map(_words)
    maps = source_to_standard()
    maps = maps[maps["source_concept_id"] != maps["standard_concept_id"]]
    by_code: dict[str, set[int]] = {}
    for code, target in zip(maps["source_code"], maps["standard_concept_id"], strict=True):
        by_code.setdefault(normalize_text(code), set()).add(int(target))
    frame["_mapped_codes"] = frame["concept_id"].map(
        lambda cid: frozenset(c for c, targets in by_code.items() if cid in targets)
    )
    return frame


def _words(name: str) -> tuple[str, ...]:
    return tuple("".join(ch if ch.isalnum() else " " for ch in name).split())


def _domains() -> dict[str, str]:
    return {normalize_text(d): d for d in _index()["domain_id"].unique()}


def _rank(row: pd.Series, tokens: list[str], whole: str) -> int | None:
    """The best rank at which every token matches the concept, or ``None`` if one does not."""
    if whole in (str(row["concept_id"]), row["_code"]) or whole in row["_mapped_codes"]:
        return _EXACT_ID_OR_CODE
    best = _SUBSTRING
    for token in tokens:
        if token in row["_code"] or token == str(row["concept_id"]):
            continue
        if token not in row["_name"]:
            return None
    if row["_name"].startswith(tokens[0]):
        best = _NAME_PREFIX
    elif all(any(w.startswith(t) for w in row["_words"]) for t in tokens):
        best = _WORD_PREFIX
    return best


def search_concepts(text: str, domain: str | None = None, limit: int = 50) -> pd.DataFrame:
    """Search the shipped vocabulary by name, code or concept id.

    Every whitespace-separated word of ``text`` must occur (case- and accent-insensitively) in
    the concept's name or code, or equal its id. Exact id or code matches rank first, then names
    starting with the first word, then names with words starting with every search word, then
    any other match. A source code (``G35``) also finds the standard concepts it maps to.
    Standard concepts rank before classification and source concepts; then by name.

    Parameters
    ----------
    text
        Words, a code or a concept id. Empty text lists the domain's concepts.
    domain
        Restrict to one ``domain_id`` (``"Condition"``, ``"drug"``, ...; case-insensitive).
    limit
        At most this many rows.

    Returns
    -------
    pandas.DataFrame
        The columns of :data:`SEARCH_COLUMNS`, best match first.

    Raises
    ------
    ValueError
        For an unknown domain (the message lists the known ones) or ``limit < 1``.

    Examples
    --------
    >>> search_concepts("sclerosis", domain="condition").concept_name.tolist()[:2]
    ['Multiple sclerosis', 'Primary progressive multiple sclerosis']
    >>> search_concepts("sclérose").concept_name.tolist()
    ['Sclérose en plaques']
    >>> int(search_concepts("G35").concept_id.iloc[0])
    374919
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    frame = _index()
    if domain is not None:
        known = _domains()
        key = normalize_text(domain.strip())
        if key not in known:
            raise ValueError(
                f"unknown domain {domain!r}; known domains: {', '.join(sorted(known.values()))}"
            )
        frame = frame[frame["domain_id"] == known[key]]
    whole = normalize_text(text.strip())
    tokens = whole.split()
    if tokens:
        ranks = frame.apply(lambda row: _rank(row, tokens, whole), axis=1)
        frame = frame.assign(_rank=ranks).dropna(subset=["_rank"])
    else:
        frame = frame.assign(_rank=_SUBSTRING)
    standard_order = frame["standard_concept"].map({"S": 0, "C": 1}).fillna(2)
    frame = frame.assign(_std=standard_order).sort_values(
        ["_rank", "_std", "_name", "concept_id"], kind="stable"
    )
    return frame[list(SEARCH_COLUMNS)].head(limit).reset_index(drop=True)


def descendant_preview(concept_id: int) -> pd.DataFrame:
    """The concept and every descendant it brings into a concept set.

    Parameters
    ----------
    concept_id
        A concept of the shipped vocabulary.

    Returns
    -------
    pandas.DataFrame
        One row per concept (the concept itself first, at ``levels`` 0): ``concept_id``,
        ``concept_name``, ``domain_id``, ``vocabulary_id``, ``standard_concept``, ``levels``
        (minimum levels of separation) and ``source_codes`` (the ``vocabulary:code`` pairs that
        map to it, comma-separated; empty when none).

    Raises
    ------
    KeyError
        If the concept is not in the shipped vocabulary.

    Examples
    --------
    >>> from clinnova_explore.cdm import concepts as c
    >>> descendant_preview(c.ANTI_TNF).concept_name.tolist()
    ['TNF-alpha inhibitor', 'adalimumab', 'etanercept', 'infliximab']
    """
    members = descendants(concept_id)
    vocab = load_vocabulary()
    anc = vocab["concept_ancestor"]
    levels = anc[anc["ancestor_concept_id"] == concept_id].set_index("descendant_concept_id")[
        "min_levels_of_separation"
    ]
    concept = vocab["concept"]
    out = concept[concept["concept_id"].isin(members)][
        ["concept_id", "concept_name", "domain_id", "vocabulary_id", "standard_concept"]
    ].copy()
    out["levels"] = out["concept_id"].map(levels).fillna(0).astype("int64")
    maps = source_to_standard()
    maps = maps[maps["source_concept_id"] != maps["standard_concept_id"]]
    codes = (
        (maps["vocabulary_id"] + ":" + maps["source_code"])
        .groupby(maps["standard_concept_id"])
        .agg(lambda s: ", ".join(sorted(s)))
    )
    out["source_codes"] = out["concept_id"].map(codes).fillna("")
    out = out.sort_values(["levels", "concept_name", "concept_id"], kind="stable")
    return out.reset_index(drop=True)
