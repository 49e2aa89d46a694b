"""Native spellings shared by the writers: identifiers, dates, numbers and units."""

from __future__ import annotations

import datetime as dt
from functools import cache

import numpy as np

from clinnova_explore.cdm import concepts as c
from clinnova_explore.cdm.units import conversion_factor
from clinnova_explore.synth.params import EPOCH

__all__ = [
    "DECIMALS",
    "UNKNOWN_PERSON_BASE",
    "date_strings",
    "format_dates",
    "format_values",
    "patient_ids",
    "site_unit",
    "visit_ids",
]

#: Person numbers at or above this are never in a patients file (``unknown_person`` faults).
UNKNOWN_PERSON_BASE = 9_000_000

_FIRST = dt.date(1900, 1, 1)
_LAST = dt.date(2100, 12, 31)
_BASE = (_FIRST - EPOCH).days

#: (patient id pattern, visit id pattern) per site; n = person number, s = visit sequence.
_ID_FORMATS = {
    "luxembourg": ("CHL{n:07d}", "CHL{n:07d}-E{s:04d}"),
    "strasbourg": ("8{n:09d}", "9{n:07d}{s:04d}"),
    "basel": ("BS{n:07d}", "F{n:07d}{s:04d}"),
    "freiburg": ("5{n:07d}", "7{n:07d}{s:04d}"),
    "homburg": ("H{n:07d}", "A{n:07d}{s:04d}"),
}


def patient_ids(site: str, numbers: np.ndarray) -> np.ndarray:
    """Native patient identifiers for person numbers (0-based within the site)."""
    pat = _ID_FORMATS[site][0]
    return np.array([pat.format(n=int(n)) for n in numbers], dtype=object)


def visit_ids(site: str, numbers: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """Native visit identifiers, unique within a site."""
    pat = _ID_FORMATS[site][1]
    return np.array(
        [pat.format(n=int(n), s=int(s)) for n, s in zip(numbers, seq, strict=True)], dtype=object
    )


@cache
def date_strings(fmt: str) -> np.ndarray:
    """Every day from 1900-01-01 to 2100-12-31 written with ``fmt`` (index: day - base)."""
    n = (_LAST - _FIRST).days + 1
    return np.array([(_FIRST + dt.timedelta(days=i)).strftime(fmt) for i in range(n)], dtype=object)


def format_dates(days: np.ndarray, fmt: str, null: str) -> np.ndarray:
    """Dates (days since 1970-01-01) as native strings; out-of-range days become ``null``."""
    table = date_strings(fmt)
    pos = days - _BASE
    ok = (pos >= 0) & (pos < table.size)
    out = np.full(days.size, null, dtype=object)
    out[ok] = table[pos[ok]]
    return out


#: Measurement -> candidate UCUM units (a site writes the first one its spec lists).
_UNIT_CHOICES = {
    c.CRP: ("mg/L", "mg/dL"),
    c.FECAL_CALPROTECTIN: ("ug/g",),
    c.HEMOGLOBIN: ("g/dL", "g/L"),
    c.BODY_WEIGHT: ("kg",),
    c.EDSS: ("{score}",),
    c.DAS28_CRP: ("{score}",),
}
CANONICAL = {k: v[0] for k, v in _UNIT_CHOICES.items()}
#: Decimals written per (measurement, UCUM unit); canonical values are pre-rounded to match.
DECIMALS = {
    (c.CRP, "mg/L"): 1,
    (c.CRP, "mg/dL"): 2,
    (c.FECAL_CALPROTECTIN, "ug/g"): 0,
    (c.HEMOGLOBIN, "g/dL"): 1,
    (c.HEMOGLOBIN, "g/L"): 0,
    (c.BODY_WEIGHT, "kg"): 1,
    (c.EDSS, "{score}"): 1,
    (c.DAS28_CRP, "{score}"): 2,
}


def site_unit(concept: int, site_units: dict[str, str] | None) -> tuple[str, str]:
    """(UCUM code, native unit string) a site uses for a measurement.

    ``site_units`` is the spec's ``units`` map (native -> UCUM); ``None`` means the site writes
    UCUM codes (FHIR).
    """
    for ucum in _UNIT_CHOICES[concept]:
        if site_units is None:
            return ucum, ucum
        for native, code in site_units.items():
            if code == ucum:
                return ucum, native
    raise KeyError(f"site units {site_units} have no unit for measurement concept {concept}")


def format_values(
    concept: np.ndarray, value: np.ndarray, site_units: dict[str, str] | None, decimal: str = "."
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert canonical values to the site's units and write them.

    Returns
    -------
    text, native_unit, numeric
        The value as written, the native unit string, and the numeric value in that unit.
    """
    text = np.empty(value.size, dtype=object)
    units = np.empty(value.size, dtype=object)
    numeric = np.empty(value.size)
    for m_concept in np.unique(concept):
        m = concept == m_concept
        ucum, native = site_unit(int(m_concept), site_units)
        factor = conversion_factor(CANONICAL[int(m_concept)], ucum)
        d = DECIMALS[(int(m_concept), ucum)]
        v = np.round(value[m] * factor, d)
        numeric[m] = v
        fmt = f"{{:.{d}f}}"
        strings = [fmt.format(x) for x in v.tolist()]
        if decimal != ".":
            strings = [s.replace(".", decimal) for s in strings]
        text[m] = strings
        units[m] = native
    return text, units, numeric
