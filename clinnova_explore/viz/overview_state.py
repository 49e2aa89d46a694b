"""State of the overview dashboard: filters and the derived tables the views show.

No Panel import here: the class is plain ``param`` so that it can be tested without a
browser, and every number it exposes comes from :mod:`clinnova_explore.overview`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pandas as pd
import param

from clinnova_explore import overview
from clinnova_explore.catalog import Catalog

__all__ = ["OverviewState"]

ALL = "All diseases"


class OverviewState(param.Parameterized):
    """Filters of the overview dashboard and the tables derived from them.

    Parameters
    ----------
    catalog
        The federation to show.
    """

    sites = param.ListSelector(default=[], objects=[], doc="Sites included in the views.")
    disease = param.Selector[str](
        default=ALL,
        objects=[ALL, *overview.DISEASES],
        doc="Restrict disease counts to one disease.",
    )
    bin_years = param.Integer(
        default=1, bounds=(1, 5), doc="Bin width (whole years) of the follow-up histogram."
    )
    drill_site = param.Selector[str](
        default=None, objects=[], allow_None=True, doc="Site whose data-quality checks are listed."
    )
    include_passed = param.Boolean(
        default=True,
        doc="Also list checks that pass their threshold but still found violations.",
    )

    def __init__(self, catalog: Catalog, **params: object) -> None:
        self.catalog = catalog
        ids = catalog.site_ids
        self.param.sites.objects = ids
        self.param.drill_site.objects = ids
        params.setdefault("sites", list(ids))
        params.setdefault("drill_site", ids[0] if ids else None)
        super().__init__(**params)

    @classmethod
    def from_path(cls, path: str | Path | None = None) -> OverviewState:
        """Build the state for a catalog file (default: the project's catalog)."""
        return cls(Catalog.load(path))

    # ---- cached per-site aggregates (computed once, inside each site) ----
    @cached_property
    def _summary(self) -> pd.DataFrame:
        return overview.site_summary(self.catalog)

    @cached_property
    def _diseases(self) -> pd.DataFrame:
        return overview.persons_by_disease(self.catalog)

    @cached_property
    def _followup_fine(self) -> pd.DataFrame:
        return overview.followup_histogram(self.catalog)

    @cached_property
    def _coverage(self) -> pd.DataFrame:
        return overview.mapping_coverage(self.catalog)

    @cached_property
    def _quality(self) -> pd.DataFrame:
        return overview.quality_overview(self.catalog)

    @cached_property
    def _reconciliation(self) -> pd.DataFrame:
        return overview.reconciliation(self.catalog)

    def _keep(self, df: pd.DataFrame) -> pd.DataFrame:
        return df[df.site.isin(self.sites)].reset_index(drop=True)

    # ---- derived views ----
    @param.depends("sites")
    def summary(self) -> pd.DataFrame:
        """Per-site persons, person-years, median follow-up and deaths."""
        return self._keep(self._summary)

    @param.depends("sites", "disease")
    def disease_counts(self) -> pd.DataFrame:
        """Persons per disease and site for the chosen sites (and disease)."""
        df = self._keep(self._diseases)
        if self.disease != ALL:
            df = df[df.disease == self.disease].reset_index(drop=True)
        return df

    @param.depends("sites", "disease")
    def totals(self) -> dict[str, float]:
        """Headline numbers: sites, persons, person-years (suppressed cells excluded)."""
        summ = self.summary()
        if self.disease == ALL:
            persons = float(summ.persons.sum(skipna=True))
        else:
            persons = float(self.disease_counts().persons.sum(skipna=True))
        # sites whose person count is suppressed contribute nothing to the totals
        shown = summ[summ.persons.notna()]
        return {
            "sites": float(len(summ)),
            "persons": persons,
            "person_years": float(shown.person_years.sum()),
        }

    @param.depends("sites", "bin_years")
    def followup(self) -> pd.DataFrame:
        """Follow-up histogram per site at the chosen bin width."""
        if not self.sites:
            return pd.DataFrame(columns=["site", "years_from", "years_to", "persons", "suppressed"])
        return overview.coarsen_histogram(self._keep(self._followup_fine), self.bin_years)

    @param.depends("sites")
    def coverage(self) -> pd.DataFrame:
        """Mapping coverage per site and CDM table."""
        return self._keep(self._coverage)

    @param.depends("sites")
    def reconciliation(self) -> pd.DataFrame:
        """Rows in, loaded and quarantined per site and source table."""
        return self._keep(self._reconciliation)

    @param.depends("sites")
    def quality(self) -> pd.DataFrame:
        """Data-quality status per site."""
        return self._keep(self._quality)

    @param.depends("drill_site", "include_passed")
    def checks(self) -> pd.DataFrame:
        """Failing (and optionally passing-with-violations) checks of the drill-down site."""
        if self.drill_site is None:
            return overview.failing_checks(self.catalog, self.catalog.site_ids[0]).iloc[0:0]
        return overview.failing_checks(
            self.catalog, self.drill_site, include_passed=self.include_passed
        )
