"""An independent pandas reference of Table 1, and the helpers its tests share.

The reference reads each site's raw CDM tables with duckdb, builds one row per cohort entry
(age, sex, index year, a flag per binary covariate and window, the latest value per
measurement) with plain pandas, and aggregates that; SMDs follow Austin (2009) written out
here. Cohort entries come from ``compile_cohort`` (the compiler has its own tests); nothing
after that uses the library's query or combine code.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import yaml

from clinnova_explore.analysis.characterize import CharacterizeSpec
from clinnova_explore.analysis.covariates import Covariate
from clinnova_explore.analysis.table1 import Table1Result
from clinnova_explore.catalog import Catalog
from clinnova_explore.cdm import concepts as c
from clinnova_explore.cohort import CohortDefinition, compile_cohort
from clinnova_explore.pipeline import BuildResult

ROLES = ("target", "comparator")
EVENTS = {  # domain -> (table, concept column, date column), as the OMOP CDM defines them
    "condition": ("condition_occurrence", "condition_concept_id", "condition_start_date"),
    "drug": ("drug_exposure", "drug_concept_id", "drug_exposure_start_date"),
    "procedure": ("procedure_occurrence", "procedure_concept_id", "procedure_date"),
    "observation": ("observation", "observation_concept_id", "observation_date"),
}
TITLES = {"condition": "Conditions", "drug": "Drugs", "procedure": "Procedures"}
TITLES["observation"] = "Observations"
FLOATS = ["percent", "mean", "sd", "median", "q1", "q3", "missing_percent"]


def catalog_copy(
    small_build: BuildResult,
    folder: Path,
    policies: dict[str, dict[str, Any]],
    sites: Sequence[str] | None = None,
) -> Path:
    """A copy of the build's catalog with absolute locations and changed policies
    (``policies[site id]``, else ``policies["*"]``), optionally keeping only ``sites``."""
    doc = yaml.safe_load(small_build.catalog_path.read_text(encoding="utf-8"))
    base = small_build.catalog_path.parent
    doc["sites"] = [s for s in doc["sites"] if sites is None or s["id"] in sites]
    for site in doc["sites"]:
        site["location"] = str((base / site["location"]).resolve())
        site["policy"].update(policies.get(site["id"], policies.get("*", {})))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "data_catalog.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def read_raw(catalog: Catalog) -> dict[str, dict[str, pd.DataFrame]]:
    """Each site's raw CDM tables, read with duckdb directly."""
    out = {}
    for site in catalog:
        with duckdb.connect(site.resolved_location(), read_only=True) as con:
            tables = {
                "person": "select person_id, gender_concept_id, year_of_birth from person",
                "ancestor": "select ancestor_concept_id AS a, descendant_concept_id AS d "
                "from concept_ancestor",
                "concept": "select concept_id, concept_name from concept",
                "measurement": "select person_id, measurement_id, measurement_concept_id AS "
                'concept_id, measurement_date AS "date", value_as_number AS "value", '
                "unit_concept_id AS unit from measurement",
            }
            for domain, (table, concept, date) in EVENTS.items():
                tables[domain] = (
                    f'select person_id, {concept} AS concept_id, {date} AS "date" from {table}'
                )
            out[site.id] = {k: con.sql(q).df() for k, q in tables.items()}
        for domain in [*EVENTS, "measurement"]:
            out[site.id][domain]["date"] = pd.to_datetime(out[site.id][domain]["date"])
    return out


def cohort_entries(definition: CohortDefinition, site: Any) -> pd.DataFrame:
    cohort = compile_cohort(definition, site).cohort.to_pandas()
    return cohort[["subject_id", "cohort_start_date"]].drop_duplicates().reset_index(drop=True)


def age_group(age: float, breaks: Sequence[int]) -> str:
    if pd.isna(age):
        return "Unknown"
    if age < breaks[0]:
        return f"<{breaks[0]}"
    for lo, hi in itertools.pairwise(breaks):
        if lo <= age < hi:
            return f"{lo}-{hi - 1}"
    return f"{breaks[-1]}+"


def concepts_of(raw: dict[str, pd.DataFrame], cov: Covariate) -> set[int]:
    ids = {cov.concept_id}
    if cov.descendants:
        ids |= set(raw["ancestor"].loc[raw["ancestor"]["a"] == cov.concept_id, "d"])
    return ids


def features(raw: dict[str, pd.DataFrame], entries: pd.DataFrame, spec: CharacterizeSpec):
    """One row per cohort entry; a column per Table 1 row, named (variable, level)."""
    e = entries.copy()
    e["start"] = pd.to_datetime(e["cohort_start_date"])
    e = e.merge(raw["person"], left_on="subject_id", right_on="person_id", how="left")
    e["entry"] = np.arange(len(e))
    names = dict(zip(raw["concept"]["concept_id"], raw["concept"]["concept_name"], strict=True))
    out = pd.DataFrame({"subject": e["subject_id"]})
    out["age"] = e["start"].dt.year - e["year_of_birth"]
    sexes = {c.FEMALE: "Female", c.MALE: "Male"}
    out["sex"] = [sexes.get(g, "Other or unknown") for g in e["gender_concept_id"]]
    out["year"] = e["start"].dt.year.astype(str)
    out["age_group"] = [age_group(a, spec.age_breaks) for a in out["age"]]
    joined = {}  # every record of the entries' persons, with its day relative to the entry
    for domain in [*EVENTS, "measurement"]:
        j = e[["entry", "person_id", "start"]].merge(raw[domain], on="person_id")
        joined[domain] = j.assign(days=(j["date"] - j["start"]).dt.days)
    for lo, hi in spec.windows:
        for cov in [v for v in spec.covariates if v.domain in EVENTS]:
            j = joined[cov.domain]
            j = j[j["concept_id"].isin(concepts_of(raw, cov)) & j["days"].between(lo, hi)]
            label = cov.label or names[cov.concept_id]
            out[(f"{TITLES[cov.domain]}, days {lo} to {hi}", label)] = e["entry"].isin(j["entry"])
    lo, hi = spec.measurement_window
    for cov in [v for v in spec.covariates if v.domain == "measurement"]:
        j = joined["measurement"]
        j = j[j["concept_id"].isin(concepts_of(raw, cov)) & j["value"].notna()]
        if cov.unit_concept_id is not None:
            j = j[j["unit"] == cov.unit_concept_id]
        j = j[j["days"].between(lo, hi)].sort_values(["entry", "date", "measurement_id"])
        latest = j.groupby("entry")["value"].last()
        label = cov.label or names[cov.concept_id]
        variable = f"Measurements (latest), days {lo} to {hi}"
        out[(variable, label)] = e["entry"].map(latest)
    return out


def summarize(feat: pd.DataFrame) -> pd.DataFrame:
    """Expected Table 1 rows (index variable, level) of one cohort at one site or overall."""
    n = len(feat)
    rows: dict[tuple[str, str], dict[str, Any]] = {
        ("Cohort entries", ""): {"kind": "count", "n": n},
        ("Persons", ""): {"kind": "count", "n": feat["subject"].nunique()},
    }

    def continuous(values: pd.Series) -> dict[str, Any]:
        v = values.dropna().to_numpy(dtype=float)
        q = np.percentile(v, [25, 50, 75]) if len(v) else [np.nan] * 3
        return {
            "kind": "continuous",
            "n": len(v),
            "mean": v.mean() if len(v) else np.nan,
            "sd": v.std(ddof=1) if len(v) > 1 else np.nan,
            "q1": q[0],
            "median": q[1],
            "q3": q[2],
            "missing": n - len(v),
            "missing_percent": 100 * (n - len(v)) / n,
        }

    rows[("Age at index (years)", "")] = continuous(feat["age"])
    for column, variable in [("age_group", "Age group"), ("sex", "Sex"), ("year", "Index year")]:
        for level, k in feat[column].value_counts().items():
            rows[(variable, level)] = {"kind": "categorical", "n": k, "percent": 100 * k / n}
    for key in [k for k in feat.columns if isinstance(k, tuple)]:
        if feat[key].dtype == bool:
            k = int(feat[key].sum())
            rows[key] = {"kind": "binary", "n": k, "percent": 100 * k / n}
        else:
            rows[key] = continuous(feat[key])
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["variable", "level"])
    return out


def rows_of(result: Table1Result, role: str, site: str) -> pd.DataFrame:
    d = result.data
    rows = d[(d["cohort"] == role) & (d["site"] == site)]
    return rows.set_index(["variable", "level"])


def assert_matches(got: pd.DataFrame, want: pd.DataFrame, *, quantiles: bool = True) -> None:
    """Released cells equal the reference; rows absent from the reference are zero counts."""
    want = want.reindex(got.index)
    absent = want["kind"].isna()
    assert (got.loc[absent, "kind"] == "categorical").all(), got[absent]
    assert (got.loc[absent, "n"] == 0).all() and (got.loc[absent, "percent"] == 0).all()
    assert (got.loc[~absent, "kind"] == want.loc[~absent, "kind"]).all()
    released = ~got["suppressed"].astype(bool) & ~absent
    g, w = got[released], want[released]
    assert (g["n"].astype(float) == w["n"].astype(float)).all()
    cont = g["kind"] == "continuous"
    assert (g.loc[cont, "missing"].astype(float) == w.loc[cont, "missing"].astype(float)).all()
    columns = FLOATS if quantiles else [f for f in FLOATS if f not in ("median", "q1", "q3")]
    for col in columns:  # released rows: every statistic; others: whatever was shown
        np.testing.assert_allclose(
            g[col].astype(float), w[col].astype(float), rtol=1e-9, atol=1e-12, err_msg=col
        )
        shown = got[col].notna() & ~absent
        np.testing.assert_allclose(
            got.loc[shown, col].astype(float), want.loc[shown, col].astype(float), rtol=1e-9
        )


def smd_reference(t: pd.DataFrame, c_: pd.DataFrame) -> pd.Series:
    """Austin (2009) written out independently of the library."""
    c_ = c_.reindex(t.index)
    absent = c_["kind"].isna()  # a level the comparator never has: 0 %
    c_.loc[absent, "percent"] = 0.0
    out = {}
    for key in t.index:
        a, b = t.loc[key], c_.loc[key]
        if a["kind"] == "count":
            continue
        if a["kind"] == "continuous":
            diff, var = a["mean"] - b["mean"], (a["sd"] ** 2 + b["sd"] ** 2) / 2
        else:
            p1, p2 = a["percent"] / 100, b["percent"] / 100
            diff, var = p1 - p2, (p1 * (1 - p1) + p2 * (1 - p2)) / 2
        if var == 0:
            out[key] = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        else:
            out[key] = diff / math.sqrt(var)
    return pd.Series(out, dtype=float)


def check_against_reference(res: Table1Result, raw, sites, definition, spec) -> None:
    feats = []
    for site in sites:
        feat = features(raw[site.id], cohort_entries(definition, site), spec)
        assert_matches(rows_of(res, "target", site.id), summarize(feat))
        feats.append(feat.assign(subject=site.id + ":" + feat["subject"].astype(str)))
    assert_matches(rows_of(res, "target", "overall"), summarize(pd.concat(feats)), quantiles=False)
