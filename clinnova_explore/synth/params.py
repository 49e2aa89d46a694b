"""The parameters of the synthetic data-generating process: the single source of the truth.

Every number the generator draws from lives here, so ``truth.json`` can report exactly what
was simulated. Times are in days (integers since 1970-01-01) unless a name says ``_per_year``;
hazards are per year.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from clinnova_explore.cdm import concepts as c

__all__ = [
    "DATA_CUT",
    "DATA_CUT_DATE",
    "DISEASES",
    "DISEASE_MIX",
    "EFFECTS",
    "STUDY_START",
    "Effect",
    "day",
]

EPOCH = dt.date(1970, 1, 1)


def day(d: dt.date) -> int:
    """Days since 1970-01-01 (the generator's internal date)."""
    return (d - EPOCH).days


STUDY_START = day(dt.date(2012, 1, 1))
DATA_CUT_DATE = dt.date(2025, 12, 31)
DATA_CUT = day(DATA_CUT_DATE)
#: Entry (first visit) is uniform in [STUDY_START, LAST_ENTRY].
LAST_ENTRY = day(dt.date(2023, 6, 30))

DISEASES = ("ms", "ra", "ibd")

#: Disease mix per site (MS, RA, IBD); the share-weighted mean is ~40/30/30.
DISEASE_MIX: dict[str, tuple[float, float, float]] = {
    "luxembourg": (0.40, 0.30, 0.30),
    "strasbourg": (0.45, 0.25, 0.30),
    "basel": (0.35, 0.30, 0.35),
    "freiburg": (0.40, 0.35, 0.25),
    "homburg": (0.38, 0.30, 0.32),
}
DEFAULT_MIX = (0.40, 0.30, 0.30)

#: Probability of female sex per disease.
FEMALE = {"ms": 0.70, "ra": 0.75, "ibd": 0.50}
#: Age at disease onset: normal(mean, sd) clipped to [low, high] years.
ONSET_AGE = {
    "ms": (32.0, 7.0, 18.0, 50.0),
    "ra": (52.0, 10.0, 30.0, 75.0),
    "ibd": (27.0, 7.0, 15.0, 45.0),
}
#: Years from onset to the first visit in the window: exponential mean.
YEARS_ONSET_TO_ENTRY = 2.0
MS_SUBTYPES = ((c.RRMS, 0.85), (c.PPMS, 0.10), (c.SPMS, 0.05))
#: Yearly hazard of RRMS -> SPMS conversion (diagnosis code changes from then on).
SPMS_CONVERSION_PER_YEAR = 0.03
CROHNS_SHARE = 0.55
SEROPOSITIVE_RA_SHARE = 0.70

#: Gompertz mortality h(age) = GOMPERTZ_B * exp(GOMPERTZ_G * age_years) per year.
GOMPERTZ_B = 4.0e-5
GOMPERTZ_G = 0.09
LOSS_TO_FOLLOW_UP_PER_YEAR = 0.04

#: Regular outpatient visits: gap uniform in days.
VISIT_GAP_DAYS = (91, 200)
#: Baseline visit: index date minus uniform(low, high) days; no other scheduled visit falls
#: in the 90 days before (and on) the index date.
BASELINE_VISIT_BEFORE_INDEX = (7, 60)
BASELINE_WINDOW_DAYS = 90
PRIOR_EVENT_WINDOW_DAYS = 730

ELECTIVE_ADMISSIONS_PER_YEAR = 0.04
SERIOUS_INFECTION_PER_YEAR = {"none": 0.010, "moderate": 0.022, "strong": 0.045}
COMORBIDITY = {c.HYPERTENSION: 0.25, c.TYPE_2_DIABETES: 0.08, c.DEPRESSION: 0.15}
DEPRESSION_MS = 0.25


@dataclass(frozen=True)
class Effect:
    """One disease's ground-truth treatment-effect model (Cox PH with a Weibull baseline)."""

    disease: str
    exposed: dict[int, float]
    reference: dict[int, float]
    #: log hazard ratio of the exposed arm vs the reference arm
    log_hr: float
    #: log hazard ratios of the (centered, scaled) baseline covariates
    coefficients: dict[str, float]
    #: covariate centering/scaling: name -> (center, scale); x = (raw - center) / scale
    scaling: dict[str, tuple[float, float]]
    #: Weibull baseline: H0(t) = scale * t_years ** shape at the reference covariates
    shape: float
    scale_per_year: float
    #: baseline-hazard multiplier per site (site effect)
    site_hazard: dict[str, float]
    #: logistic treatment choice P(exposed) = expit(intercept + sum(coef * x) + site_offset)
    choice_intercept: float
    choice_coefficients: dict[str, float]
    choice_site_offset: dict[str, float]
    #: probability that a person ever reaches the index treatment (if follow-up allows)
    p_index: float
    #: index date = entry + uniform(low, high) days
    index_delay_days: tuple[int, int]
    #: event rate after the first outcome event, and before the index date (per year)
    rate_after_first: float
    rate_before_index: float
    #: probability of switching drug after the first outcome event (escalation)
    p_switch_after_event: float = 0.0
    notes: dict[str, str] = field(default_factory=dict)


_SITES = ("luxembourg", "strasbourg", "basel", "freiburg", "homburg")

EFFECTS: dict[str, Effect] = {
    "ms": Effect(
        disease="ms",
        exposed={c.FINGOLIMOD: 0.30, c.NATALIZUMAB: 0.30, c.OCRELIZUMAB: 0.40},
        reference={
            c.INTERFERON_BETA_1A: 0.30,
            c.GLATIRAMER: 0.30,
            c.TERIFLUNOMIDE: 0.20,
            c.DIMETHYL_FUMARATE: 0.20,
        },
        log_hr=-0.80,
        coefficients={
            "baseline_edss": 0.30,
            "prior_relapses": 0.35,
            "age_per_10y": -0.15,
            "female": 0.10,
        },
        scaling={
            "baseline_edss": (3.0, 1.0),
            "prior_relapses": (0.0, 1.0),
            "age_per_10y": (40.0, 10.0),
            "female": (0.0, 1.0),
        },
        shape=1.1,
        scale_per_year=0.30,
        site_hazard=dict(zip(_SITES, (1.00, 1.25, 0.80, 1.10, 0.90), strict=True)),
        choice_intercept=-1.0,
        choice_coefficients={"baseline_edss": 0.90, "prior_relapses": 0.80},
        choice_site_offset=dict(zip(_SITES, (0.0, -0.3, 0.4, 0.2, -0.2), strict=True)),
        p_index=0.92,
        index_delay_days=(120, 900),
        rate_after_first=0.30,
        rate_before_index=0.55,
        p_switch_after_event=0.60,
    ),
    "ra": Effect(
        disease="ra",
        exposed={c.ADALIMUMAB: 0.55, c.ETANERCEPT: 0.45},
        reference={c.TOCILIZUMAB: 0.50, c.TOFACITINIB: 0.50},
        log_hr=-0.43,
        coefficients={"baseline_das28": 0.35, "age_per_10y": -0.10, "female": 0.10},
        scaling={"baseline_das28": (5.0, 1.0), "age_per_10y": (55.0, 10.0), "female": (0.0, 1.0)},
        shape=1.0,
        scale_per_year=0.40,
        site_hazard=dict(zip(_SITES, (1.00, 0.85, 1.15, 1.05, 0.95), strict=True)),
        choice_intercept=0.6,
        choice_coefficients={"baseline_das28": 1.00},
        choice_site_offset=dict(zip(_SITES, (0.0, 0.3, -0.3, 0.1, -0.1), strict=True)),
        p_index=0.75,
        index_delay_days=(240, 900),
        rate_after_first=0.35,
        rate_before_index=0.50,
        p_switch_after_event=0.50,
    ),
    "ibd": Effect(
        disease="ibd",
        exposed={c.INFLIXIMAB: 0.55, c.ADALIMUMAB: 0.45},
        reference={c.VEDOLIZUMAB: 0.50, c.USTEKINUMAB: 0.50},
        log_hr=-0.51,
        coefficients={
            "log_calprotectin": 0.50,
            "crp_per_10": 0.15,
            "crohns": 0.40,
            "age_per_10y": -0.10,
            "female": 0.0,
        },
        scaling={
            "log_calprotectin": (5.5, 1.0),
            "crp_per_10": (10.0, 10.0),
            "crohns": (0.0, 1.0),
            "age_per_10y": (35.0, 10.0),
            "female": (0.0, 1.0),
        },
        shape=0.9,
        scale_per_year=0.08,
        site_hazard=dict(zip(_SITES, (1.00, 1.20, 0.85, 0.90, 1.10), strict=True)),
        choice_intercept=0.2,
        choice_coefficients={"log_calprotectin": 1.10, "crp_per_10": 0.50},
        choice_site_offset=dict(zip(_SITES, (0.0, 0.2, -0.2, 0.3, -0.3), strict=True)),
        p_index=0.70,
        index_delay_days=(180, 1000),
        rate_after_first=0.05,
        rate_before_index=0.0,
        p_switch_after_event=0.40,
    ),
}

#: IBD flares are events but not the IBD outcome (surgery is): yearly rates.
IBD_FLARE_PER_YEAR = {"before_index": 0.60, "after_index": 0.30}
#: Share of IBD flares admitted (inpatient) and seen in the emergency department.
IBD_FLARE_ADMITTED = 0.30
IBD_FLARE_EMERGENCY = 0.20
MS_RELAPSE_EMERGENCY = 0.30
PREDNISOLONE_COURSE_DAYS = 42
