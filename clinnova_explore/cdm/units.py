"""UCUM units: their OMOP unit concepts and conversion factors between them.

Only the units the sites send are known. Each unit has a dimension (mass concentration, mass
fraction, mass, score) and an exact scale relative to the dimension's base unit, so any two
units of the same dimension convert exactly.
"""

from __future__ import annotations

from fractions import Fraction

from clinnova_explore.cdm import concepts as c

__all__ = ["UCUM", "IncompatibleUnitsError", "UnknownUnitError", "conversion_factor", "convert"]

UCUM: dict[str, int] = {
    "mg/L": c.UNIT_MG_PER_L,
    "mg/dL": c.UNIT_MG_PER_DL,
    "g/L": c.UNIT_G_PER_L,
    "g/dL": c.UNIT_G_PER_DL,
    "ug/g": c.UNIT_UG_PER_G,
    "kg": c.UNIT_KG,
    "{score}": c.UNIT_SCORE,
}

# UCUM code -> (dimension, exact scale to the dimension's base unit)
_SCALE: dict[str, tuple[str, Fraction]] = {
    "g/L": ("mass concentration", Fraction(1)),
    "g/dL": ("mass concentration", Fraction(10)),
    "mg/L": ("mass concentration", Fraction(1, 1000)),
    "mg/dL": ("mass concentration", Fraction(1, 100)),
    "ug/g": ("mass fraction", Fraction(1)),
    "kg": ("mass", Fraction(1)),
    "{score}": ("score", Fraction(1)),
}


class UnknownUnitError(ValueError):
    """A UCUM code that the vocabulary subset does not know."""


class IncompatibleUnitsError(ValueError):
    """Two units of different dimensions (e.g. mg/L and kg)."""


def _lookup(ucum: str, role: str) -> tuple[str, Fraction]:
    try:
        return _SCALE[ucum]
    except KeyError:
        known = ", ".join(sorted(_SCALE))
        raise UnknownUnitError(
            f"unknown {role} unit {ucum!r}: known UCUM codes are {known}; map the site's native "
            "unit to one of them in the site spec's `units:` section"
        ) from None


def conversion_factor(from_ucum: str, to_ucum: str) -> float:
    """Return the factor that converts a value in ``from_ucum`` to ``to_ucum``.

    Parameters
    ----------
    from_ucum, to_ucum
        UCUM codes, e.g. ``"mg/dL"`` and ``"mg/L"``.

    Returns
    -------
    float
        Multiply a value in ``from_ucum`` by this factor to express it in ``to_ucum``.

    Raises
    ------
    UnknownUnitError
        If either code is not a known UCUM code.
    IncompatibleUnitsError
        If the units measure different dimensions.

    Examples
    --------
    >>> conversion_factor("mg/dL", "mg/L")
    10.0
    >>> conversion_factor("g/L", "g/dL")
    0.1
    """
    dim_from, scale_from = _lookup(from_ucum, "source")
    dim_to, scale_to = _lookup(to_ucum, "target")
    if dim_from != dim_to:
        raise IncompatibleUnitsError(
            f"cannot convert {from_ucum!r} ({dim_from}) to {to_ucum!r} ({dim_to}): the units "
            "measure different things; check the unit recorded for this measurement"
        )
    return float(scale_from / scale_to)


def convert(value: float, from_ucum: str, to_ucum: str) -> float:
    """Convert one value between UCUM units (see :func:`conversion_factor`).

    Examples
    --------
    >>> convert(1.2, "mg/dL", "mg/L")
    12.0
    """
    return value * conversion_factor(from_ucum, to_ucum)
