"""Disease courses: index treatment, confounded treatment choice, outcomes, switches.

All three diseases share one design (see :mod:`clinnova_explore.synth` for the full story):
an index date (first DMT / first biologic or targeted DMARD / first advanced IBD therapy), a
baseline measured at a dedicated visit 7-60 days before it, a logistic treatment choice in the
baseline severity (confounding by indication) plus a site offset, and a Weibull proportional-
hazards time to the first outcome event with a site-specific baseline hazard. Treatment is never
switched before that first event, so the index drug is the drug at risk.
"""

from __future__ import annotations

import numpy as np

from clinnova_explore.cdm import concepts as c
from clinnova_explore.synth import params as p
from clinnova_explore.synth.population import NEVER, YEAR, Persons, poisson_times

__all__ = ["Course", "edss_at", "simulate_course"]

Course = dict[str, np.ndarray]

EDSS_START = {c.RRMS: (1.0, 0.7, 0.08), c.PPMS: (3.0, 0.6, 0.30), c.SPMS: (4.0, 0.5, 0.25)}


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pick(rng: np.random.Generator, weights: dict[int, float], n: int) -> np.ndarray:
    ids = np.array(list(weights), dtype=np.int64)
    w = np.array(list(weights.values()))
    return ids[rng.choice(ids.size, size=n, p=w / w.sum())]


def count_before(
    owner: np.ndarray,
    days: np.ndarray,
    who: np.ndarray,
    when: np.ndarray,
    lo: np.ndarray | None = None,
) -> np.ndarray:
    """Number of (owner, day) events with ``lo <= day < when`` for each (who, when) query."""
    key = np.sort(owner.astype(np.int64) * (1 << 32) + days)
    base = who.astype(np.int64) * (1 << 32)
    hi = np.searchsorted(key, base + when, side="left")
    low = np.searchsorted(key, base + (lo if lo is not None else 0), side="left")
    return hi - low


def edss_at(course: Course, who: np.ndarray, when: np.ndarray) -> np.ndarray:
    """EDSS on given days: start + yearly progression + 0.5 per earlier relapse, 0.5 steps."""
    relapses = course["event_concept"] == c.MS_RELAPSE
    n_rel = count_before(course["event_owner"][relapses], course["event_day"][relapses], who, when)
    years = (when - course["ms_origin"][who]) / YEAR
    raw = course["edss0"][who] + course["edss_rate"][who] * years + 0.5 * n_rel
    return np.clip(np.round(raw * 2) / 2, 0.0, 9.5)


def _weibull_first(
    rng: np.random.Generator, eff: p.Effect, lp: np.ndarray, site: str
) -> np.ndarray:
    """Days from index to the first outcome event (>= 1)."""
    rate = eff.scale_per_year * eff.site_hazard.get(site, 1.0) * np.exp(lp)
    years = (rng.exponential(1.0, lp.size) / rate) ** (1.0 / eff.shape)
    return np.maximum(1, np.ceil(years * YEAR)).astype(np.int64)


def _linear(eff: p.Effect, x: dict[str, np.ndarray], coefs: dict[str, float]) -> np.ndarray:
    out = np.zeros(next(iter(x.values())).size)
    for name, beta in coefs.items():
        center, scale = eff.scaling[name]
        out += beta * (x[name] - center) / scale
    return out


def simulate_course(rng: np.random.Generator, site: str, pe: Persons) -> Course:
    """Simulate treatments, events and outcomes for the persons of one chunk."""
    n = pe["entry"].size
    entry, fu_end, dis = pe["entry"], pe["fu_end"], pe["disease"]
    idx = np.arange(n)
    co: Course = {k: np.full(n, NEVER, dtype=np.int64) for k in ("index", "baseline", "first")}
    co["exposed"] = np.zeros(n, dtype=bool)
    co["index_drug"] = np.zeros(n, dtype=np.int64)
    for key in ("edss_base", "prior", "das_base", "calpro_base", "crp_base"):
        co[key] = np.full(n, np.nan)

    # planned index dates and baseline visits
    for k, name in enumerate(p.DISEASES):
        m = dis == k
        eff = p.EFFECTS[name]
        lo, hi = eff.index_delay_days
        planned = entry[m] + rng.integers(lo, hi + 1, m.sum())
        gets = (rng.random(m.sum()) < eff.p_index) & (planned < fu_end[m])
        co["index"][m] = np.where(gets, planned, NEVER)
    has = co["index"] < NEVER
    blo, bhi = p.BASELINE_VISIT_BEFORE_INDEX
    co["baseline"][has] = co["index"][has] - rng.integers(blo, bhi + 1, has.sum())

    # events before the index date (all follow-up if no index)
    pre_end = np.minimum(co["index"], fu_end + 1)
    frailty = rng.gamma(2.0, 0.5, n)
    rate_pre = (
        np.select(
            [dis == 0, dis == 1],
            [p.EFFECTS["ms"].rate_before_index, p.EFFECTS["ra"].rate_before_index],
            p.IBD_FLARE_PER_YEAR["before_index"],
        )
        * frailty
    )
    ev_o, ev_d = poisson_times(rng, entry, pre_end, rate_pre)
    ev_c = np.array([c.MS_RELAPSE, c.RA_FLARE, c.IBD_FLARE])[dis[ev_o]]
    events = [(ev_o, ev_d, ev_c)]
    co["event_owner"], co["event_day"], co["event_concept"] = ev_o, ev_d, ev_c

    # MS disability course and baseline covariates
    co["ms_origin"] = entry.copy()
    co["edss0"] = np.zeros(n)
    co["edss_rate"] = np.zeros(n)
    for sub, (start, scale, rate) in EDSS_START.items():
        m = pe["subtype"] == sub
        co["edss0"][m] = start + rng.gamma(2.0, scale, m.sum())
        co["edss_rate"][m] = rate
    ms = has & (dis == 0)
    co["edss_base"][ms] = edss_at(co, idx[ms], co["baseline"][ms])
    relapse = ev_c == c.MS_RELAPSE
    co["prior"][ms] = count_before(
        ev_o[relapse],
        ev_d[relapse],
        idx[ms],
        co["index"][ms],
        co["index"][ms] - p.PRIOR_EVENT_WINDOW_DAYS,
    )
    ra = has & (dis == 1)
    co["das_base"][ra] = np.round(np.clip(rng.normal(5.0, 0.9, ra.sum()), 2.6, 8.0), 2)
    ib = has & (dis == 2)
    calpro = np.clip(np.round(np.exp(rng.normal(5.6, 0.9, ib.sum()))), 10, 2800)
    co["calpro_base"][ib] = calpro
    co["crp_base"][ib] = np.clip(
        np.round(np.exp(rng.normal(np.log(8), 0.9, ib.sum())), 1), 0.3, 200.0
    )

    age = (co["index"] - pe["birth"]) / YEAR
    female = pe["female"].astype(float)
    crohns = (pe["subtype"] == c.CROHNS_DISEASE).astype(float)
    covs = {
        "ms": {"baseline_edss": co["edss_base"], "prior_relapses": co["prior"]},
        "ra": {"baseline_das28": co["das_base"]},
        "ibd": {
            "log_calprotectin": np.log(co["calpro_base"]),
            "crp_per_10": co["crp_base"],
            "crohns": crohns,
        },
    }
    outcome_concept = {"ms": c.MS_RELAPSE, "ra": c.RA_FLARE}
    for k, name in enumerate(p.DISEASES):
        eff = p.EFFECTS[name]
        m = has & (dis == k)
        x = {key: v[m] for key, v in covs[name].items()}
        x["age_per_10y"], x["female"] = age[m], female[m]
        choice = eff.choice_intercept + _linear(eff, x, eff.choice_coefficients)
        choice += eff.choice_site_offset.get(site, 0.0)
        exposed = rng.random(m.sum()) < _expit(choice)
        co["exposed"][m] = exposed
        drug = np.where(
            exposed, _pick(rng, eff.exposed, m.sum()), _pick(rng, eff.reference, m.sum())
        )
        co["index_drug"][m] = drug
        lp = eff.log_hr * exposed + _linear(eff, x, eff.coefficients)
        first = co["index"][m] + _weibull_first(rng, eff, lp, site)
        seen = first <= fu_end[m]
        co["first"][m] = np.where(seen, first, NEVER)
        who = idx[m][seen]
        concept = outcome_concept.get(name)
        if concept is None:  # IBD: the outcome is surgery, recorded as a procedure
            concept_arr = np.where(crohns[who] > 0, c.BOWEL_RESECTION, c.COLECTOMY)
        else:
            concept_arr = np.full(who.size, concept)
        later_o, later_d = poisson_times(
            rng, co["first"][who] + 1, fu_end[who] + 1, eff.rate_after_first
        )
        events.append((who, co["first"][who], concept_arr))
        events.append((who[later_o], later_d, concept_arr[later_o]))
    # IBD flares after the index date are not the outcome, but still happen
    m = has & (dis == 2)
    o, d = poisson_times(
        rng, co["index"][m] + 1, fu_end[m] + 1, p.IBD_FLARE_PER_YEAR["after_index"] * frailty[m]
    )
    events.append((idx[m][o], d, np.full(o.size, c.IBD_FLARE)))
    eo, ed, ec = (np.concatenate(a) for a in zip(*events, strict=True))
    order = np.lexsort((ed, eo))
    co["event_owner"], co["event_day"], co["event_concept"] = eo[order], ed[order], ec[order]
    return co
