"""The registry of data-quality checks run at every site."""

from __future__ import annotations

from clinnova_explore.quality.check import Check
from clinnova_explore.quality.completeness import completeness_checks
from clinnova_explore.quality.conformance import (
    concept_checks,
    foreign_key_checks,
    primary_key_checks,
    required_checks,
    unit_checks,
    unmapped_code_checks,
)
from clinnova_explore.quality.plausibility import plausibility_checks

__all__ = ["CHECKS", "get_check", "select_checks"]


def _build() -> tuple[Check, ...]:
    checks = (
        *required_checks(),
        *primary_key_checks(),
        *foreign_key_checks(),
        *concept_checks(),
        *unmapped_code_checks(),
        *unit_checks(),
        *completeness_checks(),
        *plausibility_checks(),
    )
    ids = [c.check_id for c in checks]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise RuntimeError(f"duplicate check ids in the registry: {dupes}")
    return checks


#: Every check, in report order (conformance, completeness, plausibility).
CHECKS: tuple[Check, ...] = _build()


def get_check(check_id: str) -> Check:
    """The registered check with this id.

    Parameters
    ----------
    check_id
        A full check id.

    Returns
    -------
    Check
        The check of :data:`CHECKS`.

    Raises
    ------
    KeyError
        Naming the id and a few similar ones.
    """
    for c in CHECKS:
        if c.check_id == check_id:
            return c
    kind = check_id.split(".", 1)[0]
    near = [c.check_id for c in CHECKS if c.check_id.startswith(kind)][:5]
    raise KeyError(f"no check {check_id!r}; similar: {near or 'none'}")


def select_checks(*prefixes: str) -> tuple[Check, ...]:
    """Registered checks whose id starts with any of the given prefixes.

    Parameters
    ----------
    *prefixes
        Check-id prefixes; none selects every check.

    Returns
    -------
    tuple of Check
        In registry order.

    Examples
    --------
    >>> [c.check_id for c in select_checks("end_before_start.drug")]
    ['end_before_start.drug_exposure']
    >>> len(select_checks()) == len(CHECKS)
    True
    """
    if not prefixes:
        return CHECKS
    return tuple(c for c in CHECKS if c.check_id.startswith(prefixes))
