"""Ready-made treatment comparisons for the three demo diseases, as time-to-event specs.

Each preset is an active-comparator, new-user design: the index date is the first-ever start
of any therapy of the class (first MS disease-modifying therapy, first biologic or targeted
DMARD in RA, first advanced IBD therapy) and the arm is the drug started that day, so each
person is in exactly one arm (shipped definitions ``*_first_*``). Follow-up is intention to
treat (to the end of the observation period), from the day after the index date; death ends
it. The baseline covariates are the confounders of the synthetic federation's ground truth
(``truth.json``: ``effects.<disease>.covariates``); implausible measurement values (outside
:data:`clinnova_explore.cdm.concepts.PLAUSIBLE_RANGE`) count as missing.

>>> comparison_names()[0]
'ms_high_efficacy_vs_platform'
>>> disease_of("ra_anti_tnf_vs_other_moa")
'ra'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from clinnova_explore.analysis.survival.tte import TimeToEventError, TimeToEventSpec
from clinnova_explore.analysis.survival.tte_covariates import Covariate
from clinnova_explore.cdm import concepts as c
from clinnova_explore.cohort import CohortDefinition

__all__ = ["OUTCOMES", "PRESETS_BY_DISEASE", "comparison", "comparison_names", "disease_of"]


def _every(
    name: str, description: str, domain: str, concept_ids: tuple[int, ...]
) -> CohortDefinition:
    """Every record of the concepts as a one-day era on its date (no merging), so the first
    event after any date is always an era start: what a time-to-event outcome needs."""
    return CohortDefinition.from_dict(
        {
            "name": name,
            "description": description,
            "concept_sets": {
                "events": {
                    "include": [{"concept_id": i, "descendants": False} for i in concept_ids]
                }
            },
            "entry": {"events": [{"domain": domain, "concept_set": "events"}], "limit": "all"},
            "expression_limit": "all",
            "exit": {"type": "fixed_offset", "anchor": "start", "offset_days": 0},
        },
        source=f"outcome {name!r}",
    )


OUTCOMES: Mapping[str, CohortDefinition] = MappingProxyType(
    {
        "ms_relapse": _every(
            "MS relapse onset",
            "Every recorded MS relapse (Observation domain), one day each.",
            "observation",
            (c.MS_RELAPSE,),
        ),
        "ra_flare": _every(
            "RA flare onset",
            "Every recorded rheumatoid arthritis flare (Observation domain), one day each.",
            "observation",
            (c.RA_FLARE,),
        ),
        "ibd_surgery": _every(
            "IBD surgery",
            "Every colectomy or bowel resection, one day each.",
            "procedure",
            (c.COLECTOMY, c.BOWEL_RESECTION),
        ),
    }
)
"""The presets' outcome cohorts by name: every event on its own one-day era. (The shipped
``ms_relapse`` merges relapses into 30-day episodes, so a relapse soon after index can hide in
an episode that began before it; ``ibd_surgery`` keeps only the first operation in history.)"""


def _latest(name: str, concept_id: int, *, log: bool = False) -> Covariate:
    """The latest plausible value of a measurement in the 90 days before (and on) index."""
    return Covariate(
        name,
        "measurement_latest",
        "measurement",
        (concept_id,),
        (-90, 0),
        value_range=c.PLAUSIBLE_RANGE.get(concept_id),
        transform="log" if log else "identity",
    )


def _ms() -> TimeToEventSpec:
    return TimeToEventSpec(
        name="MS: first DMT high-efficacy vs platform, time to first relapse",
        target="ms_start_first_dmt_high_efficacy",
        comparator="ms_start_first_dmt_platform",
        outcome=OUTCOMES["ms_relapse"],
        covariates=(
            _latest("baseline_edss", c.EDSS),
            Covariate("prior_relapses", "count", "observation", (c.MS_RELAPSE,), (-730, -1)),
        ),
    )


def _ra() -> TimeToEventSpec:
    return TimeToEventSpec(
        name="RA: first advanced DMARD anti-TNF vs other mode of action, time to first flare",
        target="ra_start_first_advanced_anti_tnf",
        comparator="ra_start_first_advanced_other_moa",
        outcome=OUTCOMES["ra_flare"],
        covariates=(
            _latest("baseline_das28", c.DAS28_CRP),
            Covariate("prior_flares", "count", "observation", (c.RA_FLARE,), (-730, -1)),
        ),
    )


def _ibd() -> TimeToEventSpec:
    return TimeToEventSpec(
        name="IBD: first advanced therapy anti-TNF vs vedolizumab/ustekinumab, time to surgery",
        target="ibd_start_first_advanced_anti_tnf",
        comparator="ibd_start_first_advanced_other",
        outcome=OUTCOMES["ibd_surgery"],
        covariates=(
            _latest("log_calprotectin", c.FECAL_CALPROTECTIN, log=True),
            _latest("baseline_crp", c.CRP),
            Covariate("crohns", "any", "condition", (c.CROHNS_DISEASE,), (None, 0)),
        ),
    )


_PRESETS: dict[str, tuple[str, Callable[[], TimeToEventSpec]]] = {
    "ms_high_efficacy_vs_platform": ("ms", _ms),
    "ra_anti_tnf_vs_other_moa": ("ra", _ra),
    "ibd_anti_tnf_vs_other_advanced": ("ibd", _ibd),
}

PRESETS_BY_DISEASE: dict[str, list[str]] = {
    disease: [name for name, (d, _) in _PRESETS.items() if d == disease]
    for disease in ("ms", "ra", "ibd")
}
"""Disease (``ms``, ``ra``, ``ibd``) -> names of its presets, e.g. for a dashboard selector."""


def comparison_names() -> list[str]:
    """Names of the shipped comparisons, MS first."""
    return list(_PRESETS)


def _known(name: str) -> tuple[str, Callable[[], TimeToEventSpec]]:
    if name not in _PRESETS:
        raise TimeToEventError(
            f"no shipped comparison {name!r}; choose one of {', '.join(_PRESETS)}"
        )
    return _PRESETS[name]


def comparison(name: str) -> TimeToEventSpec:
    """The time-to-event spec of a shipped comparison.

    Parameters
    ----------
    name
        One of :func:`comparison_names`: ``ms_high_efficacy_vs_platform`` (first MS DMT
        high-efficacy vs platform; first relapse; ``baseline_edss``, ``prior_relapses``),
        ``ra_anti_tnf_vs_other_moa`` (first advanced DMARD anti-TNF vs tocilizumab or
        tofacitinib; first flare; ``baseline_das28``, ``prior_flares``),
        ``ibd_anti_tnf_vs_other_advanced`` (first advanced therapy anti-TNF vs vedolizumab or
        ustekinumab; first bowel surgery; ``log_calprotectin`` (natural log), ``baseline_crp``,
        ``crohns``).

    Raises
    ------
    TimeToEventError
        For an unknown name (the message lists the known ones).
    """
    return _known(name)[1]()


def disease_of(name: str) -> str:
    """The disease (``ms``, ``ra`` or ``ibd``) a shipped comparison belongs to."""
    return _known(name)[0]
