"""Tiny hand-made OMOP CDMs for cohort tests: a few persons crafted to hit one edge each.

``TinyCdm`` collects rows with explicit ids and dates, then writes a real DuckDB file with the
project's CDM tables (``create_cdm_tables``) and shipped vocabulary (``write_vocabulary``).
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import ibis
import pandas as pd

from clinnova_explore.cdm import concepts as c
from clinnova_explore.cdm.schema import create_cdm_tables
from clinnova_explore.cdm.source import DuckDBFileCdm
from clinnova_explore.cdm.vocabulary import write_vocabulary


def d(text: str) -> dt.date:
    """An ISO date."""
    return dt.date.fromisoformat(text)


class TinyCdm:
    """Rows of a small CDM; ids are assigned in insertion order unless given."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._ids: dict[str, int] = defaultdict(int)

    def _next(self, table: str) -> int:
        self._ids[table] += 1
        return self._ids[table]

    def person(
        self,
        pid: int,
        yob: int = 1980,
        gender: int = c.FEMALE,
        start: str = "2010-01-01",
        end: str = "2020-12-31",
    ) -> TinyCdm:
        """A person with one observation period (``start`` to ``end``)."""
        self.rows["person"].append(
            {"person_id": pid, "gender_concept_id": gender, "year_of_birth": yob}
        )
        return self.period(pid, start, end)

    def period(self, pid: int, start: str, end: str) -> TinyCdm:
        """An (extra) observation period."""
        self.rows["observation_period"].append(
            {
                "observation_period_id": self._next("observation_period"),
                "person_id": pid,
                "observation_period_start_date": d(start),
                "observation_period_end_date": d(end),
                "period_type_concept_id": c.EHR,
            }
        )
        return self

    def condition(
        self,
        pid: int,
        concept: int,
        start: str,
        end: str | None = None,
        *,
        visit: int | None = None,
        source: int = 0,
        rid: int | None = None,
    ) -> int:
        rid = rid or self._next("condition_occurrence")
        self.rows["condition_occurrence"].append(
            {
                "condition_occurrence_id": rid,
                "person_id": pid,
                "condition_concept_id": concept,
                "condition_start_date": d(start),
                "condition_end_date": d(end) if end else None,
                "condition_type_concept_id": c.EHR,
                "visit_occurrence_id": visit,
                "condition_source_concept_id": source,
            }
        )
        return rid

    def drug(
        self,
        pid: int,
        concept: int,
        start: str,
        end: str | None = None,
        *,
        days_supply: int | None = None,
        source: int = 0,
        visit: int | None = None,
        rid: int | None = None,
    ) -> int:
        rid = rid or self._next("drug_exposure")
        self.rows["drug_exposure"].append(
            {
                "drug_exposure_id": rid,
                "person_id": pid,
                "drug_concept_id": concept,
                "drug_exposure_start_date": d(start),
                "drug_exposure_end_date": d(end) if end else None,
                "drug_type_concept_id": c.EHR,
                "days_supply": days_supply,
                "visit_occurrence_id": visit,
                "drug_source_concept_id": source,
            }
        )
        return rid

    def measurement(
        self,
        pid: int,
        concept: int,
        date: str,
        value: float | None = None,
        unit: int | None = None,
        *,
        visit: int | None = None,
    ) -> int:
        rid = self._next("measurement")
        self.rows["measurement"].append(
            {
                "measurement_id": rid,
                "person_id": pid,
                "measurement_concept_id": concept,
                "measurement_date": d(date),
                "measurement_type_concept_id": c.EHR,
                "value_as_number": value,
                "unit_concept_id": unit,
                "visit_occurrence_id": visit,
                "measurement_source_concept_id": 0,
            }
        )
        return rid

    def observation(self, pid: int, concept: int, date: str, *, visit: int | None = None) -> int:
        rid = self._next("observation")
        self.rows["observation"].append(
            {
                "observation_id": rid,
                "person_id": pid,
                "observation_concept_id": concept,
                "observation_date": d(date),
                "observation_type_concept_id": c.EHR,
                "visit_occurrence_id": visit,
                "observation_source_concept_id": 0,
            }
        )
        return rid

    def procedure(self, pid: int, concept: int, date: str, *, visit: int | None = None) -> int:
        rid = self._next("procedure_occurrence")
        self.rows["procedure_occurrence"].append(
            {
                "procedure_occurrence_id": rid,
                "person_id": pid,
                "procedure_concept_id": concept,
                "procedure_date": d(date),
                "procedure_type_concept_id": c.EHR,
                "visit_occurrence_id": visit,
                "procedure_source_concept_id": 0,
            }
        )
        return rid

    def visit(self, pid: int, concept: int, start: str, end: str | None = None) -> int:
        rid = self._next("visit_occurrence")
        self.rows["visit_occurrence"].append(
            {
                "visit_occurrence_id": rid,
                "person_id": pid,
                "visit_concept_id": concept,
                "visit_start_date": d(start),
                "visit_end_date": d(end or start),
                "visit_type_concept_id": c.EHR,
                "visit_source_concept_id": 0,
            }
        )
        return rid

    def death(self, pid: int, date: str, cause: int = 0) -> TinyCdm:
        self.rows["death"].append(
            {"person_id": pid, "death_date": d(date), "death_type_concept_id": c.EHR,
             "cause_concept_id": cause, "cause_source_concept_id": 0}
        )  # fmt: skip
        return self

    def write(self, path: Path, template: Path | None = None) -> Path:
        """Write a DuckDB CDM file holding these rows and the shipped vocabulary.

        ``template`` is an empty CDM made by :func:`empty_cdm`, copied instead of rebuilt.
        """
        if template is None:
            con = ibis.duckdb.connect(str(path))
            try:
                create_cdm_tables(con, overwrite=True)
                write_vocabulary(con)
            finally:
                con.disconnect()
        else:
            shutil.copyfile(template, path)
        raw = duckdb.connect(str(path))
        try:
            for table, rows in self.rows.items():
                frame = pd.DataFrame(rows)
                for column in frame.columns:
                    if frame[column].isna().all():
                        frame[column] = frame[column].astype("float64")
                raw.register("new_rows", frame)
                raw.execute(f"INSERT INTO {table} BY NAME SELECT * FROM new_rows")
                raw.unregister("new_rows")
        finally:
            raw.close()
        return path

    def open(self, path: Path, template: Path | None = None) -> DuckDBFileCdm:
        """Write to ``path`` and open it as a CDM source."""
        return DuckDBFileCdm(self.write(path, template))


def empty_cdm(path: Path) -> Path:
    """An empty CDM with the shipped vocabulary, to copy for each tiny CDM."""
    return TinyCdm().write(path)
