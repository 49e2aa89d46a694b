"""The OMOP vocabulary subset shipped with the package.

``cdm/data`` holds ``concept``, ``concept_ancestor`` and ``concept_relationship`` as CSV files
with the OMOP CDM v5.4 column names. :func:`load_vocabulary` reads them once (cached) as typed
DataFrames; :func:`write_vocabulary` copies them into any ibis backend; the lookup helpers
answer the questions harmonization and cohorts ask: which standard concept a source code maps to,
which concepts descend from a class, and what a concept is called.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import ibis
import pandas as pd

from clinnova_explore.cdm.schema import SCHEMAS

__all__ = [
    "VOCABULARY_TABLES",
    "ancestors",
    "concept_name",
    "descendants",
    "load_vocabulary",
    "source_to_standard",
    "write_vocabulary",
]

VOCABULARY_TABLES: tuple[str, ...] = ("concept", "concept_ancestor", "concept_relationship")

_PANDAS_TYPES = {"int64": "int64", "float64": "float64", "string": "object"}


def _read_table(name: str) -> pd.DataFrame:
    path = resources.files("clinnova_explore.cdm") / "data" / f"{name}.csv"
    schema = SCHEMAS[name]
    with resources.as_file(path) as file:
        frame = pd.read_csv(file, dtype=str, keep_default_na=False, encoding="utf-8")
    missing = [col for col in schema.names if col not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(schema.names)}")
    frame = frame[list(schema.names)]
    for col, dtype in schema.items():
        if dtype.is_date():
            frame[col] = pd.to_datetime(frame[col], format="%Y-%m-%d")
        elif dtype.is_integer():
            frame[col] = frame[col].astype("int64")
        elif dtype.is_string():
            frame[col] = frame[col].where(frame[col] != "", None).astype(object)
    return frame


@lru_cache(maxsize=1)
def _tables() -> dict[str, pd.DataFrame]:
    return {name: _read_table(name) for name in VOCABULARY_TABLES}


def load_vocabulary() -> dict[str, pd.DataFrame]:
    """Return the shipped vocabulary tables as DataFrames typed per ``SCHEMAS``.

    The CSV files are parsed once per process; each call returns fresh copies, so callers may
    modify them freely.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``concept``, ``concept_ancestor`` and ``concept_relationship``. Integer columns are
        ``int64``, dates ``datetime64[ns]``, empty strings become ``None``.

    Examples
    --------
    >>> vocab = load_vocabulary()
    >>> sorted(vocab)
    ['concept', 'concept_ancestor', 'concept_relationship']
    """
    return {name: frame.copy() for name, frame in _tables().items()}


def write_vocabulary(con: ibis.BaseBackend, overwrite: bool = True) -> None:
    """Create the ``concept``, ``concept_ancestor`` and ``concept_relationship`` tables.

    Parameters
    ----------
    con
        Any ibis backend (DuckDB, PostgreSQL, ...).
    overwrite
        Replace existing tables when true; when false an existing table is an error.
    """
    for name, frame in _tables().items():
        schema = SCHEMAS[name]
        table = ibis.memtable(frame).cast(schema)
        con.create_table(name, obj=table, overwrite=overwrite)


@lru_cache(maxsize=1)
def _mapping() -> pd.DataFrame:
    tables = _tables()
    concept = tables["concept"]
    rel = tables["concept_relationship"]
    maps = rel.loc[rel["relationship_id"] == "Maps to", ["concept_id_1", "concept_id_2"]]
    source = concept[["concept_id", "vocabulary_id", "concept_code"]].rename(
        columns={"concept_id": "concept_id_1"}
    )
    out = maps.merge(source, on="concept_id_1", how="inner")
    out = out.rename(
        columns={
            "concept_code": "source_code",
            "concept_id_1": "source_concept_id",
            "concept_id_2": "standard_concept_id",
        }
    )
    cols = ["vocabulary_id", "source_code", "source_concept_id", "standard_concept_id"]
    return out[cols].sort_values(["vocabulary_id", "source_code"]).reset_index(drop=True)


def source_to_standard(vocabulary_id: str | None = None) -> pd.DataFrame:
    """Return the 'Maps to' table from source codes to standard concept ids.

    Standard concepts map to themselves, so LOINC or CLX_EVENT codes that are already standard
    are listed too.

    Parameters
    ----------
    vocabulary_id
        Restrict to one vocabulary (e.g. ``"ICD10GM"``); ``None`` returns all of them.

    Returns
    -------
    pandas.DataFrame
        Columns ``vocabulary_id``, ``source_code``, ``source_concept_id``,
        ``standard_concept_id``; one row per (vocabulary, code).

    Raises
    ------
    KeyError
        If ``vocabulary_id`` is not a vocabulary of the shipped subset.

    Examples
    --------
    >>> m = source_to_standard("ICD10GM")
    >>> int(m.loc[m.source_code == "K50.9", "standard_concept_id"].iloc[0])
    201606
    """
    mapping = _mapping()
    if vocabulary_id is None:
        return mapping.copy()
    known = set(mapping["vocabulary_id"])
    if vocabulary_id not in known:
        raise KeyError(
            f"vocabulary {vocabulary_id!r} has no mapped codes in the shipped vocabulary; "
            f"known vocabularies: {', '.join(sorted(known))}"
        )
    return mapping.loc[mapping["vocabulary_id"] == vocabulary_id].reset_index(drop=True)


@lru_cache(maxsize=1)
def _names() -> dict[int, str]:
    concept = _tables()["concept"]
    return dict(zip(concept["concept_id"].tolist(), concept["concept_name"].tolist(), strict=True))


@lru_cache(maxsize=1)
def _closure() -> tuple[dict[int, frozenset[int]], dict[int, frozenset[int]]]:
    anc = _tables()["concept_ancestor"]
    down: dict[int, set[int]] = {}
    up: dict[int, set[int]] = {}
    for a, d in zip(
        anc["ancestor_concept_id"].tolist(), anc["descendant_concept_id"].tolist(), strict=True
    ):
        down.setdefault(a, set()).add(d)
        up.setdefault(d, set()).add(a)
    return (
        {k: frozenset(v) for k, v in down.items()},
        {k: frozenset(v) for k, v in up.items()},
    )


def _check_known(concept_id: int) -> None:
    if concept_id not in _names():
        raise KeyError(
            f"concept_id {concept_id} is not in the shipped vocabulary "
            "(clinnova_explore/cdm/data/concept.csv)"
        )


def descendants(concept_id: int) -> set[int]:
    """Return the concept and all its descendants (from ``concept_ancestor``).

    Parameters
    ----------
    concept_id
        Any concept of the shipped vocabulary. Source concepts, which are not in the hierarchy,
        return just themselves.

    Raises
    ------
    KeyError
        If the concept is not in the shipped vocabulary.

    Examples
    --------
    >>> from clinnova_explore.cdm import concepts as c
    >>> descendants(c.IBD) == {c.IBD, c.CROHNS_DISEASE, c.ULCERATIVE_COLITIS}
    True
    """
    _check_known(concept_id)
    return set(_closure()[0].get(concept_id, {concept_id}))


def ancestors(concept_id: int) -> set[int]:
    """Return the concept and all its ancestors (from ``concept_ancestor``).

    Raises
    ------
    KeyError
        If the concept is not in the shipped vocabulary.

    Examples
    --------
    >>> from clinnova_explore.cdm import concepts as c
    >>> c.ANTI_TNF in ancestors(c.INFLIXIMAB)
    True
    """
    _check_known(concept_id)
    return set(_closure()[1].get(concept_id, {concept_id}))


def concept_name(concept_id: int) -> str:
    """Return the ``concept_name`` of a concept.

    Raises
    ------
    KeyError
        If the concept is not in the shipped vocabulary.

    Examples
    --------
    >>> concept_name(201606)
    "Crohn's disease"
    """
    _check_known(concept_id)
    return _names()[concept_id]
