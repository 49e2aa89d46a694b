"""Package attributes imported on first use (PEP 562), so importing one part stays light.

``import clinnova_explore`` (or any submodule, which imports the package first) would otherwise
load every part: scipy, statsmodels, the FHIR models and the cohort compiler. A package lists
its public names and where they live; each is imported the first time it is read.

Several public functions share their module's name (``survival.cox.cox``). Importing such a
submodule binds the module onto its package under that name, which would hide the function;
the package's module class therefore keeps those names for the functions, as the eager
``from .cox import cox`` used to.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` serving ``exports`` lazily.

    Parameters
    ----------
    package
        The package's ``__name__`` (called from the package's ``__init__``).
    exports
        Public name -> the module defining it (``"pkg.mod"``), ``"pkg.mod:attribute"`` when
        the public name is an alias, or ``"pkg.mod:"`` for the module itself.

    Returns
    -------
    tuple
        The module-level ``__getattr__`` and ``__dir__`` functions.
    """
    shadowed = {name for name, target in exports.items() if not target.endswith(":")}

    class _Package(ModuleType):
        def __setattr__(self, name: str, value: Any) -> None:
            if name in shadowed and isinstance(value, ModuleType):
                return  # a submodule named like a public function: keep serving the function
            super().__setattr__(name, value)

    sys.modules[package].__class__ = _Package

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        where, colon, attribute = target.partition(":")
        module = importlib.import_module(where)
        value = module if colon and not attribute else getattr(module, attribute or name)
        sys.modules[package].__dict__[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*exports, *sys.modules[package].__dict__})

    return __getattr__, __dir__
