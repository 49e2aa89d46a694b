"""Table 1: describe a cohort, or compare two, per site and overall, with SMDs.

:func:`characterize` runs the :class:`Characterize` analysis. At each site, ``local`` compiles
the cohort definition(s), describes the cohort entries (one row per entry, as OHDSI
FeatureExtraction does) with ibis aggregates pushed into the site's database, suppresses small
counts and releases two tables:

``counts``
    ``cohort, variable, level, part, n, suppressed``: cohort entries and persons, the sex, age
    group and index year distributions, entries with each binary covariate (``part="present"``)
    and, for age and each measurement, entries with and without a value (``observed`` /
    ``missing``).
``moments``
    ``cohort, variable, level, sum, sumsq, mean, sd, q1, median, q3, suppressed`` of age and
    of each measurement's latest value; quartiles only where the site's
    ``policy.allow_quantiles``.

Age at index is ``year(cohort_start_date) - year_of_birth`` (as in Circe and
FeatureExtraction). Before release, counts in ``(0, min_cell_count)`` are blanked, and so is a
complementary cell of the same variable (for a binary covariate: its hidden "absent" count;
for a measurement: its missing count), so no hidden count can be recovered by subtraction.
Moments are withheld when their observed count is small; when it is hidden only as a
complement, the mean, SD and quartiles still leave but the sums do not (see
:mod:`~clinnova_explore.analysis.table1_local`).

``combine`` adds counts, sums and sums of squares across sites, so the overall mean and SD are
exact (Austin's SMDs follow from them); any suppressed contribution makes the overall cell NA
(never a lower bound). Overall
quartiles cannot be combined from site quartiles: they are NA in federated mode and exact in
pooled mode.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from clinnova_explore.analysis.contract import refuse, refuse_small_cohort, run
from clinnova_explore.analysis.covariates import (
    AGE,
    AGE_GROUP,
    DOMAIN_TITLES,
    INDEX_YEAR,
    OTHER_SEX,
    PERSONS,
    RECORDS,
    SEX,
    SEX_LEVELS,
    UNKNOWN,
    Covariate,
    Window,
    check_window,
    default_covariates,
    window_label,
)
from clinnova_explore.analysis.payload import Payload
from clinnova_explore.analysis.result import Provenance
from clinnova_explore.analysis.table1 import Table1Result, assemble
from clinnova_explore.analysis.table1_local import describe_site
from clinnova_explore.catalog import Catalog
from clinnova_explore.cdm.vocabulary import concept_name
from clinnova_explore.cohort import CohortDefinition, compile_cohort

if TYPE_CHECKING:
    from clinnova_explore.analysis.exchange import OnFailure, Runner
    from clinnova_explore.cdm.source import CdmSource

__all__ = ["Characterize", "CharacterizeSpec", "characterize"]


class CharacterizeSpec(BaseModel):
    """What to describe: the cohort(s), the covariates and their windows.

    Parameters
    ----------
    target
        The cohort described.
    comparator
        A second cohort compared with ``target`` (SMDs are target minus comparator).
    windows
        Inclusive day windows relative to the index date for binary covariates.
    measurement_window
        The window in which the latest measurement value is taken.
    covariates
        Covariates in display order; labels left empty are filled with concept names.
    age_breaks
        Lower bounds of the age groups after the first (``(18, 30)`` gives ``<18``,
        ``18-29``, ``30+``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: CohortDefinition
    comparator: CohortDefinition | None = None
    windows: tuple[Window, ...] = ((-365, 0),)
    measurement_window: Window = (-365, 0)
    covariates: tuple[Covariate, ...] = Field(
        default_factory=default_covariates, validate_default=True
    )
    age_breaks: tuple[int, ...] = (18, 30, 40, 50, 60, 70)

    @field_validator("windows")
    @classmethod
    def _check_windows(cls, value: tuple[Window, ...]) -> tuple[Window, ...]:
        windows = tuple(check_window(w) for w in value)
        if len(set(windows)) != len(windows):
            raise ValueError(f"windows: {list(windows)} lists a window twice")
        return windows

    @field_validator("measurement_window")
    @classmethod
    def _check_measurement_window(cls, value: Window) -> Window:
        return check_window(value, field="measurement_window")

    @field_validator("age_breaks")
    @classmethod
    def _check_breaks(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or list(value) != sorted(set(value)) or value[0] <= 0:
            raise ValueError(
                f"age_breaks {list(value)}: give one or more increasing positive ages, "
                "e.g. (18, 30, 40, 50, 60, 70)"
            )
        return value

    @field_validator("covariates")
    @classmethod
    def _label_covariates(cls, value: tuple[Covariate, ...]) -> tuple[Covariate, ...]:
        labelled = tuple(
            cov if cov.label else cov.model_copy(update={"label": _name(cov.concept_id)})
            for cov in value
        )
        seen: dict[tuple[str, str], int] = {}
        for cov in labelled:
            key = (cov.domain, str(cov.label))
            if key in seen:
                raise ValueError(
                    f"covariates: {cov.domain} concepts {seen[key]} and {cov.concept_id} are "
                    f"both labelled {cov.label!r}; give one of them another `label`"
                )
            seen[key] = cov.concept_id
        return labelled

    @model_validator(mode="after")
    def _distinct_names(self) -> CharacterizeSpec:
        if self.comparator is not None and self.comparator.name == self.target.name:
            raise ValueError(
                f"target and comparator are both named {self.target.name!r}; rename one so "
                "the table can tell them apart"
            )
        return self

    def cohorts(self) -> dict[str, CohortDefinition]:
        """``{"target": ..., "comparator": ...}`` (comparator only when given)."""
        out = {"target": self.target}
        if self.comparator is not None:
            out["comparator"] = self.comparator
        return out

    def age_levels(self) -> list[str]:
        """Age group labels in order."""
        b = self.age_breaks
        inner = [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(b)]
        return [f"<{b[0]}", *inner, f"{b[-1]}+"]

    def binary_variable(self, domain: str, window: Window) -> str:
        """The variable (row group) of binary covariates of ``domain`` in ``window``."""
        return f"{DOMAIN_TITLES[domain]}, {window_label(window)}"

    def measurement_variable(self) -> str:
        """The variable (row group) of the measurements."""
        return f"Measurements (latest), {window_label(self.measurement_window)}"

    def row_order(self) -> dict[str, list[str]]:
        """``{variable: [levels]}`` in display order (index years are added from the data)."""
        order: dict[str, list[str]] = {
            RECORDS: [""],
            PERSONS: [""],
            AGE: [""],
            AGE_GROUP: [*self.age_levels(), UNKNOWN],
            SEX: [*SEX_LEVELS.values(), OTHER_SEX],
            INDEX_YEAR: [],
        }
        for window in self.windows:
            for domain in DOMAIN_TITLES:
                labels = [str(v.label) for v in self.covariates if v.domain == domain]
                if labels:
                    order[self.binary_variable(domain, window)] = labels
        measured = [str(v.label) for v in self.covariates if v.domain == "measurement"]
        if measured:
            order[self.measurement_variable()] = measured
        return order


def _name(concept_id: int) -> str:
    try:
        return concept_name(concept_id)
    except KeyError:
        return f"concept {concept_id}"


class Characterize:
    """The Table 1 analysis (``local`` at each site, ``combine`` at the coordinator)."""

    name: ClassVar[str] = "characterize"

    def local(self, source: CdmSource, spec: CharacterizeSpec) -> Payload:
        """Describe the cohort(s) at one site; release only suppressed aggregates.

        Returns
        -------
        Payload
            Tables ``counts`` and ``moments`` (module docstring); refused (no tables) when
            the site does not run this analysis or a cohort has fewer persons than the site's
            ``min_cohort_size``.
        """
        policy = source.policy
        if self.name not in policy.allowed_analyses:
            return refuse(source, self, "allowed_analyses")
        entries = {}
        try:
            for role, defn in spec.cohorts().items():
                cohort = compile_cohort(defn, source).cohort
                # a temporary table at the site: the cohort query runs once, not per aggregate
                entries[role] = cohort.select("subject_id", "cohort_start_date").distinct().cache()
                persons = int(entries[role].subject_id.nunique().execute())
                refusal = refuse_small_cohort(source, self, persons)
                if refusal is not None:
                    return refusal
            counts, moments = describe_site(source, entries, spec)
        finally:
            for table in entries.values():
                table.release()
        values = {
            "min_cell_count": policy.min_cell_count,
            "quantiles_released": policy.allow_quantiles,
        }
        return Payload(self.name, source.id, {"counts": counts, "moments": moments}, values)

    def combine(
        self, payloads: Sequence[Payload], spec: CharacterizeSpec, provenance: Provenance
    ) -> Table1Result:
        """Per-site and overall Table 1 (and SMDs) from the sites' payloads."""
        return assemble(payloads, spec, provenance)


def _definition(value: CohortDefinition | str | Path, role: str) -> CohortDefinition:
    if isinstance(value, CohortDefinition):
        return value
    if isinstance(value, str | Path):
        return CohortDefinition.from_yaml(value)
    raise TypeError(
        f"{role}: expected a CohortDefinition or the path of a YAML definition, "
        f"got {type(value).__name__}"
    )


def _site_labels(
    covariates: Sequence[Covariate], sources: Sequence[CdmSource]
) -> tuple[Covariate, ...]:
    """Label covariates unknown to the shipped vocabulary from the first site's ``concept``."""
    unknown = [
        v.concept_id
        for v in covariates
        if v.label is None and _name(v.concept_id) == f"concept {v.concept_id}"
    ]
    names: dict[int, str] = {}
    if unknown and sources:
        concept = sources[0].table("concept")
        found = concept.filter(concept.concept_id.isin(unknown)).select(
            "concept_id", "concept_name"
        )
        names = {int(k): str(v) for k, v in found.to_pandas().itertuples(index=False)}
    return tuple(
        v.model_copy(update={"label": names[v.concept_id]})
        if v.concept_id in names and v.label is None
        else v
        for v in covariates
    )


def characterize(
    target: CohortDefinition | str | Path,
    sites: Catalog | Iterable[CdmSource],
    *,
    comparator: CohortDefinition | str | Path | None = None,
    windows: Sequence[Window] = ((-365, 0),),
    covariates: Sequence[Covariate] | None = None,
    measurement_window: Window = (-365, 0),
    age_breaks: Sequence[int] = (18, 30, 40, 50, 60, 70),
    mode: Literal["federated", "pooled"] = "federated",
    transport: Literal["arrow", "json"] = "arrow",
    runner: Runner | None = None,
    on_failure: OnFailure = "require_all_sites",
) -> Table1Result:
    """Table 1 of a cohort, or of two cohorts side by side with SMDs, per site and overall.

    Parameters
    ----------
    target
        The cohort definition (or the path of its YAML file).
    sites
        A catalog or CDM sources (catalog sites, ``open_cdm(...)``).
    comparator
        A second cohort; SMDs are target minus comparator (Austin 2009).
    windows
        Inclusive ``(start, end)`` day windows relative to the index date in which a
        condition, drug, procedure or observation counts as present.
    covariates
        What to describe (:class:`~clinnova_explore.analysis.covariates.Covariate`);
        ``None`` uses :func:`~clinnova_explore.analysis.covariates.default_covariates`.
    measurement_window
        Window of the latest measurement value.
    age_breaks
        Age group boundaries.
    mode
        ``"federated"`` (per-site payloads; overall quartiles NA) or ``"pooled"`` (one
        virtual site; overall only, quartiles exact).
    transport
        Payload encoding across the site boundary.
    runner
        Where the site steps run: in this process (default) or a
        :class:`~clinnova_explore.federated.process_runner.ProcessRunner` (a process per site).
    on_failure
        ``"require_all_sites"`` (default: a site that is down, too slow or raises stops the
        analysis, naming it) or ``"allow_partial"`` (the result covers the other sites and is
        flagged ``provenance.partial``).

    Returns
    -------
    Table1Result
        ``.summary``, ``.data`` (long), ``.smd``, ``.plot()``, ``.to_great_table()``.

    Examples
    --------
    On the demo federation (``make demo``):

    >>> from clinnova_explore.cohort.library import builtin_definition  # doctest: +SKIP
    >>> res = characterize(
    ...     builtin_definition("ms_high_efficacy_start"),
    ...     Catalog.load(),
    ...     comparator=builtin_definition("ms_platform_start"),
    ... )  # doctest: +SKIP
    >>> round(res.smd.loc[("Sex", "Female"), "overall"], 3)  # doctest: +SKIP
    0.141
    """
    sources = list(sites)
    chosen = default_covariates() if covariates is None else tuple(covariates)
    spec = CharacterizeSpec(
        target=_definition(target, "target"),
        comparator=None if comparator is None else _definition(comparator, "comparator"),
        windows=tuple(tuple(w) for w in windows),
        measurement_window=tuple(measurement_window),
        covariates=_site_labels(chosen, sources),
        age_breaks=tuple(age_breaks),
    )
    return run(
        Characterize(),
        spec,
        sites if isinstance(sites, Catalog) else sources,
        mode=mode,
        transport=transport,
        runner=runner,
        on_failure=on_failure,
    )
