"""The incidence local step's database work: time at risk, clean windows, outcomes, strata.

These queries implement steps 1-3 and 5 of :mod:`clinnova_explore.analysis.incidence` (whose
docstring defines them) on one site's connection; only the aggregate per stratum is fetched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from clinnova_explore.analysis.cohort_tables import merge_intervals, split_by_year
from clinnova_explore.cdm import concepts

if TYPE_CHECKING:
    from clinnova_explore.analysis.incidence import Anchor, IncidenceSpec

__all__ = ["aggregate_strata", "at_risk_pieces", "stratum_label"]


def at_risk_pieces(site: Any, spec: IncidenceSpec, target: ir.Table, outcome: ir.Table) -> ir.Table:
    """Per person, TAR and calendar year: unblocked person-days and counted outcomes."""
    op = site.table("observation_period")
    j = target.join(
        op,
        [
            target.subject_id == op.person_id,
            target.cohort_start_date >= op.observation_period_start_date,
            target.cohort_start_date <= op.observation_period_end_date,
        ],
    )
    op_end = j.observation_period_end_date.cast("date")
    tar = spec.tar

    def anchored(anchor: Anchor, offset: int) -> ir.DateValue:
        base = j.cohort_start_date if anchor == "start" else j.cohort_end_date
        return ibis.least(base + ibis.interval(days=offset), op_end)

    ttar = j.select(
        "subject_id",
        start=anchored(tar.start_anchor, tar.start_offset),
        end=anchored(tar.end_anchor, tar.end_offset),
    )
    ttar = merge_intervals(ttar.filter(ttar.start <= ttar.end), ["subject_id"])
    ttar = ttar.rename(tar_start="start", tar_end="end")

    # blocked days (clean windows) inside each TAR, merged per TAR
    cw = spec.clean_window
    blocked = outcome.select(
        "subject_id",
        b_start=outcome.cohort_start_date + ibis.interval(days=1),
        b_end=outcome.cohort_end_date + ibis.interval(days=cw),
    )
    if cw < 1:
        blocked = blocked.filter(ibis.literal(False))
    bj = ttar.join(
        blocked,
        [
            ttar.subject_id == blocked.subject_id,
            blocked.b_start <= ttar.tar_end,
            blocked.b_end >= ttar.tar_start,
        ],
    )
    blocked_in = bj.select(
        "subject_id",
        "tar_start",
        start=ibis.greatest(bj.b_start, bj.tar_start),
        end=ibis.least(bj.b_end, bj.tar_end),
    )
    blocked_in = merge_intervals(blocked_in, ["subject_id", "tar_start"])

    # outcomes starting on an unblocked TAR day
    oj = ttar.join(
        outcome,
        [
            ttar.subject_id == outcome.subject_id,
            outcome.cohort_start_date >= ttar.tar_start,
            outcome.cohort_start_date <= ttar.tar_end,
        ],
    )
    hits = oj.select("subject_id", "tar_start", day=oj.cohort_start_date)
    hits = hits.anti_join(
        blocked_in,
        [
            hits.subject_id == blocked_in.subject_id,
            hits.tar_start == blocked_in.tar_start,
            hits.day >= blocked_in.start,
            hits.day <= blocked_in.end,
        ],
    )
    hits = hits.group_by("subject_id", "tar_start", year=hits.day.year()).agg(
        outcomes=ibis._.count()
    )

    keys = ["subject_id", "tar_start", "year"]
    tar_years = split_by_year(ttar.mutate(start=ttar.tar_start, end=ttar.tar_end))
    blocked_years = split_by_year(blocked_in).group_by(keys).agg(blocked=ibis._.days.sum())
    pieces = tar_years.left_join(blocked_years, keys).select(
        *[tar_years[k] for k in keys],
        person_days=tar_years.days - blocked_years.blocked.fill_null(0),
    )
    pieces = pieces.left_join(hits, keys).select(
        *[pieces[k] for k in keys],
        pieces.person_days,
        outcomes=hits.outcomes.fill_null(0),
    )
    person = site.table("person")
    pieces = pieces.join(person, pieces.subject_id == person.person_id)
    age = pieces.tar_start.year() - person.year_of_birth
    b = spec.age_breaks
    labels = spec.age_labels()
    age_group = ibis.cases(
        *[(age < hi, labels[i]) for i, hi in enumerate(b[1:])], else_=labels[-1]
    ).cast("string")
    sex = ibis.cases(
        (person.gender_concept_id == concepts.MALE, "male"),
        (person.gender_concept_id == concepts.FEMALE, "female"),
        else_="unknown",
    )
    return pieces.select(*keys, "person_days", "outcomes", age_group=age_group, sex=sex)


def stratum_label(dims: tuple[str, ...]) -> str:
    """The ``stratum`` value of a grouping: ``"overall"``, ``"sex"``, ``"age_group x sex"``."""
    return " x ".join(dims) if dims else "overall"


def aggregate_strata(pieces: ir.Table, groupings: Sequence[tuple[str, ...]]) -> pd.DataFrame:
    """Persons at risk, person-days, persons with outcomes and outcomes per stratum level.

    One block of rows per grouping (``()`` is the overall row), fetched as one query; the
    dimensions a grouping does not use are missing in its rows.
    """
    parts = []
    for dims in groupings:
        metrics = {
            "persons_at_risk": pieces.subject_id.nunique(where=pieces.person_days > 0),
            "person_days": pieces.person_days.sum().fill_null(0).cast("int64"),
            "person_outcomes": pieces.subject_id.nunique(where=pieces.outcomes > 0),
            "outcomes": pieces.outcomes.sum().fill_null(0).cast("int64"),
        }
        agg = pieces.group_by(list(dims)).agg(**metrics) if dims else pieces.agg(**metrics)
        fill = {
            "stratum": ibis.literal(stratum_label(dims)),
            "age_group": agg.age_group if "age_group" in dims else ibis.null("string"),
            "sex": agg.sex if "sex" in dims else ibis.null("string"),
            "year": agg.year.cast("int64") if "year" in dims else ibis.null("int64"),
        }
        parts.append(agg.select(**fill, **{k: agg[k].cast("int64") for k in metrics}))
    df = ibis.union(*parts).to_pandas() if len(parts) > 1 else parts[0].to_pandas()
    return _tidy_strata(df)


def _tidy_strata(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in ("stratum", "age_group", "sex"):
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    out["year"] = out["year"].astype("Int64")
    for col in ("persons_at_risk", "person_days", "person_outcomes", "outcomes"):
        out[col] = out[col].astype("Int64")
    order = out.year.fillna(-1).astype("int64")
    out = out.assign(_o=order).sort_values(
        ["stratum", "age_group", "sex", "_o"], na_position="first"
    )
    return out.drop(columns="_o").reset_index(drop=True)
