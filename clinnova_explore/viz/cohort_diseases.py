"""The disease context of the cohort dashboard: which cohorts, outcomes and treatments belong
to multiple sclerosis, rheumatoid arthritis and inflammatory bowel disease.

Membership is read from the vocabulary: a definition belongs to a disease when its concept sets
reach the disease's condition (or a subtype), or, when they reach no disease condition at all,
the disease's treatments, clinical events or markers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from clinnova_explore.cdm import concepts as c
from clinnova_explore.cdm.vocabulary import concept_name, descendants, load_vocabulary
from clinnova_explore.cohort import CohortDefinition, builtin_definition, builtin_definition_names

__all__ = [
    "DISEASES",
    "PATHWAY_LEVELS",
    "Disease",
    "definitions_for",
    "outcome_definitions",
    "outcomes_for",
    "shipped_definitions",
    "treatment_events",
    "treatment_starts",
]


@dataclass(frozen=True)
class Disease:
    """The concepts that tie a cohort to one disease.

    Attributes
    ----------
    condition
        The disease's condition concept (its descendants are its subtypes).
    treatments
        Drug classes used to treat it (their ingredients are pathway events).
    groups
        The treatment classes pathways are drawn with at the class level.
    events
        Clinical events (relapses, flares) that serve as incidence outcomes.
    markers
        Disease-specific measurements.
    """

    condition: int
    treatments: tuple[int, ...]
    groups: tuple[int, ...]
    events: tuple[int, ...]
    markers: tuple[int, ...]

    def own(self) -> set[int]:
        """The condition and its subtypes."""
        return descendants(self.condition)

    def related(self) -> set[int]:
        """Treatments (with their ingredients), events and markers."""
        out: set[int] = set()
        for cid in (*self.treatments, *self.events, *self.markers):
            out |= descendants(cid)
        return out


_RA_DRUGS = (c.CSDMARD, c.BDMARD, c.TSDMARD)
_IBD_DRUGS = (c.AMINOSALICYLATE, c.THIOPURINE, c.IBD_ADVANCED_THERAPY)
DISEASES: dict[str, Disease] = {
    "Multiple sclerosis": Disease(
        c.MULTIPLE_SCLEROSIS,
        (c.MS_DMT,),
        (c.MS_DMT_PLATFORM, c.MS_DMT_HIGH_EFFICACY),
        (c.MS_RELAPSE,),
        (c.EDSS,),
    ),
    "Rheumatoid arthritis": Disease(
        c.RHEUMATOID_ARTHRITIS, _RA_DRUGS, _RA_DRUGS, (c.RA_FLARE,), (c.DAS28_CRP,)
    ),
    "Inflammatory bowel disease": Disease(
        c.IBD, _IBD_DRUGS, _IBD_DRUGS, (c.IBD_FLARE,), (c.FECAL_CALPROTECTIN,)
    ),
}


# ---------------------------------------------------------------------- definitions by disease
def shipped_definitions() -> dict[str, CohortDefinition]:
    """The demo definitions of ``clinnova_explore/cohort/definitions/*.yaml``, by their name.

    Examples
    --------
    >>> "MS, high-efficacy DMT start" in shipped_definitions()
    True
    """
    found: dict[str, CohortDefinition] = {}
    for stem in builtin_definition_names():
        defn = builtin_definition(stem)
        found[defn.name if defn.name not in found else f"{defn.name} ({stem})"] = defn
    return found


def _concepts(defn: CohortDefinition) -> set[int]:
    out: set[int] = set()
    for cs in defn.concept_sets.values():
        for item in cs.include:
            try:
                out |= descendants(item.concept_id) if item.descendants else {item.concept_id}
            except KeyError:  # a concept outside the shipped vocabulary (e.g. an ATLAS import)
                out.add(item.concept_id)
    return out


def definitions_for(disease: str, definitions: Mapping[str, CohortDefinition]) -> list[str]:
    """Names of the definitions that belong to ``disease``, in the given order.

    A definition whose concept sets include a disease's condition (or a subtype) belongs to
    that disease only; one that includes no disease condition belongs to every disease whose
    treatments, events or markers it includes.
    """
    target = DISEASES[disease]
    out = []
    for name, defn in definitions.items():
        found = _concepts(defn)
        owners = [d for d in DISEASES.values() if found & d.own()]
        if (owners and target in owners) or (not owners and found & target.related()):
            out.append(name)
    return out


def treatment_starts(
    names: Iterable[str], definitions: Mapping[str, CohortDefinition]
) -> list[str]:
    """The names whose first entry event is a drug (treatment-start cohorts), in order."""
    return [n for n in names if definitions[n].entry.events[0].domain == "drug"]


def outcomes_for(
    disease: str, definitions: Mapping[str, CohortDefinition]
) -> dict[str, CohortDefinition]:
    """Outcome cohorts for the disease: shipped definitions built on one of its events first,
    then an every-occurrence cohort for each event no shipped definition covers, then the
    disease's other definitions."""
    names = definitions_for(disease, definitions)
    events = set(DISEASES[disease].events)
    on_event = [n for n in names if _concepts(definitions[n]) & events]
    covered = set().union(*(_concepts(definitions[n]) for n in on_event)) if on_event else set()
    built = {
        label: defn
        for label, defn in outcome_definitions(disease).items()
        if not _concepts(defn) & covered
    }
    rest = [n for n in names if n not in on_event]
    return {
        **{n: definitions[n] for n in on_event},
        **built,
        **{n: definitions[n] for n in rest},
    }


def _domain(concept_id: int) -> str:
    concept = load_vocabulary()["concept"].set_index("concept_id")
    return str(concept.loc[concept_id, "domain_id"]).lower()


def outcome_definitions(disease: str) -> dict[str, CohortDefinition]:
    """One outcome cohort per disease event: every occurrence, a one-day era each.

    Examples
    --------
    >>> list(outcome_definitions("Multiple sclerosis"))
    ['Multiple sclerosis relapse (every occurrence)']
    """
    out = {}
    for event in DISEASES[disease].events:
        label = f"{concept_name(event)} (every occurrence)"
        out[label] = CohortDefinition.from_dict(
            {
                "name": label,
                "concept_sets": {"outcome": {"include": [event]}},
                "entry": {
                    "events": [{"domain": _domain(event), "concept_set": "outcome"}],
                    "limit": "all",
                },
                "qualified_limit": "all",
                "expression_limit": "all",
                "exit": {"type": "fixed_offset", "anchor": "start", "offset_days": 0},
            },
            source=f"outcome cohort for {concept_name(event)}",
        )
    return out


PATHWAY_LEVELS: tuple[str, ...] = ("drug class", "ingredient")


def treatment_events(disease: str, level: str = "ingredient") -> dict[str, int]:
    """Pathway events of a disease: its drug classes, or the standard ingredients in them.

    Examples
    --------
    >>> sorted(treatment_events("Multiple sclerosis"))[:3]
    ['dimethyl fumarate', 'fingolimod', 'glatiramer']
    >>> list(treatment_events("Multiple sclerosis", "drug class"))
    ['MS platform (moderate-efficacy) therapy', 'MS high-efficacy therapy']
    """
    if level not in PATHWAY_LEVELS:
        raise ValueError(f"pathway level {level!r}: choose one of {', '.join(PATHWAY_LEVELS)}")
    if level == "drug class":
        return {concept_name(cls): cls for cls in DISEASES[disease].groups}
    concept = load_vocabulary()["concept"].set_index("concept_id")
    ids: set[int] = set()
    for cls in DISEASES[disease].treatments:
        ids |= descendants(cls)
    ingredients = sorted(i for i in ids if concept.loc[i, "standard_concept"] == "S")
    return {str(concept.loc[i, "concept_name"]): int(i) for i in ingredients}
