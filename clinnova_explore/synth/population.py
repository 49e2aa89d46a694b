"""Sampling the persons of one chunk: disease, subtype, sex, birth, entry, death, follow-up."""

from __future__ import annotations

import numpy as np

from clinnova_explore.cdm import concepts as c
from clinnova_explore.synth import params as p

__all__ = ["YEAR", "Persons", "poisson_times", "sample_persons"]

YEAR = 365.25
NEVER = np.iinfo(np.int64).max // 4

Persons = dict[str, np.ndarray]


def _clipped_normal(
    rng: np.random.Generator, spec: tuple[float, float, float, float], n: int
) -> np.ndarray:
    mean, sd, low, high = spec
    return np.clip(rng.normal(mean, sd, n), low, high)


def poisson_times(
    rng: np.random.Generator, start: np.ndarray, end: np.ndarray, rate_per_year: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """A Poisson process per person on the day interval ``[start, end)``.

    Returns
    -------
    owner, day
        Index of the person owning each event, and its day (integer days).
    """
    span = np.maximum(end - start, 0)
    rate = np.broadcast_to(np.asarray(rate_per_year, dtype=float), span.shape)
    counts = rng.poisson(rate * span / YEAR)
    owner = np.repeat(np.arange(span.size), counts)
    days = start[owner] + np.floor(rng.random(owner.size) * span[owner]).astype(np.int64)
    return owner, days


def _gompertz_years(rng: np.random.Generator, age0: np.ndarray) -> np.ndarray:
    """Years until death from ``age0`` under the Gompertz hazard of :mod:`params`."""
    b, g = p.GOMPERTZ_B, p.GOMPERTZ_G
    e = rng.exponential(1.0, age0.size)
    return np.log1p(g * e / (b * np.exp(g * age0))) / g


def sample_persons(rng: np.random.Generator, site: str, n: int) -> Persons:
    """Draw ``n`` persons of one site.

    Returns
    -------
    dict of numpy arrays
        ``disease`` (0 MS, 1 RA, 2 IBD), ``subtype`` (condition concept id of the index
        diagnosis), ``female`` (bool), ``birth``, ``entry`` (first visit), ``death``
        (``NEVER`` if alive at the data cut), ``fu_end`` (end of follow-up: death, loss to
        follow-up or the data cut), ``conversion`` (RRMS -> SPMS day or ``NEVER``).
    """
    mix = np.asarray(p.DISEASE_MIX.get(site, p.DEFAULT_MIX))
    disease = rng.choice(3, size=n, p=mix / mix.sum())
    female = np.zeros(n, dtype=bool)
    onset = np.zeros(n)
    for k, name in enumerate(p.DISEASES):
        m = disease == k
        female[m] = rng.random(m.sum()) < p.FEMALE[name]
        onset[m] = _clipped_normal(rng, p.ONSET_AGE[name], int(m.sum()))
    age_entry = onset + rng.exponential(p.YEARS_ONSET_TO_ENTRY, n)
    entry = rng.integers(p.STUDY_START, p.LAST_ENTRY + 1, n).astype(np.int64)
    birth = entry - np.round(age_entry * YEAR).astype(np.int64)

    u = rng.random(n)
    ms_types = np.array([t for t, _ in p.MS_SUBTYPES])
    ms_cum = np.cumsum([w for _, w in p.MS_SUBTYPES])
    ms_sub = ms_types[np.minimum(np.searchsorted(ms_cum, u), len(ms_types) - 1)]
    ra_sub = np.where(u < p.SEROPOSITIVE_RA_SHARE, c.SEROPOSITIVE_RA, c.RHEUMATOID_ARTHRITIS)
    ibd_sub = np.where(u < p.CROHNS_SHARE, c.CROHNS_DISEASE, c.ULCERATIVE_COLITIS)
    subtype = np.select([disease == 0, disease == 1], [ms_sub, ra_sub], ibd_sub).astype(np.int64)

    death = entry + np.round(_gompertz_years(rng, age_entry) * YEAR).astype(np.int64)
    death = np.where(death <= p.DATA_CUT, np.maximum(death, entry + 1), NEVER)
    ltfu = entry + np.ceil(rng.exponential(1 / p.LOSS_TO_FOLLOW_UP_PER_YEAR, n) * YEAR)
    fu_end = np.minimum(np.minimum(death, ltfu.astype(np.int64)), p.DATA_CUT)
    fu_end = np.maximum(fu_end, entry + 1)

    conv_years = rng.exponential(1 / p.SPMS_CONVERSION_PER_YEAR, n)
    conversion = entry + np.round(conv_years * YEAR).astype(np.int64)
    conversion = np.where((subtype == c.RRMS) & (conversion < fu_end), conversion, NEVER)
    return {
        "disease": disease.astype(np.int64),
        "subtype": subtype,
        "female": female,
        "birth": birth,
        "entry": entry,
        "death": death,
        "fu_end": fu_end,
        "conversion": conversion,
        "age_entry": age_entry,
    }
