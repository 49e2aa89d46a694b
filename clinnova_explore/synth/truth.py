"""The ground truth written beside the data (``truth.json``): what was simulated, exactly."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np

from clinnova_explore.synth import params as p
from clinnova_explore.synth.faults import CATCHER
from clinnova_explore.synth.model import Course
from clinnova_explore.synth.population import NEVER, YEAR, Persons

__all__ = ["TruthAccumulator", "effect_definitions"]

_DEFINITIONS = {
    "ms": {
        "index": "first start of any MS disease-modifying therapy (medications table; drug "
        "class MS_DMT)",
        "exposed": "high-efficacy DMT at index (fingolimod, natalizumab, ocrelizumab)",
        "reference": "platform DMT at index (interferon beta-1a, glatiramer, teriflunomide, "
        "dimethyl fumarate)",
        "outcome": "first MS relapse (events table, MS_RELAPSE) dated after the index date",
        "covariates": {
            "baseline_edss": "EDSS recorded at the baseline visit, the only EDSS measured in "
            "the 90 days before (and on) the index date",
            "prior_relapses": "MS relapse events dated in [index - 730 days, index - 1 day]",
            "age_per_10y": "(age at index in years - 40) / 10, age = (index - birth) / 365.25",
            "female": "1 if sex is female",
        },
    },
    "ra": {
        "index": "first start of a biologic or targeted synthetic DMARD (adalimumab, "
        "etanercept, tocilizumab, tofacitinib) after methotrexate",
        "exposed": "anti-TNF at index (adalimumab, etanercept)",
        "reference": "other mode of action at index (tocilizumab, tofacitinib)",
        "outcome": "first RA flare (events table, RA_FLARE) dated after the index date",
        "covariates": {
            "baseline_das28": "DAS28-CRP recorded at the baseline visit (the only DAS28-CRP in "
            "the 90 days before and on the index date)",
            "age_per_10y": "(age at index - 55) / 10",
            "female": "1 if sex is female",
        },
    },
    "ibd": {
        "index": "first start of an advanced IBD therapy (infliximab, adalimumab, "
        "vedolizumab, ustekinumab)",
        "exposed": "anti-TNF at index (infliximab, adalimumab)",
        "reference": "vedolizumab or ustekinumab at index",
        "outcome": "first IBD surgery (procedures table: COLECTOMY for ulcerative colitis, "
        "BOWEL_RESECTION for Crohn's disease) dated after the index date; IBD "
        "hospitalizations are not the outcome",
        "covariates": {
            "log_calprotectin": "ln(fecal calprotectin in ug/g at the baseline visit) - 5.5",
            "crp_per_10": "(CRP in mg/L at the baseline visit - 10) / 10",
            "crohns": "1 for Crohn's disease, 0 for ulcerative colitis",
            "age_per_10y": "(age at index - 35) / 10",
            "female": "1 if sex is female (true coefficient 0)",
        },
    },
}
_COMMON = {
    "censoring": "at the end of follow-up: death (patients death date), loss to follow-up or "
    "the data cut 2025-12-31; every person has a final contact visit on that "
    "date, so the end of follow-up equals the person's last visit end date. "
    "Death is a competing event (cause-specific hazards).",
    "time_scale": "days from the index date; the outcome day is >= index + 1",
    "model": "Cox proportional hazards stratified by site recovers log_hazard_ratio and the "
    "coefficients: h(t|x) = h0_site(t) * exp(log_hazard_ratio * exposed + "
    "sum(coefficients * x)); h0_site(t) = site_hazard * scale * shape * "
    "t_years**(shape - 1)",
    "switching": "no drug switch before the first outcome event; afterwards some persons "
    "switch (escalation), so the index drug is the drug at risk",
    "baseline_visit": "7-60 days before the index date; no other scheduled visit lies in the "
    "90 days before (and on) the index date",
}


def effect_definitions() -> dict:
    """The exact ground-truth effect of every disease (without observed counts)."""
    out = {}
    for name, eff in p.EFFECTS.items():
        out[name] = {
            **_DEFINITIONS[name],
            **_COMMON,
            "log_hazard_ratio": eff.log_hr,
            "hazard_ratio": round(math.exp(eff.log_hr), 6),
            "coefficients": dict(eff.coefficients),
            "covariate_scaling": {k: list(v) for k, v in eff.scaling.items()},
            "baseline_hazard": {
                "distribution": "weibull",
                "shape": eff.shape,
                "scale_per_year": eff.scale_per_year,
            },
            "site_baseline_hazard_multiplier": dict(eff.site_hazard),
            "treatment_choice": {
                "model": "logistic: P(exposed) = expit(intercept + sum(coefficients * x) + "
                "site_offset), x scaled as covariate_scaling",
                "intercept": eff.choice_intercept,
                "coefficients": dict(eff.choice_coefficients),
                "site_offset": dict(eff.choice_site_offset),
                "confounding": "sicker persons (higher baseline severity) are more likely to "
                "get the exposed drug and have a higher outcome hazard, so the "
                "unadjusted hazard ratio is biased toward 1 (or above)",
            },
            "p_reach_index": eff.p_index,
            "index_delay_days": list(eff.index_delay_days),
            "event_rate_after_first_per_year": eff.rate_after_first,
        }
    return out


class TruthAccumulator:
    """Sums over chunks what the truth file reports about the simulated data."""

    def __init__(self) -> None:
        self.sites: dict[str, dict] = {}
        # counts stay int, person-years and severity sums are float
        self.obs: dict[str, defaultdict[str, float]] = {d: defaultdict(int) for d in p.DISEASES}

    def add(self, site: str, pe: Persons, co: Course) -> None:
        """Add one chunk."""
        s = self.sites.setdefault(
            site, {"persons": 0, "persons_by_disease": Counter(), "deaths": 0}
        )
        s["persons"] += int(pe["entry"].size)
        s["deaths"] += int((pe["death"] < NEVER).sum())
        for k, name in enumerate(p.DISEASES):
            s["persons_by_disease"][name] += int((pe["disease"] == k).sum())
            m = (pe["disease"] == k) & (co["index"] < NEVER)
            end = np.minimum(co["first"][m], pe["fu_end"][m])
            years = (end - co["index"][m]) / YEAR
            event = co["first"][m] < NEVER
            exp = co["exposed"][m]
            sev = {"ms": co["edss_base"], "ra": co["das_base"], "ibd": co["calpro_base"]}[name]
            o = self.obs[name]
            for arm, sel in (("exposed", exp), ("reference", ~exp)):
                o[f"n_{arm}"] += int(sel.sum())
                o[f"events_{arm}"] += int(event[sel].sum())
                o[f"person_years_{arm}"] += float(years[sel].sum())
                o[f"sum_severity_{arm}"] += float(sev[m][sel].sum())

    def result(self) -> tuple[dict, dict]:
        """(sites, effects with observed summaries)."""
        effects = effect_definitions()
        severity = {"ms": "baseline_edss", "ra": "baseline_das28", "ibd": "baseline_calprotectin"}
        for name, o in self.obs.items():
            obs: dict[str, int | float | None] = {}
            for arm in ("exposed", "reference"):
                n = o[f"n_{arm}"]
                obs[f"n_{arm}"] = n
                obs[f"events_{arm}"] = o[f"events_{arm}"]
                obs[f"person_years_{arm}"] = round(o[f"person_years_{arm}"], 3)
                obs[f"mean_{severity[name]}_{arm}"] = (
                    round(o[f"sum_severity_{arm}"] / n, 4) if n else None
                )
            rates = [
                o[f"events_{a}"] / o[f"person_years_{a}"] if o[f"person_years_{a}"] else 0
                for a in ("exposed", "reference")
            ]
            obs["crude_rate_ratio"] = round(rates[0] / rates[1], 4) if rates[1] else None
            effects[name]["observed"] = obs
        sites = {}
        for site, s in self.sites.items():
            sites[site] = {
                "persons": s["persons"],
                "deaths": s["deaths"],
                "persons_by_disease": dict(s["persons_by_disease"]),
            }
        return sites, effects


def fault_summary(faults: list[dict]) -> dict:
    """Counts of injected faults by kind, by site and by catcher."""
    return {
        "total": len(faults),
        "by_kind": dict(sorted(Counter(f["kind"] for f in faults).items())),
        "by_catcher": dict(sorted(Counter(f["catcher"] for f in faults).items())),
        "by_site": {
            s: dict(sorted(Counter(f["kind"] for f in faults if f["site"] == s).items()))
            for s in sorted({f["site"] for f in faults})
        },
        "catchers": dict(CATCHER),
    }
