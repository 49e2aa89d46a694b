"""From a simulated course to logical table rows (canonical concepts, days and units).

Each table is a dict of parallel numpy arrays. ``owner`` indexes the chunk's persons and
``visit`` indexes the chunk's visits. Dates are days since 1970-01-01; ``NEVER`` is a missing
end or death date. Lab values are in canonical units (CRP mg/L, calprotectin ug/g, hemoglobin
g/dL, weight kg, scores) and already rounded to the precision every site writes.
"""

from __future__ import annotations

import numpy as np

from clinnova_explore.cdm import concepts as c
from clinnova_explore.synth import params as p
from clinnova_explore.synth.model import Course, edss_at
from clinnova_explore.synth.population import NEVER, Persons, poisson_times
from clinnova_explore.synth.treatments import drug_exposures

__all__ = ["INPATIENT", "KINDS", "Tables", "build_tables"]

Tables = dict[str, dict[str, np.ndarray]]
INPATIENT, OUTPATIENT, EMERGENCY = 0, 1, 2
KINDS = ("regular", "baseline", "event", "surgery", "infection", "elective", "final")
REGULAR, BASELINE, EVENT, SURGERY, INFECTION, ELECTIVE, FINAL = range(7)
SURGERIES = (c.COLECTOMY, c.BOWEL_RESECTION)


def _visits(rng: np.random.Generator, pe: Persons, co: Course) -> dict[str, np.ndarray]:
    n = pe["entry"].size
    entry, fu_end = pe["entry"], pe["fu_end"]
    lo, hi = p.VISIT_GAP_DAYS
    width = (p.DATA_CUT - p.STUDY_START) // lo + 2
    gaps = rng.integers(lo, hi + 1, (n, width))
    gaps[:, 0] = 0
    days = entry[:, None] + np.cumsum(gaps, axis=1)
    index = co["index"][:, None]
    keep = (days < fu_end[:, None]) & ~((days >= index - p.BASELINE_WINDOW_DAYS) & (days <= index))
    owner_r, col = np.nonzero(keep)
    parts = [
        (
            owner_r,
            days[owner_r, col],
            np.full(owner_r.size, OUTPATIENT),
            REGULAR,
            np.zeros(owner_r.size, dtype=np.int64),
        )
    ]
    has = np.nonzero(co["index"] < NEVER)[0]
    parts.append(
        (
            has,
            co["baseline"][has],
            np.full(has.size, OUTPATIENT),
            BASELINE,
            np.zeros(has.size, dtype=np.int64),
        )
    )

    eo, ed, ec = co["event_owner"], co["event_day"], co["event_concept"]
    u = rng.random(eo.size)
    vt = np.full(eo.size, OUTPATIENT)
    vt[(ec == c.MS_RELAPSE) & (u < p.MS_RELAPSE_EMERGENCY)] = EMERGENCY
    ibd = ec == c.IBD_FLARE
    vt[ibd & (u < p.IBD_FLARE_ADMITTED)] = INPATIENT
    vt[ibd & (u >= p.IBD_FLARE_ADMITTED) & (u < p.IBD_FLARE_ADMITTED + p.IBD_FLARE_EMERGENCY)] = (
        EMERGENCY
    )
    surgery = np.isin(ec, SURGERIES)
    vt[surgery] = INPATIENT
    parts.append((eo[~surgery], ed[~surgery], vt[~surgery], EVENT, ec[~surgery]))
    parts.append((eo[surgery], ed[surgery], vt[surgery], SURGERY, ec[surgery]))

    after_rate = np.where(
        co["exposed"],
        p.SERIOUS_INFECTION_PER_YEAR["strong"],
        p.SERIOUS_INFECTION_PER_YEAR["moderate"],
    )
    start = np.minimum(co["index"], fu_end + 1)
    o1, d1 = poisson_times(rng, entry, start, p.SERIOUS_INFECTION_PER_YEAR["none"])
    o2, d2 = poisson_times(rng, start, fu_end + 1, after_rate)
    io, idays = np.concatenate([o1, o2]), np.concatenate([d1, d2])
    ic = np.where(rng.random(io.size) < 0.75, c.PNEUMONIA, c.SEPSIS)
    parts.append((io, idays, np.full(io.size, INPATIENT), INFECTION, ic))
    oe, de = poisson_times(rng, entry, fu_end + 1, p.ELECTIVE_ADMISSIONS_PER_YEAR)
    parts.append((oe, de, np.full(oe.size, INPATIENT), ELECTIVE, np.zeros(oe.size, np.int64)))

    died = pe["death"] < NEVER
    all_idx = np.arange(n)
    fin_start = np.where(died, np.maximum(entry, fu_end - rng.integers(1, 11, n)), fu_end)
    parts.append(
        (
            all_idx,
            fin_start,
            np.where(died, INPATIENT, OUTPATIENT),
            FINAL,
            np.zeros(n, dtype=np.int64),
        )
    )

    owner = np.concatenate([a[0] for a in parts])
    start_d = np.concatenate([a[1] for a in parts]).astype(np.int64)
    vtype = np.concatenate([a[2] for a in parts])
    kind = np.concatenate([np.full(a[0].size, a[3]) for a in parts])
    concept = np.concatenate([a[4] for a in parts]).astype(np.int64)
    los = np.select(
        [kind == SURGERY, kind == INFECTION, kind == ELECTIVE],
        [
            rng.integers(5, 16, owner.size),
            rng.integers(3, 15, owner.size),
            rng.integers(1, 6, owner.size),
        ],
        rng.integers(2, 9, owner.size),
    )
    end_d = np.where(vtype == INPATIENT, np.minimum(start_d + los, fu_end[owner]), start_d)
    end_d = np.where(kind == FINAL, fu_end[owner], end_d)
    order = np.lexsort((kind, start_d, owner))
    owner, start_d, end_d = owner[order], start_d[order], end_d[order]
    first_of_owner = np.searchsorted(owner, owner, side="left")
    return {
        "owner": owner,
        "seq": np.arange(owner.size) - first_of_owner,
        "type": vtype[order],
        "start": start_d,
        "end": end_d,
        "kind": kind[order],
        "concept": concept[order],
    }


def _index_code(pe: Persons, owner: np.ndarray, day: np.ndarray) -> np.ndarray:
    code = pe["subtype"][owner]
    return np.where(day >= pe["conversion"][owner], c.SPMS, code)


def _diagnoses(
    rng: np.random.Generator, pe: Persons, v: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    vi = np.arange(v["owner"].size)
    kind, owner, start = v["kind"], v["owner"], v["start"]
    regular = kind == REGULAR
    index_dx = (regular & ((v["seq"] == 0) | (rng.random(vi.size) < 0.3))) | np.isin(
        kind, [BASELINE, EVENT, SURGERY, ELECTIVE]
    )
    parts = [(vi[index_dx], _index_code(pe, owner[index_dx], start[index_dx]))]
    infection = kind == INFECTION
    parts.append((vi[infection], v["concept"][infection]))
    n = pe["entry"].size
    span = pe["fu_end"] - pe["entry"]
    for concept, prob in p.COMORBIDITY.items():
        base: np.ndarray | float = prob
        if concept == c.DEPRESSION:
            base = np.where(pe["disease"] == 0, p.DEPRESSION_MS, prob)
        age = (pe["entry"] - pe["birth"]) / 365.25
        risk = np.clip(base * (age / 45.0) ** (1.5 if concept != c.DEPRESSION else 0.0), 0, 0.9)
        has = rng.random(n) < risk
        onset = np.where(has, pe["entry"] + (rng.random(n) * span).astype(np.int64), NEVER)
        after = regular & (start >= onset[owner])
        # the previous regular visit of the same person (skip non-regular visits)
        prev_after = np.maximum.accumulate(np.where(regular, vi, -1))
        prev_regular = np.concatenate([[-1], prev_after[:-1]])
        ok = prev_regular >= 0
        before = np.zeros(vi.size, dtype=bool)
        before[ok] = after[prev_regular[ok]] & (owner[prev_regular[ok]] == owner[ok])
        first = after & ~before
        coded = first | (after & (rng.random(vi.size) < 0.25))
        parts.append((vi[coded], np.full(coded.sum(), concept)))
    visit = np.concatenate([a[0] for a in parts])
    concepts = np.concatenate([a[1] for a in parts]).astype(np.int64)
    order = np.lexsort((concepts, visit))
    visit, concepts = visit[order], concepts[order]
    return {"owner": owner[visit], "visit": visit, "concept": concepts, "date": start[visit]}


def _labs(
    rng: np.random.Generator, pe: Persons, co: Course, v: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    n = pe["entry"].size
    kind, owner, day = v["kind"], v["owner"], v["start"]
    vi = np.arange(owner.size)
    dis = pe["disease"][owner]
    base = kind == BASELINE
    at = (kind == REGULAR) | base

    def u() -> np.ndarray:
        return rng.random(vi.size)

    since = np.maximum(day - co["index"][owner], 0).astype(float)
    after = day > co["index"][owner]
    parts = []

    def add(mask: np.ndarray, concept: int, value: np.ndarray) -> None:
        parts.append((vi[mask], np.full(mask.sum(), concept), value[mask]))

    ms = at & (dis == 0) & (base | (u() < 0.8))
    edss = np.zeros(vi.size)
    edss[ms] = edss_at(co, owner[ms], day[ms])
    add(ms, c.EDSS, edss)

    das_ref = np.where(
        np.isnan(co["das_base"]), np.clip(rng.normal(4.5, 1.0, n), 2.0, 8.0), co["das_base"]
    )[owner]
    das = das_ref + rng.normal(0, 0.35, vi.size) - after * 1.8 * (1 - np.exp(-since / 120))
    das = np.where(base, das_ref, np.round(np.clip(das, 1.5, 8.5), 2))
    ra = at & (dis == 1) & (base | (u() < 0.85))
    add(ra, c.DAS28_CRP, das)
    crp_ra = np.exp(np.log(3.0) + 0.6 * (das - 3.0) + rng.normal(0, 0.4, vi.size))

    def ibd_ref(key: str, median: float) -> np.ndarray:
        own = np.exp(rng.normal(np.log(median), 0.9, n))
        return np.where(np.isnan(co[key]), own, co[key])[owner]

    settle = np.where(after, 0.3 + 0.7 * np.exp(-since / 150), 1.0)
    crp_ibd = ibd_ref("crp_base", 8.0) * settle * np.exp(rng.normal(0, 0.3, vi.size))
    crp = np.where(dis == 1, crp_ra, crp_ibd)
    crp = np.round(np.clip(crp, 0.3, 250.0), 1)
    crp = np.where(base & (dis == 2), co["crp_base"][owner], crp)
    ibd = at & (dis == 2)
    add((ra | ibd) & (base | (u() < 0.75)) & (dis > 0), c.CRP, crp)
    cal = ibd_ref("calpro_base", 270.0) * settle * np.exp(rng.normal(0, 0.3, vi.size))
    cal = np.where(base, co["calpro_base"][owner], np.round(np.clip(cal, 10, 2900)))
    add(ibd & (base | (u() < 0.6)), c.FECAL_CALPROTECTIN, cal)

    female = pe["female"][owner]
    hb = np.where(female, 13.0, 14.5) - 0.8 * (dis == 2) + rng.normal(0, 0.6, vi.size)
    add(at & (u() < 0.25), c.HEMOGLOBIN, np.round(np.clip(hb, 8.0, 17.5), 1))
    w0 = np.clip(np.where(pe["female"], rng.normal(68, 12, n), rng.normal(82, 12, n)), 45, 140)
    w = np.round(np.clip(w0[owner] + rng.normal(0, 1.5, vi.size), 40, 160), 1)
    add(at & (u() < 0.3), c.BODY_WEIGHT, w)

    visit = np.concatenate([a[0] for a in parts])
    concept = np.concatenate([a[1] for a in parts]).astype(np.int64)
    value = np.concatenate([a[2] for a in parts]).astype(float)
    order = np.lexsort((concept, visit))
    visit = visit[order]
    return {
        "owner": owner[visit],
        "visit": visit,
        "concept": concept[order],
        "date": day[visit],
        "value": value[order],
    }


def _procedures(
    rng: np.random.Generator, pe: Persons, v: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    kind, owner = v["kind"], v["owner"]
    vi = np.arange(owner.size)
    ms = pe["disease"][owner] == 0
    u = rng.random(vi.size)
    mri = ms & (((kind == REGULAR) & (u < 0.25)) | ((kind == EVENT) & (u < 0.5)))
    surgery = kind == SURGERY
    concept = np.where(surgery, v["concept"], c.MRI_BRAIN)
    sel = vi[mri | surgery]
    return {"owner": owner[sel], "visit": sel, "concept": concept[sel], "date": v["start"][sel]}


def build_tables(rng: np.random.Generator, pe: Persons, co: Course) -> Tables:
    """All logical tables of one chunk (see the module docstring for the representation)."""
    v = _visits(rng, pe, co)
    ev = v["kind"] == EVENT
    sel = np.nonzero(ev)[0]
    return {
        "patients": {
            "owner": np.arange(pe["entry"].size),
            "birth": pe["birth"],
            "female": pe["female"],
            "death": pe["death"],
        },
        "visits": v,
        "diagnoses": _diagnoses(rng, pe, v),
        "medications": drug_exposures(rng, pe, co),
        "labs": _labs(rng, pe, co, v),
        "procedures": _procedures(rng, pe, v),
        "events": {
            "owner": v["owner"][sel],
            "visit": sel,
            "concept": v["concept"][sel],
            "date": v["start"][sel],
        },
    }
