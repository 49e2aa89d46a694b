"""Data faults injected at write time, each recorded with its file and physical line.

Faults are always *extra* lines (copies of natural rows with one thing broken, or new rows on
a person's last visit), so the natural rows that define the ground truth stay intact, and the
faulty lines are the only lines that break a rule. Which kinds apply where:

========================  =====================================  ===========================
kind                      what the line looks like               catcher
========================  =====================================  ===========================
malformed_line            one field too many or too few          quarantine:malformed_line
invalid_date              "31.02.2019", "2019-13-45"             quarantine:invalid_date
invalid_number            "n.a.", "1,2,3" in the value field     quarantine:invalid_number
duplicate                 exact copy of an earlier line          quarantine:duplicate
invalid_encoding          latin-1 bytes in a UTF-8 file          quarantine:invalid_encoding
unknown_person            patient id absent from patients        quarantine:unknown_person
invalid_json              truncated NDJSON line (FHIR)           quarantine:invalid_json
invalid_resource          Observation etc. without ``status``    quarantine:invalid_resource
unmapped_code             code unknown to the vocabulary         quality:unmapped_code
impossible_value          EDSS 14.5, CRP -5 mg/L, weight 900 kg  quality:implausible_value
date_out_of_range         diagnosis dated 2099 or before birth   quality:date_out_of_range
end_before_start          drug exposure ending before it starts  quality:end_before_start
========================  =====================================  ===========================
"""

from __future__ import annotations

import numpy as np

from clinnova_explore.cdm import concepts as c

__all__ = ["CATCHER", "CSV_KINDS", "FHIR_KINDS", "IMPOSSIBLE", "RATE", "plan_faults"]

#: Expected share of faulty lines among all lines (beyond the guaranteed minimum).
RATE = 0.002
#: Every applicable kind appears at least this often at every site (in the first chunk).
MINIMUM = 3

CATCHER = {
    "malformed_line": "quarantine:malformed_line",
    "invalid_date": "quarantine:invalid_date",
    "invalid_number": "quarantine:invalid_number",
    "duplicate": "quarantine:duplicate",
    "invalid_encoding": "quarantine:invalid_encoding",
    "unknown_person": "quarantine:unknown_person",
    "invalid_json": "quarantine:invalid_json",
    "invalid_resource": "quarantine:invalid_resource",
    "unmapped_code": "quality:unmapped_code",
    "impossible_value": "quality:implausible_value",
    "date_out_of_range": "quality:date_out_of_range",
    "end_before_start": "quality:end_before_start",
}

_EVENTFUL = ("diagnoses", "labs", "medications", "procedures", "events")
CSV_KINDS: dict[str, tuple[str, ...]] = {
    "malformed_line": _EVENTFUL,
    "invalid_date": _EVENTFUL,
    "invalid_number": ("labs",),
    "duplicate": ("visits", *_EVENTFUL),
    "invalid_encoding": ("diagnoses", "labs", "procedures"),
    "unknown_person": _EVENTFUL,
    "unmapped_code": ("diagnoses", "labs", "medications", "procedures"),
    "impossible_value": ("labs",),
    "date_out_of_range": ("diagnoses", "labs"),
    "end_before_start": ("medications",),
}
FHIR_KINDS: dict[str, tuple[str, ...]] = {
    "invalid_json": ("visits", *_EVENTFUL),
    "invalid_resource": ("visits", "labs", "medications"),
    "duplicate": ("visits", *_EVENTFUL),
    "invalid_encoding": ("diagnoses", "labs", "procedures"),
    "unknown_person": _EVENTFUL,
    "unmapped_code": ("diagnoses", "labs", "medications", "procedures"),
    "impossible_value": ("labs",),
    "date_out_of_range": ("diagnoses", "labs"),
    "end_before_start": ("medications",),
}

#: Impossible canonical values per measurement (outside every plausible range).
IMPOSSIBLE = {
    c.EDSS: 14.5,
    c.DAS28_CRP: 12.5,
    c.CRP: -5.0,
    c.FECAL_CALPROTECTIN: -20.0,
    c.HEMOGLOBIN: 45.0,
    c.BODY_WEIGHT: 900.0,
}


def plan_faults(
    rng: np.random.Generator,
    kinds: dict[str, tuple[str, ...]],
    rows: dict[str, int],
    first_chunk: bool,
) -> dict[str, list[str]]:
    """Decide which fault kinds go into which table for one chunk.

    Parameters
    ----------
    rng
        The chunk's fault generator.
    kinds
        Applicable kinds and their tables (:data:`CSV_KINDS` or :data:`FHIR_KINDS`).
    rows
        Natural rows per logical table in this chunk.
    first_chunk
        The first chunk of a site carries the guaranteed minimum of every kind.

    Returns
    -------
    dict
        Logical table -> list of fault kinds to inject (one entry per faulty line).
    """
    total = sum(rows.values())
    out: dict[str, list[str]] = {t: [] for t in rows}
    for kind, tables in kinds.items():
        usable = [t for t in tables if rows.get(t, 0) > 0]
        if not usable:
            continue
        n = int(rng.poisson(RATE * total / len(kinds))) + (MINIMUM if first_chunk else 0)
        for t in rng.choice(len(usable), size=n):
            out[usable[int(t)]].append(kind)
    return out
