"""The package's public names, imported on first use so that one part stays light."""

from __future__ import annotations

import importlib
import subprocess
import sys
from types import ModuleType

import pytest

MODULES = {"overview"}
PACKAGES = ("clinnova_explore", "clinnova_explore.analysis", "clinnova_explore.analysis.survival")


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_resolves(name: str) -> None:
    package = importlib.import_module(name)
    for attr in package.__all__:
        value = getattr(package, attr)
        # only the names that are modules on purpose may resolve to a module (a function
        # named like its module, e.g. ``logrank``, must not)
        assert isinstance(value, ModuleType) == (attr in MODULES), f"{name}.{attr}"
        defined = getattr(value, "__module__", None)
        if defined is not None and not isinstance(value, ModuleType):
            # the attribute comes from a module of this project, not a stray object
            assert defined.startswith("clinnova_explore"), f"{name}.{attr}: {defined}"
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        package.nope  # noqa: B018


def test_kaplan_meier_does_not_load_the_rest_of_the_package() -> None:
    """Kaplan-Meier on a DuckDB table needs ibis, DuckDB and pandas, not scipy or FHIR models."""
    code = (
        "import sys\n"
        "from clinnova_explore import kaplan_meier\n"
        "heavy = ['scipy', 'statsmodels', 'fhir', 'panel', 'clinnova_explore.cohort']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
