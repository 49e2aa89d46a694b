"""Readable labels for the concept ids named in check descriptions."""

from __future__ import annotations

from functools import cache

from clinnova_explore.cdm import concepts, units

__all__ = ["concept_label"]


@cache
def _names() -> dict[int, str]:
    out: dict[int, str] = {}
    for name, value in vars(concepts).items():
        if name.isupper() and isinstance(value, int) and not isinstance(value, bool):
            out.setdefault(value, name)
    for code, value in units.UCUM.items():
        out[value] = code
    return out


def concept_label(concept_id: int) -> str:
    """A readable label for a concept id, for check descriptions.

    Parameters
    ----------
    concept_id
        Any concept id.

    Returns
    -------
    str
        ``"<NAME> (<id>)"`` for a concept named in :mod:`clinnova_explore.cdm.concepts`,
        the UCUM code for a unit, else the bare id.

    Examples
    --------
    >>> from clinnova_explore.cdm import concepts
    >>> concept_label(concepts.CRP) == f"CRP ({concepts.CRP})"
    True
    >>> concept_label(concepts.UNIT_MG_PER_L)
    'mg/L'
    >>> concept_label(-1)
    '-1'
    """
    name = _names().get(concept_id)
    if name is None:
        return str(concept_id)
    if name in units.UCUM:
        return name
    return f"{name} ({concept_id})"
