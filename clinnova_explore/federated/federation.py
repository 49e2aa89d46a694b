"""A federation of sites that each hold one analysis table, and the analyses run over it.

:class:`Federation` is the coordinator. Every method sends a site-local step (see
:mod:`~clinnova_explore.federated.steps`) to each site through its runner (the analysis
contract's :func:`~clinnova_explore.analysis.contract.exchange_round`): the site's runtime
(:mod:`~clinnova_explore.federated.runtime`) applies the site's own disclosure policy and
differencing guard, checks the payload's schema, logs the request in the site's audit log and
encodes the payload (Arrow IPC by default); the coordinator decodes and checks it again and
combines only decoded payloads. Models (Cox, logistic) run one such round per Newton iteration.
With a remote runner (a process per site) the coordinator holds no rows: each site builds its
table from a :class:`~clinnova_explore.federated.protocol.TableRecipe`.

A site that does not answer stops the analysis (``on_failure="require_all_sites"``) or is left
out of a result flagged partial (``"allow_partial"``); every result's provenance carries each
site's status. :meth:`Federation.preview` shows what each site would release, :meth:`status`
what each site runs.

:meth:`Federation.pooled` is the check: the same rows concatenated into one site (strictest
policy) and analysed by the same code path. With ``min_cell_count=1`` and
``km_time_bin_days=1`` every federated result equals the pooled one (and the plain function
on the concatenated rows) to rounding error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import ibis.expr.types as ir
import pandas as pd

from clinnova_explore.analysis.contract import (
    Analysis,
    FederationError,
    InProcessRunner,
    OnFailure,
    Runner,
    SiteUnavailableError,
    Transport,
    default_requester,
    exchange_round,
    suppressed_cells,
)
from clinnova_explore.analysis.logistic import LogisticResult
from clinnova_explore.analysis.payload import Payload
from clinnova_explore.analysis.pooled import strictest
from clinnova_explore.analysis.result import Mode, Provenance
from clinnova_explore.analysis.survival.km import KaplanMeierResult
from clinnova_explore.analysis.survival.logrank import LogrankResult
from clinnova_explore.catalog import DisclosurePolicy
from clinnova_explore.federated.protocol import (
    SiteInfo,
    SiteRequest,
    SiteStatus,
    TableRecipe,
)
from clinnova_explore.federated.status import ask_status
from clinnova_explore.federated.table_site import (
    SITE_COLUMN,
    SiteAnalysis,
    TableSite,
    Transform,
    recipe_sites,
    sites_from_tables,
)

if TYPE_CHECKING:
    from clinnova_explore.analysis.survival.cox import CoxResult
    from clinnova_explore.analysis.survival.tte import TimeToEventSpec
    from clinnova_explore.catalog import Catalog
    from clinnova_explore.cdm.source import CdmSource
    from clinnova_explore.federated.preview import Preview

__all__ = ["POOLED", "UNAVAILABLE", "Federation", "FederationError", "SiteUnavailableError"]

POOLED = "pooled"
UNAVAILABLE = "site_unavailable"
"""Stands in for the payload of a site that did not answer (``allow_partial``): analyses
leave it out like a refusal, and a model fit stops if it happens between Newton rounds."""
SpecT = TypeVar("SpecT")


class Federation:
    """Sites with one analysis table each; federated (or pooled) analyses over them.

    Build one with :meth:`from_tables`, :meth:`from_cdm` or :meth:`from_site_tables`.

    Parameters
    ----------
    sites
        The sites, in order (unique ids).
    mode
        ``"federated"`` or ``"pooled"`` (one site holding everyone's rows).
    source_ids
        Ids of the original sites (provenance); default the sites' ids.
    transport
        Payload encoding across the site boundary (``"arrow"`` or ``"json"``).
    runner
        Moves rounds to the sites (default an :class:`InProcessRunner`, whose ``traffic``
        lists every payload sent).
    catalog, definition_hashes
        Recorded in every result's provenance.
    on_failure
        ``"require_all_sites"`` (default): a site that does not answer (down, timeout,
        error) stops the analysis with a :class:`SiteUnavailableError` naming it.
        ``"allow_partial"``: the analysis goes on over the other sites and the result's
        provenance says ``partial`` and each site's status. A site failing between the
        Newton rounds of a model stops the fit either way.
    """

    def __init__(
        self,
        sites: Sequence[TableSite],
        *,
        mode: Mode = "federated",
        source_ids: Sequence[str] | None = None,
        transport: str | Transport = "arrow",
        runner: Runner | None = None,
        catalog: str | None = None,
        definition_hashes: Mapping[str, str] | None = None,
        on_failure: OnFailure = "require_all_sites",
    ) -> None:
        self.sites: tuple[TableSite, ...] = tuple(sites)
        if not self.sites:
            raise FederationError("a federation needs at least one site")
        ids = [s.id for s in self.sites]
        if len(set(ids)) != len(ids):
            raise FederationError(f"duplicate site ids: {ids}")
        self.mode: Mode = mode
        self.source_ids: tuple[str, ...] = tuple(source_ids if source_ids is not None else ids)
        self.transport = transport
        self.runner: Runner = runner if runner is not None else InProcessRunner()
        self.catalog = catalog
        self.definition_hashes: dict[str, str] = dict(definition_hashes or {})
        if on_failure not in ("require_all_sites", "allow_partial"):
            raise FederationError(
                f"on_failure must be 'require_all_sites' or 'allow_partial', not {on_failure!r}"
            )
        self.on_failure: OnFailure = on_failure
        self._status: dict[str, SiteStatus] = {}

    @property
    def remote(self) -> bool:
        """True when the sites' rows stay out of this process (a remote runner)."""
        return bool(getattr(self.runner, "remote", False))

    def __repr__(self) -> str:
        ids = ", ".join(s.id for s in self.sites)
        return f"Federation({self.mode}: {ids})"

    def close(self) -> None:
        """Release what the sites computed and kept (temporary tables, cached rows).

        Remote sites are sent ``forget`` for their tables (a site that does not answer is
        skipped). Call it before closing the catalog whose connections the sites use.
        """
        if self.remote:
            requester = getattr(self.runner, "requester", None) or default_requester()
            requests = {
                s.id: (s, SiteRequest("forget", requester, recipe=s.request_recipe()))
                for s in self.sites
                if s.recipe is not None
            }
            if requests:  # best effort: a site that is gone has nothing left to forget
                with contextlib.suppress(Exception):
                    self.runner.exchange(requests, strict=False)
        for site in self.sites:
            site.release()

    def __enter__(self) -> Federation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _copy(self, sites: Sequence[TableSite], **changes: Any) -> Federation:
        kwargs: dict[str, Any] = {
            "mode": self.mode,
            "source_ids": self.source_ids,
            "transport": self.transport,
            "runner": self.runner,
            "catalog": self.catalog,
            "definition_hashes": self.definition_hashes,
            "on_failure": self.on_failure,
        }
        kwargs.update(changes)
        fed = Federation(sites, **kwargs)
        fed._status = self._status  # one record of the sites' states across derived copies
        return fed

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_tables(
        cls,
        tables: Mapping[str, pd.DataFrame | ir.Table],
        *,
        policy: DisclosurePolicy | Mapping[str, DisclosurePolicy] | None = None,
        transport: str | Transport = "arrow",
        runner: Runner | None = None,
        on_failure: OnFailure = "require_all_sites",
    ) -> Federation:
        """Sites from ``{site id: rows}``; a ``site`` column holding the id is added if missing.

        Parameters
        ----------
        tables
            One table per site (pandas, or lazy ibis tables that stay in their database).
        policy
            One policy for all sites, ``{site id: policy}``, or None for the default policy.
        transport, runner, on_failure
            See :class:`Federation`.

        Examples
        --------
        >>> a = pd.DataFrame({"t": [1, 2, 3], "e": [1, 0, 1]})
        >>> b = pd.DataFrame({"t": [2, 4], "e": [1, 1]})
        >>> fed = Federation.from_tables({"a": a, "b": b}, policy=DisclosurePolicy(
        ...     min_cell_count=1, min_cohort_size=1))
        >>> fed.kaplan_meier(duration="t", event="e").summary["survival"].round(3).tolist()
        [0.8, 0.6, 0.3, 0.0]
        """
        try:
            sites = sites_from_tables(tables, policy)
        except ValueError as exc:
            raise FederationError(str(exc)) from None
        return cls(sites, transport=transport, runner=runner, on_failure=on_failure)

    @classmethod
    def from_cdm(
        cls,
        sites: Catalog | Sequence[CdmSource],
        spec: TimeToEventSpec,
        *,
        transport: str | Transport = "arrow",
        runner: Runner | None = None,
        on_failure: OnFailure = "require_all_sites",
    ) -> Federation:
        """Each site's rows are :func:`~clinnova_explore.analysis.survival.tte.time_to_event`.

        In process the tables are lazy ibis expressions on each site's own database; local
        steps aggregate them there (event tables) or fetch the needed columns at the site
        (models). With a remote runner (``runner.remote``) this process holds no rows and
        opens no connection: each site builds its table from the recipe it is sent.
        """
        from clinnova_explore.analysis.survival.tte import spec_hash

        catalog_path = getattr(sites, "path", None)
        recipe = TableRecipe("time_to_event", spec)
        members = recipe_sites(sites, recipe, remote=bool(getattr(runner, "remote", False)))
        hashes = {**spec.definition_hashes(), "time_to_event": spec_hash(spec)}
        return cls(
            members,
            transport=transport,
            runner=runner,
            catalog=str(catalog_path) if catalog_path is not None else None,
            definition_hashes=hashes,
            on_failure=on_failure,
        )

    @classmethod
    def from_site_tables(
        cls,
        catalog: Catalog | Sequence[CdmSource],
        table: str,
        *,
        transport: str | Transport = "arrow",
        runner: Runner | None = None,
        on_failure: OnFailure = "require_all_sites",
    ) -> Federation:
        """Each site's rows are the table ``table`` of its own database (one row per subject).

        A ``site`` column holding the site id is added when the table has none. With a
        remote runner only the table's name leaves this process; each site opens it itself.
        """
        recipe = TableRecipe("table", table)
        members = recipe_sites(catalog, recipe, remote=bool(getattr(runner, "remote", False)))
        catalog_path = getattr(catalog, "path", None)
        return cls(
            members,
            transport=transport,
            runner=runner,
            catalog=str(catalog_path) if catalog_path is not None else None,
            on_failure=on_failure,
        )

    # ------------------------------------------------------------------ derived federations

    def pooled(self) -> Federation:
        """One site ``"pooled"`` holding every site's rows (strictest policy, same code path).

        The rows are fetched and concatenated in this process (site transforms applied
        first), so this is a check of the federated results on data one may pool.
        """
        if self.mode == "pooled":
            return self
        if self.remote or any(s.remote for s in self.sites):
            raise FederationError(
                "pooled() needs every site's rows in this process, but this federation's rows "
                "stay at the sites (remote runner). Run the federated analysis itself, or "
                "build an in-process federation on data you are allowed to pool"
            )
        frames = [s.frame() for s in self.sites]
        rows = pd.concat(frames, ignore_index=True)
        site = TableSite(POOLED, strictest(s.policy for s in self.sites), rows)
        return self._copy([site], mode="pooled", runner=InProcessRunner())

    def transform(self, fn: Transform, label: str) -> Federation:
        """Apply ``fn`` (DataFrame -> DataFrame) to each site's rows, at the site.

        Parameters
        ----------
        fn
            A site-local derivation, e.g. adding propensity scores or weights.
        label
            What the derivation is (kept with the sites' transforms).
        """
        return self._copy([s.with_transform(fn, label) for s in self.sites])

    @property
    def transforms(self) -> tuple[str, ...]:
        """Labels of the site-local derivations applied so far."""
        return tuple(label for label, _ in self.sites[0].transforms)

    # ------------------------------------------------------------------ rounds

    def collect(self, analysis: SiteAnalysis[SpecT], spec: SpecT) -> list[Payload]:
        """One round of ``analysis`` over the sites; payloads decoded from bytes.

        ``analysis`` follows the contract's :class:`~clinnova_explore.analysis.contract.Analysis`
        with a :class:`TableSite` as its site (see :mod:`~clinnova_explore.federated.steps`).
        One payload per site, in site order; under ``allow_partial`` a site that did not
        answer is a payload refused with :data:`UNAVAILABLE` (its status is kept for the
        provenance).
        """
        contract_analysis = cast("Analysis[SpecT, Any]", analysis)
        result = exchange_round(
            contract_analysis,
            spec,
            self.sites,
            runner=self.runner,
            transport=self.transport,
            on_failure=self.on_failure,
        )
        self._status.update(result.statuses)
        if not result.failed:
            return result.payloads
        got = {p.site: p for p in result.payloads}
        return [
            got.get(s.id) or Payload(analysis.name, s.id, refused=UNAVAILABLE) for s in self.sites
        ]

    def provenance(
        self, analysis: str, rounds: Sequence[Sequence[Payload]], notes: Sequence[str] = ()
    ) -> Provenance:
        """Provenance of a result made from ``rounds`` of payloads (refusals, suppressions)."""
        refused: dict[str, str] = {}
        suppressed: list[str] = []
        status: dict[str, str] = {}
        for payloads in rounds:
            for p in payloads:
                if p.refused == UNAVAILABLE:
                    known = self._status.get(p.site)
                    status[p.site] = str(known) if known is not None else "down"
                    continue
                if p.refused is not None:
                    refused.setdefault(p.site, p.refused)
                    status.setdefault(p.site, f"refused: {p.refused}")
                status.setdefault(p.site, "ok")
                for cell in suppressed_cells(p):
                    if cell not in suppressed:
                        suppressed.append(cell)
        name = self.transport if isinstance(self.transport, str) else self.transport.name
        return Provenance(
            analysis=analysis,
            mode=self.mode,
            sites=self.source_ids,
            definition_hashes=self.definition_hashes,
            suppressed=(*suppressed, *notes),
            refused=refused,
            transport=name,
            catalog=self.catalog,
            site_status=status,
            partial=any(p.refused == UNAVAILABLE for ps in rounds for p in ps),
        )

    # ------------------------------------------------------------------ governance

    def status(self) -> list[SiteInfo | SiteStatus]:
        """Each site's :class:`SiteInfo` (engine, versions, policy, audit state), in site
        order; a site that does not answer is its :class:`SiteStatus` instead."""
        return ask_status(self.runner, self.sites)

    def preview(self, method: str, **kwargs: Any) -> Preview:
        """What each site would release for ``method`` (nothing is released).

        Parameters
        ----------
        method
            ``"kaplan_meier"``, ``"logrank"``, ``"cox"``, ``"logistic"`` or ``"count"``.
        **kwargs
            The method's own arguments. For models the first round (rows, events, levels)
            is previewed; the preview's notes say how many numbers each Newton round
            releases per site.

        Examples
        --------
        >>> fed.preview("kaplan_meier", duration="t", event="e").refusals  # doctest: +SKIP
        {}
        """
        from clinnova_explore.federated.preview import preview_federation

        return preview_federation(self, method, **kwargs)

    # ------------------------------------------------------------------ analyses

    def kaplan_meier(
        self,
        *,
        duration: str,
        event: str,
        group: str | None = None,
        conf_type: Literal["log", "log-log", "plain"] = "log",
        alpha: float = 0.05,
        weights: str | None = None,
    ) -> KaplanMeierResult:
        """Kaplan-Meier curves from the sites' released event tables.

        Parameters are as :func:`~clinnova_explore.analysis.survival.km.kaplan_meier`. Times
        are binned and small cells merged per each site's policy (see
        :mod:`~clinnova_explore.federated.bins`); refused sites are left out and named in
        the result's provenance.
        """
        from clinnova_explore.federated.event_tables import federated_kaplan_meier

        return federated_kaplan_meier(
            self,
            duration=duration,
            event=event,
            group=group,
            conf_type=conf_type,
            alpha=alpha,
            weights=weights,
        )

    def logrank(
        self, *, duration: str, event: str, group: str, strata: str | None = None
    ) -> LogrankResult:
        """(Stratified) log-rank test from the sites' released event tables."""
        from clinnova_explore.federated.event_tables import federated_logrank

        return federated_logrank(self, duration=duration, event=event, group=group, strata=strata)

    def cox(
        self,
        *,
        duration: str,
        event: str,
        covariates: Sequence[str],
        strata: str | Sequence[str] | None = SITE_COLUMN,
        ties: Literal["efron", "breslow"] = "efron",
        weights: str | None = None,
        robust: bool = False,
        cluster: str | None = None,
        tol: float = 1e-12,
        max_iter: int = 50,
        alpha: float = 0.05,
    ) -> CoxResult:
        """Stratified Cox model by federated Newton rounds (see :func:`.models.federated_cox`)."""
        from clinnova_explore.federated.models import federated_cox

        return federated_cox(
            self,
            duration=duration,
            event=event,
            covariates=covariates,
            strata=strata,
            ties=ties,
            weights=weights,
            robust=robust,
            cluster=cluster,
            tol=tol,
            max_iter=max_iter,
            alpha=alpha,
        )

    def logistic(
        self,
        *,
        outcome: str,
        covariates: Sequence[str],
        weights: str | None = None,
        tol: float = 1e-12,
        max_iter: int = 50,
        alpha: float = 0.05,
    ) -> LogisticResult:
        """Logistic regression by federated Newton rounds (see :mod:`.models`)."""
        from clinnova_explore.federated.models import federated_logistic

        return federated_logistic(
            self,
            outcome=outcome,
            covariates=covariates,
            weights=weights,
            tol=tol,
            max_iter=max_iter,
            alpha=alpha,
        )

    def count(self, *, by: str | Sequence[str] = (), event: str | None = None) -> pd.DataFrame:
        """Persons (and events) per site and cell of ``by``, small cells suppressed.

        Parameters
        ----------
        by
            Columns to count by (besides the site).
        event
            Optional 0/1 column whose sum is reported as ``events``.

        Returns
        -------
        pandas.DataFrame
            ``site, *by, persons[, events], suppressed``: one block of rows per answering
            site; counts in ``(0, min_cell_count)`` (and one complementary cell per site)
            are ``<NA>``. ``.attrs["provenance"]`` holds the provenance as a dict.
        """
        from clinnova_explore.federated.event_tables import federated_count

        return federated_count(self, by=by, event=event)
