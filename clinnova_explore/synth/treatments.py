"""Drug exposures of a simulated course: background therapy, index drug, escalation, steroids."""

from __future__ import annotations

import numpy as np

from clinnova_explore.cdm import concepts as c
from clinnova_explore.synth import params as p
from clinnova_explore.synth.model import Course
from clinnova_explore.synth.population import NEVER, Persons

__all__ = ["Drugs", "drug_exposures"]

#: owner, concept, start, end (``NEVER``: still running at the end of follow-up)
Drugs = dict[str, np.ndarray]


def _other(rng: np.random.Generator, pool: dict[int, float], current: np.ndarray) -> np.ndarray:
    """A drug from ``pool`` different from ``current`` (weighted)."""
    ids = np.array(list(pool), dtype=np.int64)
    w = np.array(list(pool.values()))
    j = rng.choice(ids.size, size=current.size, p=w / w.sum())
    return np.where(ids[j] == current, ids[(j + 1) % ids.size], ids[j])


def drug_exposures(rng: np.random.Generator, pe: Persons, co: Course) -> Drugs:
    """All drug exposures of one chunk, as parallel arrays."""
    n = pe["entry"].size
    idx = np.arange(n)
    entry, fu_end, dis = pe["entry"], pe["fu_end"], pe["disease"]
    has = co["index"] < NEVER
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(who: np.ndarray, drug: np.ndarray | int, start: np.ndarray, end: np.ndarray) -> None:
        ok = start <= fu_end[who]
        drug_arr = np.broadcast_to(np.asarray(drug, dtype=np.int64), who.shape)
        parts.append((who[ok], drug_arr[ok], start[ok], end[ok]))

    # index drug and escalation after the first outcome event
    switch = np.full(n, NEVER, dtype=np.int64)
    for k, name in enumerate(p.DISEASES):
        eff = p.EFFECTS[name]
        m = has & (dis == k) & (co["first"] < NEVER)
        m &= rng.random(n) < eff.p_switch_after_event
        day = co["first"] + rng.integers(14, 91, n)
        m &= day <= fu_end
        switch[m] = day[m]
        pool = eff.exposed if name == "ms" else {**eff.exposed, **eff.reference}
        add(idx[m], _other(rng, pool, co["index_drug"][m]), switch[m], np.full(m.sum(), NEVER))
    end = np.where(switch < NEVER, switch - 1, NEVER)
    add(idx[has], co["index_drug"][has], co["index"][has], end[has])

    # background therapy
    ra = dis == 1
    stop = np.where(has & (rng.random(n) < 0.4), co["index"] - 1, NEVER)
    add(idx[ra], c.METHOTREXATE, entry[ra] + rng.integers(0, 61, ra.sum()), stop[ra])
    crohns = pe["subtype"] == c.CROHNS_DISEASE
    ibd = dis == 2
    mesa = ibd & np.where(crohns, rng.random(n) < 0.2, True)
    add(
        idx[mesa],
        c.MESALAMINE,
        entry[mesa] + rng.integers(0, 31, mesa.sum()),
        np.full(mesa.sum(), NEVER),
    )
    aza = ibd & (rng.random(n) < np.where(crohns, 0.8, 0.3))
    stop = np.where(has & (rng.random(n) < 0.5), co["index"] - 1, NEVER)
    add(idx[aza], c.AZATHIOPRINE, entry[aza] + rng.integers(30, 151, aza.sum()), stop[aza])

    # prednisolone courses for RA and IBD flares (never two overlapping courses)
    flare = np.isin(co["event_concept"], [c.RA_FLARE, c.IBD_FLARE])
    flare &= rng.random(flare.size) < 0.8
    who, start = co["event_owner"][flare], co["event_day"][flare]
    keep = np.ones(who.size, dtype=bool)
    last_owner, last_start = -1, -(10**9)
    for i in range(who.size):  # events are sorted by (owner, day); few rows
        if who[i] == last_owner and start[i] - last_start <= p.PREDNISOLONE_COURSE_DAYS:
            keep[i] = False
            continue
        last_owner, last_start = int(who[i]), int(start[i])
    who, start = who[keep], start[keep]
    add(who, c.PREDNISOLONE, start, np.minimum(start + p.PREDNISOLONE_COURSE_DAYS, fu_end[who]))

    o, d, s, e = (np.concatenate(a) for a in zip(*parts, strict=True))
    order = np.lexsort((s, o))
    return {"owner": o[order], "concept": d[order], "start": s[order], "end": e[order]}
