"""The cohort definitions shipped with the package (``cohort/definitions/*.yaml``).

They are the demo definitions the dashboard, notebook, benchmark and analyses start from:
new users of MS, RA and IBD therapies, the MS diagnosis cohort, and outcome cohorts (MS relapse,
IBD hospitalization, IBD surgery).
"""

from __future__ import annotations

from importlib import resources

from clinnova_explore.cohort.model import CohortDefinition, CohortDefinitionError

__all__ = ["builtin_definition", "builtin_definition_names"]


def _folder() -> resources.abc.Traversable:
    return resources.files("clinnova_explore.cohort") / "definitions"


def builtin_definition_names() -> list[str]:
    """Names of the shipped definitions (file stems), sorted.

    Examples
    --------
    >>> "ms_high_efficacy_start" in builtin_definition_names()
    True
    """
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in _folder().iterdir()
        if entry.name.endswith(".yaml")
    )


def builtin_definition(name: str) -> CohortDefinition:
    """Load a shipped definition by name, e.g. ``builtin_definition("ms_relapse")``.

    Raises
    ------
    CohortDefinitionError
        If no shipped definition has that name (the message lists the names).
    """
    path = _folder() / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(builtin_definition_names())
        raise CohortDefinitionError(f"no shipped cohort definition {name!r}; choose one of {known}")
    return CohortDefinition.from_yaml(path.read_text(encoding="utf-8"))
