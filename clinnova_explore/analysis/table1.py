"""The combine step of Table 1 and its result object.

:func:`assemble` turns the sites' ``counts`` and ``moments`` payload tables (see
:mod:`clinnova_explore.analysis.characterize`) into one long table of statistics per cohort,
site and row, adds the overall column (counts and sums added across sites; a suppressed part
makes the overall cell NA) and the standardized mean differences, and wraps them in a
:class:`Table1Result`.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clinnova_explore.analysis.contract import Moments, answered, combine_counts
from clinnova_explore.analysis.covariates import AGE_GROUP, INDEX_YEAR, PERSONS, RECORDS, UNKNOWN
from clinnova_explore.analysis.payload import Payload
from clinnova_explore.analysis.result import AnalysisResult, Provenance
from clinnova_explore.analysis.smd import smd_binary, smd_continuous

if TYPE_CHECKING:
    from clinnova_explore.analysis.characterize import CharacterizeSpec

__all__ = ["OVERALL", "STATISTICS", "Table1Result", "assemble"]

OVERALL = "overall"
STATISTICS = (
    "n",
    "percent",
    "mean",
    "sd",
    "median",
    "q1",
    "q3",
    "missing",
    "missing_percent",
    "suppressed",
)
"""Statistics per cohort and site in :attr:`Table1Result.summary` (NaN where they do not apply)."""

_KEYS = ["cohort", "variable", "level"]
_QUARTILES = ("q1", "median", "q3")


@dataclass(frozen=True, eq=False)
class Table1Result(AnalysisResult):
    """Table 1 of a cohort (or two), per site and overall.

    Attributes
    ----------
    summary
        Index ``(variable, level)`` in display order; columns ``(cohort, site, statistic)``
        with cohort ``"target"``/``"comparator"``, site ids then ``"overall"``, and the
        :data:`STATISTICS`; with a comparator, ``("smd", site, "smd")`` columns follow.
    data
        The same numbers as a long table: ``cohort, site, variable, level, kind`` and the
        statistics. ``kind`` is ``count`` (entries, persons), ``categorical`` (sex, age group,
        index year), ``binary`` (a covariate in a window) or ``continuous`` (age, latest
        measurement). ``n`` counts entries in the category, or with a value (nullable integer,
        NA when suppressed); ``percent`` is of the cohort's entries at that site; ``mean`` and
        ``sd`` (ddof=1), ``median``, ``q1``, ``q3`` describe values; ``missing`` counts
        entries without one. ``suppressed`` marks a row whose count a site's policy hid; a
        continuous row hidden only as the complement of a small missing count still shows
        its mean, SD and quartiles.
    smd
        Target minus comparator standardized mean differences: index ``(variable, level)``,
        one column per site and ``"overall"`` (empty without a comparator).
    cohorts
        ``{"target": name, "comparator": name}``.
    notes
        What a reader must know: refusals, withheld quartiles, suppression.
    """

    data: pd.DataFrame
    smd: pd.DataFrame
    cohorts: Mapping[str, str]
    notes: tuple[str, ...]

    @property
    def sites(self) -> list[str]:
        """The site columns of the table (without ``"overall"``)."""
        return [s for s in self.data["site"].unique() if s != OVERALL]

    def plot(self, **options: Any) -> Any:
        """SMD dot plot (one row per covariate level; see :func:`viz.table1.smd_plot`)."""
        from clinnova_explore.viz.table1 import smd_plot

        return smd_plot(self, **options)

    def to_great_table(self, *, per_site: bool = True) -> Any:
        """The table as a great-tables ``GT`` object (see :func:`viz.table1.table1_gt`)."""
        from clinnova_explore.viz.table1 import table1_gt

        return table1_gt(self, per_site=per_site)

    def _title(self) -> str:
        names = list(self.cohorts.values())
        return "Table 1: " + (" vs ".join(names) if names else "no cohort")

    def _repr_html_(self) -> str:
        gt_html = self.to_great_table().as_raw_html()
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (
            f"<div class='clinnova-result'>{gt_html}<ul>{notes}</ul>"
            f"<details><summary>Provenance</summary>{self.provenance._repr_html_()}</details>"
            "</div>"
        )


# ---------------------------------------------------------------------- combine


def _with_zero_levels(parts: Sequence[Payload]) -> list[Payload]:
    """Give every site a row (count 0) for each level another site released (index years)."""
    keys = [*_KEYS, "part"]
    if not parts:
        return []
    union = pd.concat([p.tables["counts"][keys] for p in parts], ignore_index=True)
    union = union.drop_duplicates().reset_index(drop=True)
    out = []
    for p in parts:
        counts = union.merge(p.tables["counts"], on=keys, how="left")
        released = counts["suppressed"].notna()
        counts["n"] = counts["n"].astype("Int64").where(released, 0)
        counts["suppressed"] = counts["suppressed"].eq(True).astype(bool)
        tables = {**p.tables, "counts": counts}
        out.append(dataclasses.replace(p, tables=tables))
    return out


def _overall(parts: Sequence[Payload]) -> tuple[pd.DataFrame, pd.DataFrame]:
    counts = combine_counts([p.tables["counts"] for p in parts], [*_KEYS, "part"], ["n"])
    observed = counts[counts["part"] == "observed"].set_index(_KEYS)["n"]
    moments = pd.concat([p.tables["moments"] for p in parts], ignore_index=True)
    rows = []
    for key, group in moments.groupby(_KEYS, sort=False):
        hidden = bool(group["suppressed"].any())
        row = dict(zip(_KEYS, key, strict=True), suppressed=hidden)
        row |= dict.fromkeys(["mean", "sd", *_QUARTILES], np.nan)
        if not hidden:
            total = Moments.from_sums(
                int(observed[key]),
                group["sum"].astype(float).sum(),
                group["sumsq"].astype(float).sum(),
            )
            row |= {"mean": total.mean, "sd": total.sd}
        if len(parts) == 1:  # the overall of one site (or of the pooled site) is that site
            row |= {q: group[q].astype(float).iloc[0] for q in ["mean", "sd", *_QUARTILES]}
        rows.append(row)
    return counts, pd.DataFrame(rows)


def _statistics(counts: pd.DataFrame, moments: pd.DataFrame, site: str) -> pd.DataFrame:
    """Long statistics for one site (or the overall) from its counts and moments."""
    counts = counts.assign(n=counts["n"].astype("Float64").astype(float))
    records = counts[counts["variable"] == RECORDS].set_index("cohort")["n"]
    plain = counts[counts["part"].isin(["n", "present"])].copy()
    plain["kind"] = np.where(
        plain["part"] == "present",
        "binary",
        np.where(plain["variable"].isin([RECORDS, PERSONS]), "count", "categorical"),
    )
    plain["percent"] = np.where(
        plain["kind"] == "count", np.nan, 100 * plain["n"] / plain["cohort"].map(records)
    )
    observed = counts[counts["part"] == "observed"].set_index(_KEYS)
    missing = counts[counts["part"] == "missing"].set_index(_KEYS)
    cont = moments.set_index(_KEYS).reindex(observed.index)
    continuous = pd.DataFrame(
        {
            "kind": "continuous",
            "n": observed["n"],
            "mean": cont["mean"].astype(float),
            "sd": cont["sd"].astype(float),
            **{q: cont[q].astype(float) for q in _QUARTILES},
            "missing": missing["n"].reindex(observed.index),
            "suppressed": observed["suppressed"]
            | missing["suppressed"].reindex(observed.index).fillna(True).astype(bool)
            | cont["suppressed"].fillna(True).astype(bool),
        },
        index=observed.index,
    ).reset_index()
    cohort_records = continuous["cohort"].map(records)
    continuous["missing_percent"] = 100 * continuous["missing"] / cohort_records
    out = pd.concat([plain.drop(columns="part"), continuous], ignore_index=True)
    out.insert(1, "site", site)
    return out


def _order(data: pd.DataFrame, spec: CharacterizeSpec) -> pd.DataFrame:
    order = spec.row_order()
    years = sorted(data.loc[data["variable"] == INDEX_YEAR, "level"].unique())
    order[INDEX_YEAR] = years
    rank = {(v, lvl): i for i, (v, lvl) in enumerate((v, lv) for v in order for lv in order[v])}
    unknown_age = (data["variable"] == AGE_GROUP) & (data["level"] == UNKNOWN)
    if (data.loc[unknown_age, "n"].fillna(1) == 0).all():
        data = data[~unknown_age]
    keyed = data.assign(
        _row=[
            rank.get((v, lv), len(rank))
            for v, lv in zip(data["variable"], data["level"], strict=True)
        ],
        _cohort=data["cohort"].map({"target": 0, "comparator": 1}),
    )
    sites = list(dict.fromkeys(data["site"]))
    keyed["_site"] = keyed["site"].map({s: i for i, s in enumerate(sites)})
    keyed = keyed.sort_values(["_cohort", "_site", "_row"], kind="stable")
    return keyed.drop(columns=["_row", "_cohort", "_site"]).reset_index(drop=True)


def _smd(data: pd.DataFrame) -> pd.DataFrame:
    keys = ["site", "variable", "level"]
    rows = data[data["kind"] != "count"]
    if not (rows["cohort"] == "comparator").any():
        return pd.DataFrame(index=pd.MultiIndex.from_arrays([[], []], names=["variable", "level"]))
    target = rows[rows["cohort"] == "target"].set_index(keys)
    comparator = rows[rows["cohort"] == "comparator"].set_index(keys).reindex(target.index)
    binary = smd_binary(target["percent"] / 100, comparator["percent"] / 100)
    continuous = smd_continuous(target["mean"], target["sd"], comparator["mean"], comparator["sd"])
    value = np.where(target["kind"] == "continuous", continuous, binary)
    smd = pd.Series(value, index=target.index, name="smd").reset_index()
    wide = smd.pivot_table(
        index=["variable", "level"], columns="site", values="smd", dropna=False, sort=False
    )
    return wide.reindex(columns=list(dict.fromkeys(smd["site"])))


def _wide(data: pd.DataFrame, smd: pd.DataFrame) -> pd.DataFrame:
    index = pd.MultiIndex.from_frame(
        data[["variable", "level"]].drop_duplicates(), names=["variable", "level"]
    )
    blocks = {}
    for (cohort, site), part in data.groupby(["cohort", "site"], sort=False):
        block = part.set_index(["variable", "level"])[list(STATISTICS)].reindex(index)
        for stat in STATISTICS:
            blocks[(cohort, site, stat)] = block[stat]
    for site in smd.columns:
        blocks[("smd", site, "smd")] = smd[site].reindex(index)
    names = ["cohort", "site", "statistic"]
    columns = pd.MultiIndex.from_tuples(list(blocks), names=names) if blocks else None
    wide = pd.DataFrame(blocks, index=index)
    if columns is None:
        return pd.DataFrame(
            index=index, columns=pd.MultiIndex.from_arrays([[], [], []], names=names)
        )
    wide.columns = columns
    return wide


def _notes(
    payloads: Sequence[Payload], shown: list[str], pooled: bool, data: pd.DataFrame
) -> list[str]:
    notes = [f"{p.site} refused ({p.refused}) and is not counted." for p in payloads if p.refused]
    withheld = [p.site for p in answered(payloads) if not p.values.get("quantiles_released", True)]
    if withheld:
        notes.append(
            "Medians and quartiles withheld by site policy (allow_quantiles): "
            f"{', '.join(withheld)}."
        )
    if len(shown) > 1 and not pooled:
        notes.append(
            "Overall medians and quartiles are not combinable across sites in federated mode "
            "(shown as NA); run with mode='pooled' to compute them."
        )
    if data["suppressed"].any():
        notes.append(
            "Suppressed cells held a count below the site's min_cell_count (or a complementary "
            "cell); an overall cell with a suppressed site contribution is NA."
        )
    return notes


def assemble(
    payloads: Sequence[Payload], spec: CharacterizeSpec, provenance: Provenance
) -> Table1Result:
    """Combine the sites' payloads into a :class:`Table1Result` (the combine step)."""
    parts = _with_zero_levels(answered(payloads))
    pooled = provenance.mode == "pooled"
    frames = []
    if not pooled:
        for p in parts:
            frames.append(_statistics(p.tables["counts"], p.tables["moments"], p.site))
    if parts:
        frames.append(_statistics(*_overall(parts), OVERALL))
    columns = ["cohort", "site", "variable", "level", "kind", *STATISTICS]
    data = _order(pd.concat(frames, ignore_index=True), spec) if frames else pd.DataFrame()
    data = data.reindex(columns=columns)
    for col in ("n", "missing"):
        data[col] = data[col].astype("Float64").round().astype("Int64")
    data["suppressed"] = data["suppressed"].astype(bool)
    smd = _smd(data)
    hashes = {role: d.definition_hash for role, d in spec.cohorts().items()}
    return Table1Result(
        summary=_wide(data, smd),
        provenance=dataclasses.replace(provenance, definition_hashes=hashes),
        data=data,
        smd=smd,
        cohorts={role: d.name for role, d in spec.cohorts().items()},
        notes=tuple(_notes(payloads, [p.site for p in parts], pooled, data)),
    )
