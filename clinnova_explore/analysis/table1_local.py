"""The site side of Table 1: describe cohort entries, then release suppressed aggregates.

:func:`describe_site` runs at one site (every query is an ibis aggregate pushed into the site's
database) and returns the two tables a Table 1 payload carries (see
:mod:`clinnova_explore.analysis.characterize`). Counts are suppressed with the site's policy
before they are returned: a count in ``(0, min_cell_count)`` is blanked, and so is one
complementary cell of the same variable (the categories of sex, age group or index year; for a
binary covariate its never-released "absent" count; for age or a measurement the missing
count), so no hidden count can be recovered by subtracting visible ones from the number of
entries. Moments are released only when their observed count is not itself small (sums
only with the count); quartiles only where the policy allows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ibis
import numpy as np
import pandas as pd

from clinnova_explore.analysis.contract import Moments, suppress
from clinnova_explore.analysis.covariates import (
    AGE,
    AGE_GROUP,
    INDEX_YEAR,
    OTHER_SEX,
    PERSONS,
    RECORDS,
    SEX,
    SEX_LEVELS,
    UNKNOWN,
    binary_counts,
    latest_values,
)

if TYPE_CHECKING:
    from clinnova_explore.analysis.characterize import CharacterizeSpec
    from clinnova_explore.catalog import DisclosurePolicy
    from clinnova_explore.cdm.source import CdmSource

__all__ = ["COUNT_COLUMNS", "MOMENT_COLUMNS", "describe_site"]

COUNT_COLUMNS = ("cohort", "variable", "level", "part", "n", "suppressed")
"""Columns of the released ``counts`` table."""
MOMENT_COLUMNS = (
    "cohort",
    "variable",
    "level",
    "sum",
    "sumsq",
    "mean",
    "sd",
    "q1",
    "median",
    "q3",
    "suppressed",
)
"""Columns of the released ``moments`` table."""

Cell = tuple[str, str, str, str, int]
"""``(variable, level, part, suppression group, count)`` before release."""


def _demographics(
    source: CdmSource, entries: ibis.Table, spec: CharacterizeSpec, quantiles: bool
) -> tuple[list[Cell], list[dict[str, Any]]]:
    person = source.table("person")
    person = person.select("person_id", "gender_concept_id", "year_of_birth")
    base = entries.left_join(person, entries.subject_id == person.person_id)
    base = base.mutate(
        age=base.cohort_start_date.year() - base.year_of_birth,
        index_year=base.cohort_start_date.year(),
    )
    metrics = {
        "records": base.count(),
        "persons": base.subject_id.nunique(),
        "observed": base.age.count(),
        "sum": base.age.sum(),
        "sumsq": (base.age * base.age).sum(),
    }
    if quantiles:
        metrics |= {"q1": base.age.quantile(0.25), "median": base.age.quantile(0.5)}
        metrics["q3"] = base.age.quantile(0.75)
    totals = base.aggregate(**metrics).to_pandas().iloc[0]
    records, observed = int(totals["records"]), int(totals["observed"])
    # one cross-tabulation (it stays at the site); each margin below is a sum over it
    cross = base.group_by("age", "gender_concept_id", "index_year").aggregate(n=base.count())
    cross = cross.to_pandas()
    by_age = cross.groupby("age", dropna=False, as_index=False)["n"].sum()
    by_sex = cross.groupby("gender_concept_id", dropna=False, as_index=False)["n"].sum()
    by_year = cross.groupby("index_year", as_index=False)["n"].sum()

    cells = [
        (RECORDS, "", "n", RECORDS, records),
        (PERSONS, "", "n", PERSONS, int(totals["persons"])),
        (AGE, "", "observed", AGE, observed),
        (AGE, "", "missing", AGE, records - observed),
    ]
    groups = pd.Series(0, index=[*spec.age_levels(), UNKNOWN])
    bins = [-np.inf, *spec.age_breaks, np.inf]
    known = by_age.dropna(subset=["age"])
    binned = pd.cut(known["age"], bins, right=False, labels=spec.age_levels())
    groups = groups.add(known.groupby(binned, observed=False)["n"].sum(), fill_value=0)
    groups[UNKNOWN] = int(by_age.loc[by_age["age"].isna(), "n"].sum())
    cells += [(AGE_GROUP, str(lvl), "n", AGE_GROUP, int(n)) for lvl, n in groups.items()]
    sex = by_sex["gender_concept_id"].map(SEX_LEVELS).fillna(OTHER_SEX)
    sexes = by_sex.groupby(sex)["n"].sum().reindex([*SEX_LEVELS.values(), OTHER_SEX], fill_value=0)
    cells += [(SEX, str(lvl), "n", SEX, int(n)) for lvl, n in sexes.items()]
    cells += [
        (INDEX_YEAR, str(int(y)), "n", INDEX_YEAR, int(n))
        for y, n in zip(by_year["index_year"], by_year["n"], strict=True)
    ]
    moment = {k: _float(totals.get(k)) for k in ("sum", "sumsq", "q1", "median", "q3")}
    if observed == 0:
        moment |= {"sum": 0.0, "sumsq": 0.0}
    return cells, [{"variable": AGE, "level": "", **moment}]


def _float(value: Any) -> float:
    return float("nan") if value is None or pd.isna(value) else float(value)


def _covariates(
    source: CdmSource, entries: ibis.Table, spec: CharacterizeSpec, records: int, quantiles: bool
) -> tuple[list[Cell], list[dict[str, Any]]]:
    cells: list[Cell] = []
    found = binary_counts(source, entries, spec.covariates, spec.windows)
    present = found.set_index(["key", "window_start", "window_end"])["n"]
    binary = [(k, v) for k, v in enumerate(spec.covariates) if v.binary]
    for window in spec.windows:
        for key, cov in binary:
            variable = spec.binary_variable(cov.domain, window)
            n = int(present.get((key, *window), 0))
            group = f"{variable} / {cov.label}"
            cells.append((variable, str(cov.label), "present", group, n))
            cells.append((variable, str(cov.label), "absent", group, records - n))
    values = latest_values(
        source, entries, spec.covariates, spec.measurement_window, quantiles=quantiles
    ).set_index("key")
    moments: list[dict[str, Any]] = []
    variable = spec.measurement_variable()
    for key, cov in enumerate(spec.covariates):
        if cov.domain != "measurement":
            continue
        row = values.loc[key] if key in values.index else None
        n = 0 if row is None else int(row["n"])
        group = f"{variable} / {cov.label}"
        cells.append((variable, str(cov.label), "observed", group, n))
        cells.append((variable, str(cov.label), "missing", group, records - n))
        stats = {k: 0.0 if k in ("sum", "sumsq") else float("nan") for k in _MOMENTS}
        if row is not None:
            stats = {k: _float(row[k]) for k in _MOMENTS}
        moments.append({"variable": variable, "level": str(cov.label), **stats})
    return cells, moments


_MOMENTS = ("sum", "sumsq", "q1", "median", "q3")
_QUARTILES = ("q1", "median", "q3")
_RELEASED = ("sum", "sumsq", "mean", "sd", *_QUARTILES)
_CELL_COLUMNS = ["cohort", "variable", "level", "part", "group", "n"]


def _release(
    cells: pd.DataFrame, moments: pd.DataFrame, policy: DisclosurePolicy
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Suppress small counts (with complements), then drop what is never released.

    A moments row loses everything when its observed count is itself small. When the count
    is hidden only as the complement of a small missing count, the mean, SD and quartiles of
    its (many) values still leave, but not the sums: with the count unknown they cannot be
    turned back into it.
    """
    counts = suppress(cells, ["n"], policy, group_by=["cohort", "group"])
    counts = counts[counts["part"] != "absent"].drop(columns="group").reset_index(drop=True)
    keys = ["cohort", "variable", "level"]
    observed = cells[cells["part"] == "observed"].set_index(keys)["n"]
    released = counts[counts["part"] == "observed"].set_index(keys)["suppressed"]
    where = pd.MultiIndex.from_frame(moments[keys])
    n = observed.reindex(where).to_numpy(dtype=float)
    small = (n > 0) & (n < policy.min_cell_count)
    hidden = released.reindex(where).to_numpy(dtype=bool)
    moments = moments.copy()
    stats = [
        Moments.from_sums(int(k), s, ss)
        for k, s, ss in zip(n, moments["sum"], moments["sumsq"], strict=True)
    ]
    moments["mean"] = [m.mean for m in stats]
    moments["sd"] = [m.sd for m in stats]
    for col in _RELEASED:
        withheld = hidden if col in ("sum", "sumsq") else small
        if col in _QUARTILES and not policy.allow_quantiles:
            withheld = np.ones(len(moments), dtype=bool)
        moments[col] = moments[col].astype("Float64").mask(withheld)
    moments["suppressed"] = hidden
    for frame in (counts, moments):
        for col in ("cohort", "variable", "level", "part"):
            if col in frame:
                frame[col] = frame[col].astype("string")
    return counts, moments[[*keys, *_RELEASED, "suppressed"]].reset_index(drop=True)


def describe_site(
    source: CdmSource, entries: Mapping[str, ibis.Table], spec: CharacterizeSpec
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Describe each cohort's entries at one site and apply the site's disclosure policy.

    Parameters
    ----------
    source
        The site.
    entries
        ``{role: table}`` with one row per cohort entry (``subject_id``,
        ``cohort_start_date``), e.g. ``{"target": ..., "comparator": ...}``. Each table is
        queried several times: pass cached tables (``Table.cache()``).
    spec
        The covariates, windows and age groups to describe.

    Returns
    -------
    tuple of pandas.DataFrame
        The ``counts`` and ``moments`` tables (:data:`COUNT_COLUMNS`,
        :data:`MOMENT_COLUMNS`), ready to leave the site.
    """
    quantiles = source.policy.allow_quantiles
    cells, moments = [], []
    for role, table in entries.items():
        demo_cells, demo_moments = _demographics(source, table, spec, quantiles)
        records = demo_cells[0][-1]
        cov_cells, cov_moments = _covariates(source, table, spec, records, quantiles)
        cells += [(role, *cell) for cell in demo_cells + cov_cells]
        moments += [{"cohort": role, **m} for m in demo_moments + cov_moments]
    return _release(
        pd.DataFrame(cells, columns=_CELL_COLUMNS),
        pd.DataFrame(moments, columns=["cohort", "variable", "level", *_MOMENTS]),
        source.policy,
    )
