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
