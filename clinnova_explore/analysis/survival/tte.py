"""Time-to-event tables from an OMOP CDM: one row per person and index date, lazily in the DB.

:func:`time_to_event` turns a :class:`TimeToEventSpec` into the input every survival function
takes (``duration``, ``event``, covariates), computed at the site as one ibis expression:

1. the target cohort's eras give the index dates (``cohort_start_date``); with a comparator
   cohort, target rows get ``treatment`` 1 and comparator rows 0, and persons found in both
   cohorts are dropped;
2. the index date must lie in an observation period; follow-up runs from ``index +
   start_offset`` to the end of that period (``end="observation_end"``, intention to treat) or
   the cohort era's end (``end="cohort_end"``, on treatment), plus ``end_offset`` days, never
   past the observation period, and at most ``max_days`` days after the index date; death ends
   it too. Rows with no day at risk are dropped;
3. the outcome is the first outcome cohort start in that window (``event`` 1); a competing
   event (death, or the first start of a competing cohort) before it gives ``event`` 2; else
   the row is censored (``event`` 0) at the end of follow-up. An outcome and a competing event
   on the same day count as the outcome. ``duration`` is the number of days from the index
   date to the event or censoring date;
4. age, sex, index year and the baseline covariates (:mod:`.tte_covariates`) are added.

On a pooled site the ``site`` column holds each person's own site
(:func:`clinnova_explore.analysis.pooled.site_label`), so a Cox model can be stratified by it.
"""

from __future__ import annotations

from functools import reduce

import ibis
import ibis.expr.types as ir
import pandas as pd

from clinnova_explore.analysis.pooled import site_label
from clinnova_explore.analysis.survival.tte_covariates import Covariate, add_covariates
from clinnova_explore.analysis.survival.tte_spec import (
    BASE_COLUMNS,
    CohortSpec,
    TimeToEventError,
    TimeToEventSpec,
    resolve_definition,
    spec_hash,
)
from clinnova_explore.cdm import concepts
from clinnova_explore.cdm.source import CdmSource
from clinnova_explore.cohort import compile_cohort
from clinnova_explore.cohort.events import add_days

__all__ = [
    "BASE_COLUMNS",
    "Covariate",
    "TimeToEventError",
    "TimeToEventSpec",
    "spec_hash",
    "time_to_event",
    "tte_attrition",
]

# ---------------------------------------------------------------------- the query


def _cohort(ref: CohortSpec, cdm: CdmSource) -> ir.Table:
    t = compile_cohort(resolve_definition(ref), cdm).cohort
    return t.select(
        person_id=t.subject_id.cast("int64"),
        index_date=t.cohort_start_date.cast("date"),
        era_end=t.cohort_end_date.cast("date"),
    )


def _arms(cdm: CdmSource, spec: TimeToEventSpec) -> tuple[ir.Table, dict[str, ir.Table]]:
    """Index rows (with ``treatment`` when two arms) and the stages attrition counts."""
    target = _cohort(spec.target, cdm)
    stages = {"target": target}
    if spec.comparator is None:
        return target, stages
    comparator = _cohort(spec.comparator, cdm)
    stages["comparator"] = comparator
    both = target.select("person_id").intersect(comparator.select("person_id"))
    both = both.rename(_both="person_id")
    rows = target.mutate(treatment=ibis.literal(1, "int64")).union(
        comparator.mutate(treatment=ibis.literal(0, "int64"))
    )
    rows = rows.anti_join(both, rows.person_id == both._both)
    stages["one_arm"] = rows
    return rows, stages


def _deaths(cdm: CdmSource) -> ir.Table:
    death = cdm.table("death")
    return death.group_by(d_person=death.person_id.cast("int64")).aggregate(
        death_date=death.death_date.cast("date").min()
    )


def _first_start(rows: ir.Table, ref: CohortSpec, cdm: CdmSource, name: str) -> ir.Table:
    """Per index row, the first start of cohort ``ref`` in ``[risk_start, stop]``."""
    c = _cohort(ref, cdm)
    c = c.select(c_person=c.person_id, c_date=c.index_date)
    r = rows.select("person_id", "index_date", "risk_start", "stop")
    j = r.join(c, [r.person_id == c.c_person, c.c_date >= r.risk_start, c.c_date <= r.stop])
    return j.group_by([j.person_id.name("k_person"), j.index_date.name("k_index")]).aggregate(
        **{name: j.c_date.min()}
    )


def _at_risk(cdm: CdmSource, spec: TimeToEventSpec) -> tuple[ir.Table, dict[str, ir.Table]]:
    """Index rows with ``risk_start``, ``stop`` and ``died`` (death ended follow-up)."""
    rows, stages = _arms(cdm, spec)
    op = cdm.table("observation_period")
    op = op.select(
        op_person=op.person_id.cast("int64"),
        op_start=op.observation_period_start_date.cast("date"),
        op_end=op.observation_period_end_date.cast("date"),
    )
    j = rows.join(
        op,
        [
            rows.person_id == op.op_person,
            rows.index_date >= op.op_start,
            rows.index_date <= op.op_end,
        ],
    )
    stages["in_observation"] = j
    anchor = j.op_end if spec.end == "observation_end" else j.era_end
    stop = ibis.least(add_days(anchor, spec.end_offset), j.op_end)
    if spec.max_days is not None:
        stop = ibis.least(stop, add_days(j.index_date, spec.max_days))
    j = j.mutate(stop=stop)
    deaths = _deaths(cdm)
    j = j.left_join(deaths, j.person_id == deaths.d_person)
    died = j.death_date.notnull() & (j.death_date <= j.stop)
    keep = [c for c in j.columns if c not in ("d_person", "op_person", "op_start", "stop")]
    j = j.select(
        *keep,
        stop=ibis.ifelse(died, j.death_date, j.stop),
        died=died.fill_null(False),
        risk_start=add_days(j.index_date, spec.start_offset),
    )
    j = j.filter(j.risk_start <= j.stop)
    stages["at_risk"] = j
    return j, stages


def _with_outcomes(cdm: CdmSource, spec: TimeToEventSpec, rows: ir.Table) -> ir.Table:
    """Adds ``event`` (0/1/2) and ``duration`` (days)."""
    first = _first_start(rows, spec.outcome, cdm, "outcome_date")
    rows = rows.left_join(
        first, [rows.person_id == first.k_person, rows.index_date == first.k_index]
    ).drop("k_person", "k_index")
    if spec.competing is not None and spec.competing != "death":
        comp = _first_start(rows, spec.competing, cdm, "competing_date")
        rows = rows.left_join(
            comp, [rows.person_id == comp.k_person, rows.index_date == comp.k_index]
        ).drop("k_person", "k_index")
    else:
        rows = rows.mutate(competing_date=ibis.null("date"))
    out_first = rows.outcome_date.notnull() & (
        rows.competing_date.isnull() | (rows.outcome_date <= rows.competing_date)
    )
    death_competes = ibis.literal(spec.competing == "death") & rows.died
    event = ibis.cases(
        (out_first, 1),
        (rows.competing_date.notnull(), 2),
        (death_competes, 2),
        else_=0,
    ).cast("int64")
    when = ibis.cases(
        (out_first, rows.outcome_date),
        (rows.competing_date.notnull(), rows.competing_date),
        else_=rows.stop,
    )
    return rows.mutate(event=event, duration=when.delta(rows.index_date, unit="day").cast("int64"))


def _demographics(cdm: CdmSource, rows: ir.Table) -> ir.Table:
    person = cdm.table("person")
    birth = ibis.coalesce(
        person.birth_datetime.cast("date"),
        ibis.date(
            person.year_of_birth.cast("int32"),
            person.month_of_birth.fill_null(1).cast("int32"),
            person.day_of_birth.fill_null(1).cast("int32"),
        ),
    )
    sex = ibis.cases(
        (person.gender_concept_id == concepts.FEMALE, "F"),
        (person.gender_concept_id == concepts.MALE, "M"),
        else_=ibis.null("string"),
    )
    p = person.select(p_person=person.person_id.cast("int64"), birth=birth, sex=sex)
    j = rows.join(p, rows.person_id == p.p_person)
    return j.mutate(
        age=(j.index_date.delta(j.birth, unit="day").cast("float64") / 365.25),
        female=ibis.ifelse(j.sex == "F", 1, 0).fill_null(0).cast("int64"),
        index_year=j.index_date.year().cast("int64"),
    )


def time_to_event(cdm: CdmSource, spec: TimeToEventSpec) -> ir.Table:
    """The time-to-event table of ``spec`` at one CDM source, as a lazy ibis table.

    Parameters
    ----------
    cdm
        A catalog site, a CDM opened with :func:`~clinnova_explore.cdm.source.open_cdm`, or a
        pooled site (:func:`~clinnova_explore.analysis.pooled.pooled_site`).
    spec
        What to compute (see :class:`TimeToEventSpec` and the module docstring).

    Returns
    -------
    ibis.Table
        One row per person and index date: ``site`` (str), ``person_id`` (int64),
        ``index_date`` (date), ``duration`` (int64 days), ``event`` (int64: 0 censored,
        1 outcome, 2 competing event), ``treatment`` (int64, only with a comparator), ``age``
        (float64 years at index), ``sex`` ("F"/"M", NULL if unknown), ``female`` (int64),
        ``index_year`` (int64), then one float64 column per covariate. Nothing runs until it is
        executed; it runs entirely in the source's database.

    Raises
    ------
    TimeToEventError
        If ``spec`` is not a :class:`TimeToEventSpec`.

    Examples
    --------
    >>> from clinnova_explore.analysis.survival.presets import comparison
    >>> tte = time_to_event(site, comparison("ms_high_efficacy_vs_platform"))  # doctest: +SKIP
    >>> tte.event.value_counts().to_pandas()  # doctest: +SKIP
    """
    if not isinstance(spec, TimeToEventSpec):
        raise TimeToEventError(
            f"time_to_event needs a TimeToEventSpec, got {type(spec).__name__}; build one with "
            "TimeToEventSpec(...) or presets.comparison(name)"
        )
    rows, _ = _at_risk(cdm, spec)
    rows = _with_outcomes(cdm, spec, rows)
    rows = _demographics(cdm, rows)
    columns: dict[str, ir.Value] = {
        "site": site_label(cdm, rows.person_id).cast("string"),
        "person_id": rows.person_id,
        "index_date": rows.index_date,
        "duration": rows.duration,
        "event": rows.event,
    }
    if spec.comparator is not None:
        columns["treatment"] = rows.treatment
    columns.update(age=rows.age, sex=rows.sex, female=rows.female, index_year=rows.index_year)
    out = rows.select(**columns)
    return add_covariates(cdm, out, spec.covariates)


def tte_attrition(cdm: CdmSource, spec: TimeToEventSpec) -> pd.DataFrame:
    """How many persons remain after each step of :func:`time_to_event` (one query).

    Returns
    -------
    pandas.DataFrame
        Columns ``step`` and ``persons`` (distinct persons): the target cohort, the comparator
        cohort (with a comparator), persons in exactly one arm, index date inside an
        observation period, and with at least one day at risk (the rows of
        :func:`time_to_event`).
    """
    _, stages = _at_risk(cdm, spec)
    labels = {
        "target": "Target cohort",
        "comparator": "Comparator cohort",
        "one_arm": "In exactly one arm (persons in both dropped)",
        "in_observation": "Index date inside an observation period",
        "at_risk": "At least one day at risk",
    }
    parts = [
        t.aggregate(k=ibis.literal(k, "int64"), persons=t.person_id.nunique().cast("int64"))
        for k, t in enumerate(stages.values())
    ]
    counts = reduce(lambda a, b: a.union(b), parts).to_pandas()
    found = dict(zip(counts["k"].astype(int), counts["persons"].astype(int), strict=True))
    frame = pd.DataFrame(
        {
            "step": [labels[key] for key in stages],
            "persons": [found.get(k, 0) for k in range(len(stages))],
        }
    )
    return frame.astype({"persons": "int64"})
