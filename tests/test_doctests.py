"""Every docstring example in the package runs (or is explicitly marked +SKIP)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import clinnova_explore

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(clinnova_explore.__path__, "clinnova_explore.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{name}: {result.failed} failing docstring example(s)"


def test_some_examples_exist() -> None:
    finder = doctest.DocTestFinder()
    examples = sum(
        len(t.examples) for name in MODULES for t in finder.find(importlib.import_module(name))
    )
    assert examples >= 3
