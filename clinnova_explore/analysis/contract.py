"""The analysis contract: ``local(site, spec) -> Payload`` then ``combine(payloads) -> result``.

:func:`run` drives one analysis over a federation. In federated mode each site's local step
runs against that site's own backend, the site applies its policy, the payload is encoded to
bytes and decoded again on the coordinator's side (a real serialization boundary, JSON or Arrow
IPC), and :meth:`Analysis.combine` sees only the decoded payloads. Pooled mode runs the *same*
local step once on :func:`~clinnova_explore.analysis.pooled.pooled_site` (all sites' rows in
one virtual site) and goes through the same boundary, so both modes share one code path.

The site side is :func:`release` (policy gate + local step), wrapped by the site's runtime
(:mod:`clinnova_explore.federated.runtime`: guard, schema check, audit log); the coordinator
side is :func:`receive` (decode + identity check) inside :func:`read_answers`. A
:class:`Runner` moves :class:`~clinnova_explore.federated.protocol.SiteRequest` objects to the
sites and their answers back (``exchange``): :class:`InProcessRunner` here, a process per
site or an existing network elsewhere, all sharing :func:`exchange_round` (it builds the
requests and reads the answers). Transports, runners and rounds live in
:mod:`~clinnova_explore.analysis.exchange` and are re-exported here. Iterative models run one
round per iteration. A site that does not answer stops the run
(``on_failure="require_all_sites"``) or is left out of a result flagged partial
(``"allow_partial"``). :func:`preview` shows what each site would release; :func:`plan`
captures what a public analysis function would run.

Helpers for writing local steps (:func:`refuse`, :func:`refuse_small_cohort`,
:func:`suppress`) and combine steps (:func:`answered`, :func:`combine_counts`,
:class:`Moments`; defined in :mod:`~clinnova_explore.analysis.combine` and importable from
here) keep the disclosure rules in one place.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import pandas as pd
from pydantic import BaseModel

from clinnova_explore.analysis.combine import Moments, answered, combine_counts, combine_moments
from clinnova_explore.analysis.exchange import (
    ON_FAILURE,
    TRANSPORTS,
    FederationError,
    InProcessRunner,
    OnFailure,
    Requests,
    Round,
    Runner,
    SiteUnavailableError,
    Traffic,
    Transport,
    _transport,
    default_requester,
    exchange_round,
    read_answers,
    receive,
    record_traffic,
    site_requests,
)
from clinnova_explore.analysis.payload import Payload, PayloadError, dtype_tag
from clinnova_explore.analysis.result import Mode, Provenance
from clinnova_explore.disclosure import suppress_counts

if TYPE_CHECKING:
    from clinnova_explore.catalog import Catalog, DisclosurePolicy
    from clinnova_explore.cdm.source import CdmSource
    from clinnova_explore.federated.preview import Preview

__all__ = [
    "ON_FAILURE",
    "TRANSPORTS",
    "Analysis",
    "FederationError",
    "InProcessRunner",
    "Moments",
    "OnFailure",
    "Plan",
    "Requests",
    "Round",
    "Runner",
    "SiteUnavailableError",
    "Traffic",
    "Transport",
    "answered",
    "collect",
    "combine_counts",
    "combine_moments",
    "default_requester",
    "exchange_round",
    "plan",
    "preview",
    "read_answers",
    "receive",
    "record_traffic",
    "refuse",
    "refuse_small_cohort",
    "release",
    "run",
    "site_requests",
    "spec_hashes",
    "suppress",
    "suppressed_cells",
]

SpecT = TypeVar("SpecT", contravariant=True)
ResultT = TypeVar("ResultT", covariant=True)


class Analysis(Protocol[SpecT, ResultT]):
    """An analysis in two pure steps. ``name`` must be in ``policy.allowed_analyses``."""

    @property
    def name(self) -> str:
        """The analysis name sites allow or refuse (e.g. ``"cohort"``)."""
        ...

    def local(self, site: CdmSource, spec: SpecT) -> Payload:
        """Aggregate at one site (ibis pushed down), apply its policy, return a payload."""
        ...

    def combine(self, payloads: Sequence[Payload], spec: SpecT, provenance: Provenance) -> ResultT:
        """Combine decoded payloads (refused ones included) into a result."""
        ...


# ---------------------------------------------------------------------- site and coordinator


def release(analysis: Analysis[SpecT, Any], spec: SpecT, site: CdmSource) -> Payload:
    """The site side: check the policy, run the local step, check what it returns.

    Returns a refused payload (rule ``"allowed_analyses"``) when the site does not allow the
    analysis; other rules (min cell count, min cohort size) are applied by the local step.
    """
    if analysis.name not in site.policy.allowed_analyses:
        return refuse(site, analysis, "allowed_analyses")
    try:
        payload = analysis.local(site, spec)
    except Exception as exc:
        exc.add_note(f"while running analysis {analysis.name!r} at site {site.id!r}")
        raise
    if not isinstance(payload, Payload):
        raise TypeError(
            f"analysis {analysis.name!r} at site {site.id!r}: local() returned "
            f"{type(payload).__name__}, not a Payload"
        )
    if (payload.site, payload.analysis) != (site.id, analysis.name):
        raise PayloadError(
            f"analysis {analysis.name!r} at site {site.id!r}: the payload is labelled site "
            f"{payload.site!r}, analysis {payload.analysis!r}"
        )
    return payload


def collect(
    analysis: Analysis[SpecT, Any],
    spec: SpecT,
    sites: Sequence[CdmSource],
    *,
    transport: str | Transport = "arrow",
    runner: Runner | None = None,
    on_failure: OnFailure = "require_all_sites",
) -> list[Payload]:
    """One round: the decoded payloads of ``sites`` (no combine step, no pooling).

    With ``on_failure="allow_partial"`` sites that did not answer are left out.
    """
    return exchange_round(
        analysis, spec, sites, runner=runner, transport=transport, on_failure=on_failure
    ).payloads


@dataclass(frozen=True)
class Plan:
    """An analysis call captured before it ran: the analysis, its spec and its sites.

    Made by :func:`plan`; :meth:`preview` shows what each site would release for it.
    """

    analysis: Any
    spec: Any
    sites: Any
    mode: str = "federated"

    def preview(self, runner: Runner | None = None) -> Preview:
        """What each site would release for this call (nothing is released)."""
        return preview(self.analysis, self.spec, self.sites, runner=runner)


class _Planned(Exception):
    def __init__(self, plan: Plan) -> None:
        super().__init__("planned")
        self.plan = plan


_PLANNING: contextvars.ContextVar[bool] = contextvars.ContextVar("planning", default=False)


def plan(call: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Plan:
    """Capture the analysis a public function would run, without running it.

    Every CDM analysis function (``count_cohort``, ``characterize``, ``incidence``,
    ``pathways``) builds an :class:`Analysis` and a spec and hands them to :func:`run`;
    ``plan`` calls the function with the same arguments but stops inside :func:`run`.

    Examples
    --------
    >>> from clinnova_explore.analysis import characterize  # doctest: +SKIP
    >>> plan(characterize, cohort, catalog).preview()  # doctest: +SKIP
    """
    token = _PLANNING.set(True)
    try:
        call(*args, **kwargs)
    except _Planned as planned:
        return planned.plan
    finally:
        _PLANNING.reset(token)
    name = getattr(call, "__name__", repr(call))
    raise TypeError(f"{name}() did not run an analysis through clinnova_explore's run()")


def preview(
    analysis: Analysis[SpecT, Any],
    spec: SpecT,
    sites: Catalog | Iterable[CdmSource],
    *,
    runner: Runner | None = None,
    transport: str | Transport = "arrow",
) -> Preview:
    """What each site would release for ``analysis`` and ``spec``, without releasing it.

    Each site runs its local step and policy and answers shapes, column names, the names
    of scalar values, suppressed cells (labels) and refusals; its audit log records a
    ``preview`` entry. A site that does not answer is listed with its status.

    Returns
    -------
    Preview
        ``.sites`` (one :class:`~clinnova_explore.federated.protocol.SitePreview` per site
        that answered), ``.statuses``, ``.summary`` (a DataFrame), ``.refusals``.
    """
    from clinnova_explore.federated.preview import Preview

    site_list = list(sites)
    result = exchange_round(
        analysis,
        spec,
        site_list,
        runner=runner,
        transport=transport,
        kind="preview",
        on_failure="allow_partial",
    )
    return Preview(analysis.name, result.previews, result.statuses)


def run(
    analysis: Analysis[SpecT, ResultT],
    spec: SpecT,
    sites: Catalog | Iterable[CdmSource],
    *,
    mode: Literal["federated", "pooled"] = "federated",
    transport: str | Transport = "arrow",
    runner: Runner | None = None,
    on_failure: OnFailure = "require_all_sites",
) -> ResultT:
    """Run an analysis over sites, federated or pooled, and combine the payloads.

    Parameters
    ----------
    analysis
        An object following :class:`Analysis`.
    spec
        What to compute (a cohort definition, or an analysis-specific spec object).
    sites
        A :class:`~clinnova_explore.catalog.Catalog` or CDM sources (catalog sites,
        DuckDB files opened with ``open_cdm``).
    mode
        ``"federated"``: one payload per site. ``"pooled"``: the same local step once on
        :func:`~clinnova_explore.analysis.pooled.pooled_site` (DuckDB file sites only),
        with the strictest policy of the sites.
    transport
        ``"arrow"`` (Arrow IPC) or ``"json"``, or a :class:`Transport`.
    runner
        Where the site steps run (default :class:`InProcessRunner`). Pooled mode always
        runs in process: the pooled site is a view over local files.
    on_failure
        ``"require_all_sites"`` (default): a site that does not answer stops the run
        (:class:`SiteUnavailableError` naming it; in process its own exception).
        ``"allow_partial"``: the result is combined over the sites that answered and
        flagged ``provenance.partial``.

    Returns
    -------
    The analysis' result object, with :class:`Provenance` (refusals, suppressed cells and
    every site's status gathered from the answers).
    """
    if _PLANNING.get():
        raise _Planned(Plan(analysis, spec, sites, mode))
    catalog_path = getattr(sites, "path", None)
    site_list = list(sites)
    ids = [s.id for s in site_list]
    if not site_list:
        raise ValueError(f"analysis {analysis.name!r}: no sites given")
    if len(set(ids)) != len(ids):
        raise ValueError(f"analysis {analysis.name!r}: duplicate site ids in {ids}")
    codec = _transport(transport)
    if mode == "federated":
        result = exchange_round(
            analysis, spec, site_list, runner=runner, transport=codec, on_failure=on_failure
        )
    elif mode == "pooled":
        from clinnova_explore.analysis.pooled import pooled_site

        with pooled_site(site_list) as pooled:
            result = exchange_round(analysis, spec, [pooled], transport=codec)
    else:
        raise ValueError(f"mode must be 'federated' or 'pooled', not {mode!r}")
    payloads = result.payloads
    used_mode: Mode = mode
    provenance = Provenance(
        analysis=analysis.name,
        mode=used_mode,
        sites=tuple(ids),
        definition_hashes=spec_hashes(spec),
        suppressed=tuple(c for p in payloads for c in suppressed_cells(p)),
        refused={p.site: p.refused for p in payloads if p.refused is not None},
        transport=codec.name,
        catalog=str(catalog_path) if catalog_path is not None else None,
        site_status=result.site_status(),
        partial=bool(result.failed),
    )
    return analysis.combine(payloads, spec, provenance)


def spec_hashes(spec: object) -> dict[str, str]:
    """``{role: definition_hash}`` of the cohort definitions inside a spec.

    A definition itself maps to ``{name: hash}``; a dataclass, pydantic model or mapping spec
    contributes one entry per field or key holding a definition (``"target"``), or a mapping or
    sequence of definitions (``"events.natalizumab"``, ``"outcomes.0"``).
    """
    if hasattr(spec, "definition_hash"):
        return {str(getattr(spec, "name", "cohort")): str(spec.definition_hash)}
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        items: Iterable[tuple[str, object]] = (
            (f.name, getattr(spec, f.name)) for f in dataclasses.fields(spec)
        )
    elif isinstance(spec, BaseModel):
        items = ((name, getattr(spec, name)) for name in type(spec).model_fields)
    elif isinstance(spec, Mapping):
        items = ((str(k), v) for k, v in spec.items())
    else:
        return {}
    out: dict[str, str] = {}
    for role, value in items:
        if hasattr(value, "definition_hash"):
            out[role] = str(value.definition_hash)
            continue
        inner: Iterable[tuple[object, object]] = ()
        if isinstance(value, Mapping):
            inner = value.items()
        elif isinstance(value, list | tuple):
            inner = enumerate(value)
        for key, item in inner:
            if hasattr(item, "definition_hash"):
                out[f"{role}.{key}"] = str(item.definition_hash)
    return out


# ---------------------------------------------------------------------- local-step helpers


def _name(analysis: Analysis[Any, Any] | str) -> str:
    return analysis if isinstance(analysis, str) else analysis.name


def refuse(site: CdmSource | str, analysis: Analysis[Any, Any] | str, rule: str) -> Payload:
    """A payload that carries nothing but the name of the policy rule that fired.

    Examples
    --------
    >>> refuse("basel", "cohort", "min_cohort_size").refused
    'min_cohort_size'
    """
    site_id = site if isinstance(site, str) else site.id
    return Payload(analysis=_name(analysis), site=site_id, refused=rule)


def refuse_small_cohort(
    site: CdmSource,
    analysis: Analysis[Any, Any] | str,
    persons: int,
    *,
    allow_empty: bool = False,
) -> Payload | None:
    """A ``"min_cohort_size"`` refusal if ``persons`` is below the site's minimum, else None.

    With ``allow_empty=True`` an empty cohort (0 persons, which discloses nobody) passes, so
    that a count can say "none here" instead of refusing.
    """
    if persons < site.policy.min_cohort_size and not (allow_empty and persons == 0):
        return refuse(site, analysis, "min_cohort_size")
    return None


def suppress(
    df: pd.DataFrame,
    columns: Sequence[str],
    policy: DisclosurePolicy,
    *,
    group_by: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Apply the policy's minimum cell count to count columns.

    Wraps :func:`~clinnova_explore.disclosure.suppress_counts`: counts in
    ``(0, policy.min_cell_count)`` become ``<NA>`` (nullable ``Int64``) and a boolean
    ``suppressed`` column flags touched rows. ``group_by`` as in ``suppress_counts``
    (``[]``: no complementary suppression; ``None``: the whole table is one group).
    """
    return suppress_counts(df, columns, policy.min_cell_count, group_by=group_by)


def suppressed_cells(payload: Payload, *, numbers: bool = True) -> list[str]:
    """Readable labels of the rows a payload's tables flag in their ``suppressed`` column.

    A row is labelled by its key columns: text columns, and integer columns without a missing
    value anywhere in the table (such as a calendar year; a count column that was blanked has
    one). ``"basel: attrition rule=Aged 18-60"``; a table without such columns is labelled by
    row position when it has more than one row (``"basel: counts"`` otherwise). With
    ``numbers=False`` (a preview, which must not show a number) only text columns label.
    """
    out = []
    for name, df in payload.tables.items():
        if "suppressed" not in df or dtype_tag(df["suppressed"]) not in ("bool", "boolean"):
            continue
        text = [
            c
            for c in df
            if c != "suppressed"
            and (
                dtype_tag(df[c]) in ("object:str", "string[python]", "string[pyarrow]")
                or (
                    numbers
                    and pd.api.types.is_integer_dtype(df[c].dtype)
                    and not df[c].isna().any()
                )
            )
        ]
        for i in df.index[df["suppressed"].fillna(False).astype(bool)]:
            label = ", ".join(f"{c}={df.at[i, c]}" for c in text)
            label = label or ("" if len(df) == 1 else f"row {i}")
            out.append(f"{payload.site}: {name} {label}".rstrip())
    return out
