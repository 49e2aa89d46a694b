"""Shared fixtures: one small synthetic federation built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinnova_explore.pipeline import BuildResult, build

SMALL_PERSONS = 800
SMALL_SEED = 7


@pytest.fixture(scope="session")
def small_build(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """A real 800-person, five-site federation (native exports, CDM DuckDB files, quality)."""
    out = tmp_path_factory.mktemp("federation")
    return build(out, persons=SMALL_PERSONS, seed=SMALL_SEED)


@pytest.fixture(scope="session")
def small_catalog_path(small_build: BuildResult) -> Path:
    """The catalog file of :func:`small_build`."""
    return small_build.catalog_path


DEMO_PERSONS = 5000
DEMO_SEED = 42


@pytest.fixture(scope="session")
def demo_size_build(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """A federation the size of ``make demo`` (5,000 persons, seed 42), for ground-truth checks.

    Building it takes about 15 s; use it only where the 800-person federation is too small
    (e.g. checking that a true hazard ratio lies inside a 95% confidence interval).
    """
    out = tmp_path_factory.mktemp("demo_size")
    return build(out, persons=DEMO_PERSONS, seed=DEMO_SEED)
