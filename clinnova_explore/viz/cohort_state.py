"""State of the cohort dashboard: the definition being edited and the results derived from it.

No Panel import here: the class is plain ``param`` so that it can be tested without a browser.
The edited :class:`~clinnova_explore.cohort.CohortDefinition` is the single source of truth
(:attr:`CohortState.definition`); the form fields (prior observation, entry domain, age range,
one criterion's window and count, concept sets) write their edits into it, and loading a
definition writes its values back into the form. Every number the dashboard shows comes from a
library call on that definition (:func:`~clinnova_explore.analysis.count_cohort`,
:func:`~clinnova_explore.analysis.characterize.characterize`,
:func:`~clinnova_explore.analysis.incidence.incidence`,
:func:`~clinnova_explore.analysis.pathways.pathways`), cached by definition hash, sites and
mode; the heavy ones run only when asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import param

from clinnova_explore.analysis.characterize import characterize
from clinnova_explore.analysis.counts import OVERALL, CohortCountResult, count_cohort
from clinnova_explore.analysis.incidence import IncidenceResult, incidence
from clinnova_explore.analysis.pathways import PathwaysResult, pathways
from clinnova_explore.analysis.table1 import Table1Result
from clinnova_explore.catalog import Catalog, Site
from clinnova_explore.cdm.search import descendant_preview, search_concepts
from clinnova_explore.cdm.vocabulary import concept_name
from clinnova_explore.cohort import CohortDefinition, builtin_definition
from clinnova_explore.cohort.model import ConceptItem, ConceptSet
from clinnova_explore.viz import cohort_diseases as diseases
from clinnova_explore.viz import cohort_edits as edits
from clinnova_explore.viz.cohort_diseases import DISEASES
from clinnova_explore.viz.cohort_edits import ENTRY_DOMAINS

__all__ = ["ANY_DOMAIN", "CohortState"]

ANY_DOMAIN = "Any domain"
T = TypeVar("T")


class CohortState(param.Parameterized):
    """The cohort being edited, the form that edits it and the results derived from it.

    Parameters
    ----------
    catalog
        The federation the cohort is counted in.
    definitions
        Starting definitions by name (default: the shipped ``cohort/definitions/*.yaml``).
    """

    # ---- where and how
    sites = param.ListSelector(default=[], objects=[], doc="Sites the cohort is counted in.")
    mode = param.Selector[str](
        default="federated",
        objects=["federated", "pooled"],
        doc="Federated: one payload per site, combined; pooled: all sites as one database.",
    )
    # ---- starting point
    disease = param.Selector[str](
        default=next(iter(DISEASES)), objects=list(DISEASES), doc="Disease of interest."
    )
    start_from = param.Selector[str](
        default=None, objects=[], allow_None=True, doc="Shipped definition to start from."
    )
    definition = param.ClassSelector(
        default=builtin_definition("ms_diagnosis"),
        class_=CohortDefinition,
        doc="The cohort definition being edited (source of truth); set it to load any definition.",
    )
    edit_error = param.String(
        default="", doc="Why the last edit was refused (empty when it was applied)."
    )
    # ---- form fields: each edit is written into `definition`
    entry_domain = param.Selector[str](
        default="condition", objects=list(ENTRY_DOMAINS), doc="Domain of the first entry event."
    )
    prior_days = param.Integer(
        default=0, bounds=(0, 3650), doc="Days of observation required before the entry event."
    )
    age_range = param.Range(
        default=edits.AGE_BOUNDS,
        bounds=edits.AGE_BOUNDS,
        doc="Age at index (inclusive); edits or adds the definition's age inclusion rule.",
    )
    criterion = param.Selector[str](
        default=None,
        objects=[],
        allow_None=True,
        doc="The inclusion-rule criterion whose window and count are edited.",
    )
    window_start = param.Integer(
        default=None, allow_None=True, doc="Window start, days from index (empty: unbounded)."
    )
    window_end = param.Integer(
        default=None, allow_None=True, doc="Window end, days from index (empty: unbounded)."
    )
    occurrence_type = param.Selector[str](
        default="at_least",
        objects=["at_least", "at_most", "exactly"],
        doc="How the criterion's event count is compared.",
    )
    occurrence_count = param.Integer(
        default=1, bounds=(0, 100), doc="Number of events the criterion compares with."
    )
    # ---- concept sets
    concept_set = param.Selector[str](
        default=None, objects=[], allow_None=True, doc="Concept set shown and edited."
    )
    search_text = param.String(default="", doc="Words, code or concept id to search for.")
    search_domain = param.Selector[str](
        default=ANY_DOMAIN,
        objects=[ANY_DOMAIN, "Condition", "Drug", "Measurement", "Observation", "Procedure"],
        doc="Restrict the concept search to one domain.",
    )
    preview_concept = param.Integer(
        default=None, allow_None=True, doc="Concept whose descendants are previewed."
    )
    # ---- comparisons
    comparator = param.Selector[str](
        default=None, objects=[], allow_None=True, doc="Shipped definition compared in Table 1."
    )
    outcome = param.Selector[str](
        default=None, objects=[], allow_None=True, doc="Outcome cohort of the incidence tab."
    )
    pathway_level = param.Selector[str](
        default=diseases.PATHWAY_LEVELS[0],
        objects=list(diseases.PATHWAY_LEVELS),
        doc="Draw treatment pathways by drug class or by ingredient.",
    )
    max_path_length = param.Integer(
        default=3, bounds=(1, 5), doc="Treatment steps kept per pathway."
    )

    def __init__(
        self,
        catalog: Catalog,
        definitions: dict[str, CohortDefinition] | None = None,
        **params: Any,
    ) -> None:
        self.catalog = catalog
        self.definitions = dict(
            diseases.shipped_definitions() if definitions is None else definitions
        )
        # (kind, definition hashes and options, sites, mode) -> result
        self._cache: dict[tuple[str, Hashable, tuple[str, ...], str], Any] = {}
        self._syncing = False
        self._outcomes: dict[str, CohortDefinition] = {}
        self.param.sites.objects = catalog.site_ids
        params.setdefault("sites", list(catalog.site_ids))
        start = params.pop("start_from", None)
        given = params.pop("definition", None)
        super().__init__(**params)
        self._pick_disease()
        if start is not None:
            self.start_from = start
        if given is not None:
            self.definition = given

    @classmethod
    def from_path(cls, path: str | Path | None = None) -> CohortState:
        """Build the state for a catalog file (default: ``$CLINNOVA_CATALOG`` or the project's)."""
        return cls(Catalog.load(path))

    # ------------------------------------------------------------------ loading
    @param.depends("disease", watch=True)
    def _pick_disease(self) -> None:
        names = diseases.definitions_for(self.disease, self.definitions)
        starts = diseases.treatment_starts(names, self.definitions)
        self.param.start_from.objects = names
        self.param.comparator.objects = names
        outcomes = diseases.outcomes_for(self.disease, self.definitions)
        self.param.outcome.objects = list(outcomes)
        self.outcome = next(iter(outcomes), None)
        self._outcomes = outcomes
        # start from the first treatment-start cohort; compare with the next one
        first = (starts or names)[0] if names else None
        others = [n for n in [*starts, *names] if n != first]
        self.comparator = others[0] if others else None
        if first is not None:
            self.start_from = first

    @param.depends("start_from", watch=True)
    def _load_start(self) -> None:
        if self.start_from is not None:
            self.definition = self.definitions[self.start_from]

    @param.depends("definition", watch=True, on_init=True)
    def _sync_form(self) -> None:
        """Write the definition's values back into the form fields (without editing it)."""
        defn = self.definition
        self._syncing = True
        try:
            keys = edits.criterion_keys(defn)
            self.param.criterion.objects = keys
            self.param.concept_set.objects = list(defn.concept_sets)
            criterion = self.criterion if self.criterion in keys else (keys[0] if keys else None)
            values: dict[str, Any] = {
                "entry_domain": defn.entry.events[0].domain,
                "prior_days": defn.entry.observation.prior_days,
                "age_range": edits.age_range(defn),
                "criterion": criterion,
                "concept_set": self.concept_set
                if self.concept_set in defn.concept_sets
                else next(iter(defn.concept_sets), None),
            }
            if criterion is not None:
                crit = edits.get_criterion(defn, criterion)
                values |= {
                    "window_start": crit.start_window.start,
                    "window_end": crit.start_window.end,
                    "occurrence_type": crit.occurrence.type,
                    "occurrence_count": crit.occurrence.count,
                }
            self.param.update(**values)
        finally:
            self._syncing = False

    # ------------------------------------------------------------------ editing
    def _edit(self, change: Callable[[CohortDefinition], CohortDefinition]) -> None:
        """Apply one edit; an invalid one is reported in ``edit_error`` and the form reset."""
        if self._syncing:
            return
        try:
            edited = change(self.definition)
        except (ValueError, KeyError) as exc:
            self.edit_error = str(exc.args[0] if isinstance(exc, KeyError) else exc)
            self._sync_form()
            return
        self.edit_error = ""
        if edited != self.definition:
            self.definition = edited

    @param.depends("entry_domain", watch=True)
    def _edit_domain(self) -> None:
        self._edit(lambda d: edits.with_entry_domain(d, self.entry_domain))

    @param.depends("prior_days", watch=True)
    def _edit_prior(self) -> None:
        self._edit(lambda d: edits.with_prior_days(d, self.prior_days))

    @param.depends("age_range", watch=True)
    def _edit_age(self) -> None:
        low, high = self.age_range
        self._edit(lambda d: edits.with_age_range(d, int(low), int(high)))

    @param.depends("criterion", watch=True)
    def _show_criterion(self) -> None:
        if not self._syncing:
            self._sync_form()

    @param.depends("window_start", "window_end", "occurrence_type", "occurrence_count", watch=True)
    def _edit_criterion(self) -> None:
        if self.criterion is None:
            return
        key = self.criterion
        self._edit(
            lambda d: edits.with_criterion(
                d,
                key,
                start=self.window_start,
                end=self.window_end,
                occurrence_type=self.occurrence_type,
                count=self.occurrence_count,
            )
        )

    def add_concept(self, concept_id: int, *, descendants: bool = True) -> None:
        """Add a concept to the current concept set (replacing an item for the same concept)."""
        if self.concept_set is None:
            raise ValueError("the definition has no concept set to add a concept to")
        concept_name(concept_id)  # unknown ids fail here, naming the vocabulary file
        item = ConceptItem(concept_id=concept_id, descendants=descendants)
        name = self.concept_set
        self._edit(lambda d: edits.with_concept(d, name, item))

    def remove_concept(self, concept_id: int) -> None:
        """Remove a concept from the current concept set's included concepts."""
        if self.concept_set is None:
            return
        name = self.concept_set
        self._edit(lambda d: edits.without_concept(d, name, concept_id))

    # ------------------------------------------------------------------ cached library calls
    def _site_list(self) -> list[Site]:
        return [self.catalog.site(s) for s in self.sites]

    def computed(self) -> list[str]:
        """Which results have been computed so far (``"counts"``, ``"table1"``, ...)."""
        return sorted({key[0] for key in self._cache})

    def _cached(self, kind: str, key: Hashable, compute: Callable[[], T]) -> T:
        full = (kind, key, tuple(self.sites), self.mode)
        if full not in self._cache:
            self._cache[full] = compute()
        return self._cache[full]

    @param.depends("definition", "sites", "mode")
    def counts(self) -> CohortCountResult | None:
        """Persons and records per site and overall, with attrition (:func:`count_cohort`);
        ``None`` when no site is chosen."""
        if not self.sites:
            return None
        defn = self.definition
        return self._cached(
            "counts",
            defn.definition_hash,
            lambda: count_cohort(defn, self._site_list(), mode=self.mode),
        )

    @param.depends("definition", "sites", "mode")
    def site_counts(self) -> pd.DataFrame:
        """``site, persons, records, suppressed, refused``; the overall row last."""
        result = self.counts()
        if result is None:
            return pd.DataFrame(columns=["site", "persons", "records", "suppressed", "refused"])
        return result.summary

    @param.depends("definition", "sites", "mode")
    def attrition(self) -> pd.DataFrame:
        """Persons after each inclusion rule: one row per rule, one column per site."""
        result = self.counts()
        if result is None:
            return pd.DataFrame(columns=["rule"])
        att = result.attrition
        wide = att.pivot_table(
            index=["step", "rule"], columns="site", values="persons", aggfunc="first", sort=False
        )
        order = [s for s in [*self.sites, OVERALL] if s in wide.columns]
        return wide[order].reset_index().drop(columns="step").rename_axis(columns=None)

    @param.depends("definition")
    def definition_yaml(self) -> str:
        """The edited definition as YAML."""
        return self.definition.to_yaml()

    @param.depends("definition", "comparator", "sites", "mode")
    def table1(self) -> Table1Result | None:
        """Table 1 of the edited cohort against the comparator, with SMDs (on demand)."""
        if self.comparator is None or not self.sites:
            return None
        target, other = self.definition, self.definitions[self.comparator]
        return self._cached(
            "table1",
            (target.definition_hash, other.definition_hash),
            lambda: characterize(target, self._site_list(), comparator=other, mode=self.mode),
        )

    def _outcome_definition(self) -> CohortDefinition | None:
        return None if self.outcome is None else self._outcomes[self.outcome]

    @param.depends("definition", "outcome", "sites", "mode")
    def incidence(self) -> IncidenceResult | None:
        """Incidence of the outcome in the edited cohort, per site and stratum (on demand)."""
        outcome = self._outcome_definition()
        if outcome is None or not self.sites:
            return None
        target = self.definition
        return self._cached(
            "incidence",
            (target.definition_hash, outcome.definition_hash),
            lambda: incidence(target, outcome, self._site_list(), mode=self.mode),
        )

    @param.depends("definition", "disease", "pathway_level", "max_path_length", "sites", "mode")
    def pathways(self) -> PathwaysResult | None:
        """Treatment pathways of the disease's drugs in the edited cohort (on demand)."""
        if not self.sites:
            return None
        target = self.definition
        events = diseases.treatment_events(self.disease, self.pathway_level)
        return self._cached(
            "pathways",
            (target.definition_hash, tuple(events.items()), self.max_path_length),
            lambda: pathways(
                target, events, self._site_list(), max_length=self.max_path_length, mode=self.mode
            ),
        )

    # ------------------------------------------------------------------ vocabulary
    @param.depends("search_text", "search_domain")
    def search_results(self) -> pd.DataFrame:
        """Concepts matching the search text (empty until something is typed)."""
        text = self.search_text.strip()
        domain = None if self.search_domain == ANY_DOMAIN else self.search_domain
        if not text:
            return search_concepts("", domain=domain, limit=1).iloc[0:0]
        return search_concepts(text, domain=domain, limit=50)

    @param.depends("preview_concept")
    def preview(self) -> pd.DataFrame:
        """Descendants of the previewed concept (what "include descendants" adds)."""
        if self.preview_concept is None:
            return descendant_preview(0).iloc[0:0]
        return descendant_preview(self.preview_concept)

    @param.depends("definition", "concept_set")
    def concept_set_items(self) -> pd.DataFrame:
        """The current concept set's items with names: ``concept_id, concept_name, role,
        descendants``."""
        sets: dict[str, ConceptSet] = self.definition.concept_sets
        return edits.concept_set_frame(sets.get(self.concept_set) if self.concept_set else None)
