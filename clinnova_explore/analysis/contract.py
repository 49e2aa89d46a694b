"""The analysis contract: ``local(site, spec) -> Payload`` then ``combine(payloads) -> result``.

:func:`run` drives one analysis over a federation. In federated mode each site's local step
runs against that site's own backend, the site applies its policy, the payload is encoded to
bytes and decoded again on the coordinator's side (a real serialization boundary, JSON or Arrow
IPC), and :meth:`Analysis.combine` sees only the decoded payloads. Pooled mode runs the *same*
local step once on :func:`~clinnova_explore.analysis.pooled.pooled_site` (all sites' rows in
one virtual site) and goes through the same boundary, so both modes share one code path.

The site side is :func:`release` (policy gate + local step), the coordinator side is
:func:`receive` (decode + identity check); a :class:`Runner` moves bytes between the two. The
in-process runner lives here; other runners (a process per site, an existing network) only
need a ``collect`` method. Iterative models call ``runner.collect`` once per round.

Helpers for writing local steps (:func:`refuse`, :func:`refuse_small_cohort`,
:func:`suppress`) and combine steps (:func:`answered`, :func:`combine_counts`,
:class:`Moments`; defined in :mod:`~clinnova_explore.analysis.combine` and importable from
here) keep the disclosure rules in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import pandas as pd
from pydantic import BaseModel

from clinnova_explore.analysis.combine import Moments, answered, combine_counts, combine_moments
from clinnova_explore.analysis.payload import Payload, PayloadError, dtype_tag
from clinnova_explore.analysis.result import Mode, Provenance
from clinnova_explore.disclosure import suppress_counts

if TYPE_CHECKING:
    from clinnova_explore.catalog import Catalog, DisclosurePolicy
    from clinnova_explore.cdm.source import CdmSource

__all__ = [
    "TRANSPORTS",
    "Analysis",
    "InProcessRunner",
    "Moments",
    "Runner",
    "Traffic",
    "Transport",
    "answered",
    "collect",
    "combine_counts",
    "combine_moments",
    "receive",
    "refuse",
    "refuse_small_cohort",
    "release",
    "run",
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


@dataclass(frozen=True)
class Transport:
    """How a payload becomes bytes and back."""

    name: str
    encode: Callable[[Payload], bytes]
    decode: Callable[[bytes], Payload]


TRANSPORTS: dict[str, Transport] = {
    "arrow": Transport("arrow", Payload.to_arrow, Payload.from_arrow),
    "json": Transport("json", Payload.to_json, Payload.from_json),
}


def _transport(transport: str | Transport) -> Transport:
    if isinstance(transport, Transport):
        return transport
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; use one of {', '.join(TRANSPORTS)}")
    return TRANSPORTS[transport]


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


def receive(data: bytes, transport: Transport, *, site: str, analysis: str) -> Payload:
    """The coordinator side: decode bytes and check they came from whom they should."""
    payload = transport.decode(data)
    if (payload.site, payload.analysis) != (site, analysis):
        raise PayloadError(
            f"expected a payload from site {site!r} for analysis {analysis!r}, received one "
            f"labelled site {payload.site!r}, analysis {payload.analysis!r}"
        )
    return payload


@dataclass(frozen=True)
class Traffic:
    """One payload that crossed the boundary: who sent it and how many bytes."""

    site: str
    analysis: str
    transport: str
    nbytes: int


class Runner(Protocol):
    """Moves one round of an analysis to the sites and brings the payloads back."""

    def collect(
        self,
        analysis: Analysis[SpecT, Any],
        spec: SpecT,
        sites: Sequence[CdmSource],
        transport: Transport,
    ) -> list[Payload]:
        """One payload per site, in site order, each decoded from bytes."""
        ...


@dataclass
class InProcessRunner:
    """Runs every site in this process; each payload still crosses as bytes.

    ``traffic`` records every payload sent (site, analysis, transport, bytes).
    """

    traffic: list[Traffic] = field(default_factory=list)

    def collect(
        self,
        analysis: Analysis[SpecT, Any],
        spec: SpecT,
        sites: Sequence[CdmSource],
        transport: Transport,
    ) -> list[Payload]:
        """See :meth:`Runner.collect`."""
        out = []
        for site in sites:
            data = transport.encode(release(analysis, spec, site))
            self.traffic.append(Traffic(site.id, analysis.name, transport.name, len(data)))
            out.append(receive(data, transport, site=site.id, analysis=analysis.name))
        return out


def collect(
    analysis: Analysis[SpecT, Any],
    spec: SpecT,
    sites: Sequence[CdmSource],
    *,
    transport: str | Transport = "arrow",
    runner: Runner | None = None,
) -> list[Payload]:
    """One round: the decoded payloads of ``sites`` (no combine step, no pooling)."""
    return (runner or InProcessRunner()).collect(analysis, spec, sites, _transport(transport))


def run(
    analysis: Analysis[SpecT, ResultT],
    spec: SpecT,
    sites: Catalog | Iterable[CdmSource],
    *,
    mode: Literal["federated", "pooled"] = "federated",
    transport: str | Transport = "arrow",
    runner: Runner | None = None,
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

    Returns
    -------
    The analysis' result object, with :class:`Provenance` (refusals and suppressed cells
    gathered from the payloads).
    """
    catalog_path = getattr(sites, "path", None)
    site_list = list(sites)
    ids = [s.id for s in site_list]
    if not site_list:
        raise ValueError(f"analysis {analysis.name!r}: no sites given")
    if len(set(ids)) != len(ids):
        raise ValueError(f"analysis {analysis.name!r}: duplicate site ids in {ids}")
    codec = _transport(transport)
    if mode == "federated":
        payloads = collect(analysis, spec, site_list, transport=codec, runner=runner)
    elif mode == "pooled":
        from clinnova_explore.analysis.pooled import pooled_site

        with pooled_site(site_list) as pooled:
            payloads = collect(analysis, spec, [pooled], transport=codec)
    else:
        raise ValueError(f"mode must be 'federated' or 'pooled', not {mode!r}")
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


def suppressed_cells(payload: Payload) -> list[str]:
    """Readable labels of the rows a payload's tables flag in their ``suppressed`` column.

    A row is labelled by its key columns: text columns, and integer columns without a missing
    value anywhere in the table (such as a calendar year; a count column that was blanked has
    one). ``"basel: attrition rule=Aged 18-60"``; a table without such columns is labelled by
    row position when it has more than one row (``"basel: counts"`` otherwise).
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
                or (pd.api.types.is_integer_dtype(df[c].dtype) and not df[c].isna().any())
            )
        ]
        for i in df.index[df["suppressed"].fillna(False).astype(bool)]:
            label = ", ".join(f"{c}={df.at[i, c]}" for c in text)
            label = label or ("" if len(df) == 1 else f"row {i}")
            out.append(f"{payload.site}: {name} {label}".rstrip())
    return out
