"""What a time-to-event table holds: :class:`TimeToEventSpec`, its (de)serialization and hash.

The spec names the cohorts (shipped definitions by name, or :class:`CohortDefinition` objects),
the risk window, competing events and baseline covariates; :func:`time_to_event
<clinnova_explore.analysis.survival.tte.time_to_event>` computes the table. ``to_dict`` /
``from_dict`` give a YAML-friendly form (for report configurations), :func:`spec_hash` a short
content hash for provenance.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from clinnova_explore.analysis.survival.tte_covariates import Covariate, CovariateError
from clinnova_explore.cohort import CohortDefinition, CohortDefinitionError
from clinnova_explore.cohort.library import builtin_definition, builtin_definition_names

__all__ = [
    "BASE_COLUMNS",
    "TimeToEventError",
    "TimeToEventSpec",
    "resolve_definition",
    "spec_hash",
]

CohortSpec = CohortDefinition | str
End = Literal["observation_end", "cohort_end"]

BASE_COLUMNS: tuple[str, ...] = (
    "site",
    "person_id",
    "index_date",
    "duration",
    "event",
    "treatment",
    "age",
    "sex",
    "female",
    "index_year",
)
"""The columns every time-to-event table starts with (``treatment`` only with a comparator)."""

_FIELDS = (
    "name",
    "target",
    "outcome",
    "comparator",
    "start_offset",
    "end",
    "end_offset",
    "max_days",
    "competing",
    "covariates",
)


class TimeToEventError(ValueError):
    """A time-to-event specification is invalid; the message names the field to change."""


def _check_cohort(value: Any, field_name: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, CohortDefinition):
        return
    if isinstance(value, str):
        if value not in builtin_definition_names():
            known = ", ".join(builtin_definition_names())
            raise TimeToEventError(
                f"TimeToEventSpec.{field_name}: no shipped cohort definition {value!r}; give a "
                f"CohortDefinition or one of {known}"
            )
        return
    raise TimeToEventError(
        f"TimeToEventSpec.{field_name}: expected a CohortDefinition or the name of a shipped "
        f"definition, got {type(value).__name__}"
    )


@dataclass(frozen=True)
class TimeToEventSpec:
    """What a time-to-event table holds: cohorts, risk window, competing events, covariates.

    Parameters
    ----------
    target
        The target cohort (a definition, or the name of a shipped one); its era starts are the
        index dates.
    outcome
        The outcome cohort: the first era start in the risk window is the event.
    comparator
        A second arm: ``treatment`` is 1 for target rows and 0 for comparator rows; persons in
        both cohorts are dropped (see :func:`tte_attrition`).
    start_offset
        At risk from ``index + start_offset`` days (default 1: the day after the index date).
    end
        ``"observation_end"`` (intention to treat: follow-up to the end of the observation
        period) or ``"cohort_end"`` (on treatment: to the end of the target/comparator era).
    end_offset
        Days added to that end (never past the observation period end).
    max_days
        Administrative censoring this many days after the index date.
    competing
        ``"death"`` (death is event 2 instead of a censoring), or a cohort whose first start
        in the risk window is event 2.
    covariates
        Baseline covariates, one column each.
    name
        A label for reports.

    Examples
    --------
    >>> spec = TimeToEventSpec(target="ms_start_first_dmt_high_efficacy", outcome="ms_relapse")
    >>> TimeToEventSpec.from_dict(spec.to_dict()) == spec
    True
    """

    target: CohortSpec
    outcome: CohortSpec
    comparator: CohortSpec | None = None
    start_offset: int = 1
    end: End = "observation_end"
    end_offset: int = 0
    max_days: int | None = None
    competing: Literal["death"] | CohortSpec | None = None
    covariates: tuple[Covariate, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        _check_cohort(self.target, "target")
        _check_cohort(self.outcome, "outcome")
        _check_cohort(self.comparator, "comparator", optional=True)
        if self.competing != "death":
            _check_cohort(self.competing, "competing", optional=True)
        for name in ("start_offset", "end_offset"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TimeToEventError(f"TimeToEventSpec.{name} must be whole days, got {value!r}")
        if self.start_offset < 0:
            raise TimeToEventError(
                f"TimeToEventSpec.start_offset must be >= 0 (days after the index date), got "
                f"{self.start_offset}"
            )
        if self.end not in ("observation_end", "cohort_end"):
            raise TimeToEventError(
                f"TimeToEventSpec.end must be 'observation_end' or 'cohort_end', got {self.end!r}"
            )
        if self.max_days is not None and (
            not isinstance(self.max_days, int)
            or isinstance(self.max_days, bool)
            or self.max_days < 1
        ):
            raise TimeToEventError(
                f"TimeToEventSpec.max_days must be a positive number of days or None, got "
                f"{self.max_days!r}"
            )
        covs = tuple(self.covariates)
        for cov in covs:
            if not isinstance(cov, Covariate):
                raise TimeToEventError(
                    "TimeToEventSpec.covariates must hold Covariate objects, got "
                    f"{type(cov).__name__}"
                )
        names = [c.name for c in covs]
        clash = sorted({n for n in names if names.count(n) > 1 or n in BASE_COLUMNS})
        if clash:
            raise TimeToEventError(
                f"TimeToEventSpec.covariates: name(s) {', '.join(clash)} repeat or collide with "
                f"the standard columns ({', '.join(BASE_COLUMNS)}); rename them"
            )
        object.__setattr__(self, "covariates", covs)

    def definitions(self) -> dict[str, CohortDefinition]:
        """The cohort definitions by role (``target``, ``comparator``, ``outcome``,
        ``competing``), shipped names resolved; roles left empty are omitted."""
        out: dict[str, CohortDefinition] = {}
        for role in ("target", "comparator", "outcome", "competing"):
            value = getattr(self, role)
            if value is not None and value != "death":
                out[role] = resolve_definition(value)
        return out

    def definition_hashes(self) -> dict[str, str]:
        """``{role: definition_hash}`` of :meth:`definitions` (for provenance)."""
        return {role: d.definition_hash for role, d in self.definitions().items()}

    # ------------------------------------------------------------------ (de)serialization

    def to_dict(self) -> dict[str, Any]:
        """A YAML/JSON-friendly dict (shipped cohorts by name, others as definition dicts)."""

        def ref(value: Any) -> Any:
            return value.to_dict() if isinstance(value, CohortDefinition) else value

        return {
            "name": self.name,
            "target": ref(self.target),
            "outcome": ref(self.outcome),
            "comparator": ref(self.comparator),
            "start_offset": self.start_offset,
            "end": self.end,
            "end_offset": self.end_offset,
            "max_days": self.max_days,
            "competing": ref(self.competing),
            "covariates": [c.to_dict() for c in self.covariates],
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, source: str = "time-to-event spec"
    ) -> TimeToEventSpec:
        """Build a spec from a mapping (e.g. a report config's ``comparison``).

        Cohorts are names of shipped definitions or inline definition mappings. Unknown keys
        and invalid values raise :class:`TimeToEventError` naming ``source`` and the key.
        """
        if not isinstance(data, Mapping):
            raise TimeToEventError(
                f"{source}: a time-to-event spec is a mapping, got {type(data).__name__}"
            )
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise TimeToEventError(
                f"{source}: unknown key(s) {', '.join(map(str, unknown))}; known keys: "
                f"{', '.join(_FIELDS)}"
            )
        missing = [k for k in ("target", "outcome") if data.get(k) is None]
        if missing:
            raise TimeToEventError(f"{source}: missing key(s) {', '.join(missing)}")
        args: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("target", "outcome", "comparator", "competing") and isinstance(
                value, Mapping
            ):
                try:
                    value = CohortDefinition.from_dict(value, source=f"{source}: {key}")
                except CohortDefinitionError as err:
                    raise TimeToEventError(str(err)) from None
            elif key == "covariates":
                if not isinstance(value, list | tuple):
                    raise TimeToEventError(f"{source}: covariates must be a list of mappings")
                try:
                    value = tuple(
                        Covariate.from_dict(v, where=f"{source}: covariates[{i}]")
                        for i, v in enumerate(value)
                    )
                except (CovariateError, TypeError) as err:
                    raise TimeToEventError(str(err)) from None
            args[key] = value
        try:
            return cls(**args)
        except TimeToEventError as err:
            raise TimeToEventError(f"{source}: {err}") from None


def resolve_definition(ref: CohortSpec) -> CohortDefinition:
    """A cohort of a spec as a definition (shipped names loaded)."""
    return ref if isinstance(ref, CohortDefinition) else builtin_definition(ref)


def spec_hash(spec: TimeToEventSpec) -> str:
    """First 16 hex characters of the SHA-256 of the spec's canonical JSON.

    Cohorts enter by their :attr:`CohortDefinition.definition_hash`, so a shipped name and an
    equal inline definition hash alike; the ``name`` label does not enter.
    """

    def ref(value: Any) -> Any:
        if value is None or value == "death":
            return value
        return resolve_definition(value).definition_hash

    data = spec.to_dict()
    data.pop("name")
    for key in ("target", "outcome", "comparator", "competing"):
        data[key] = ref(getattr(spec, key))
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
