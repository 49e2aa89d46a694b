"""Shared fixtures: one small synthetic federation built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clinnova_explore.pipeline import BuildResult, build

SMALL_PERSONS = 800


def without_differencing_guard(catalog_path: Path) -> None:
    """Turn the differencing guard off in a build's catalog (every other rule stays).

    The shared session federations serve hundreds of tests that run near-identical cohorts on
    purpose (e.g. the same definition under several cell counts), and a site remembers every
    cohort it released: with the guard on, a test's outcome would depend on which tests ran
    before it. The guard's own tests (tests/test_guard.py, tests/test_runtime.py) turn it on in
    copies of the catalog.
    """
    raw = yaml.safe_load(catalog_path.read_text(encoding="utf-8"))
    for site in raw["sites"]:
        site.setdefault("policy", {})["differencing_guard"] = False
    catalog_path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), "utf-8")


SMALL_SEED = 7


@pytest.fixture(scope="session")
def small_build(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """A real 800-person, five-site federation (native exports, CDM DuckDB files, quality)."""
    out = tmp_path_factory.mktemp("federation")
    result = build(out, persons=SMALL_PERSONS, seed=SMALL_SEED)
    without_differencing_guard(result.catalog_path)
    return result


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
    result = build(out, persons=DEMO_PERSONS, seed=DEMO_SEED)
    without_differencing_guard(result.catalog_path)
    return result
