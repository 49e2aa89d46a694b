"""The site's side of the boundary: the one place where a site answers a request.

A :class:`SiteRuntime` wraps one data source (a catalog :class:`~clinnova_explore.catalog.Site`,
any CDM source, or a :class:`~clinnova_explore.federated.table_site.TableSite`) and answers
:class:`~clinnova_explore.federated.protocol.SiteRequest` objects. Every runner, in process or a
process per site, ends up calling :meth:`SiteRuntime.handle` (or :meth:`SiteRuntime.execute`).

A ``release`` request goes through, in order:

1. the analysis table: built at the site from ``request.recipe`` and kept for later rounds
   (``forget`` drops it), or the source itself;
2. the analysis contract's :func:`~clinnova_explore.analysis.contract.release` (allowed
   analyses, then the local step with the site's own policy);
3. the differencing guard (:mod:`~clinnova_explore.federated.guard`, when the site's policy
   asks for it), unless step 2 already refused: a cohort too close to one released before is
   refused (the computed payload is dropped);
4. the payload schema check (:func:`~clinnova_explore.federated.schemas.validate_payload`);
5. encoding with the requested transport;
6. one entry in the site's audit log (release or refusal), then the guard remembers the cohort.

A ``preview`` request runs steps 1-5, answers a
:class:`~clinnova_explore.federated.protocol.SitePreview` (shapes, suppressed cells, refusal,
size; no numbers) and logs a ``preview`` entry. The policy is always the source's own: nothing
in a request can loosen it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import hashlib
import json
import logging
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from clinnova_explore.analysis.contract import TRANSPORTS, refuse, release, suppressed_cells
from clinnova_explore.analysis.payload import Payload, PayloadError
from clinnova_explore.analysis.result import library_version
from clinnova_explore.federated.audit import AuditLog, policy_version
from clinnova_explore.federated.protocol import (
    SiteInfo,
    SitePreview,
    SiteRequest,
    SiteResponse,
    TableRecipe,
    error_text,
)
from clinnova_explore.federated.table_site import TableSite, recipe_rows

if TYPE_CHECKING:
    from clinnova_explore.catalog import DisclosurePolicy
    from clinnova_explore.cdm.source import CdmSource

__all__ = ["SiteRuntime", "error_text", "request_parameters", "runtime_for", "validate"]

_LOG = logging.getLogger("clinnova_explore.site")


def _jsonable(value: Any) -> Any:
    """A JSON-compatible rendering of request parameters (for the audit's parameter hash)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, BaseModel):
        return _jsonable(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}
        return {"type": type(value).__name__, **{k: _jsonable(v) for k, v in fields.items()}}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, functools.partial):
        return {
            "function": _jsonable(value.func),
            "args": _jsonable(value.args),
            "keywords": _jsonable(value.keywords),
        }
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', value)}"
    if isinstance(value, np.ndarray):  # every byte counts (a repr rounds and elides)
        data = np.ascontiguousarray(value)
        digest = hashlib.sha256(
            data.tobytes() if data.dtype != object else repr(data.tolist()).encode()
        )
        return {"ndarray": str(data.dtype), "shape": list(data.shape), "sha256": digest.hexdigest()}
    if isinstance(value, pd.DataFrame | pd.Series | pd.Index):
        hashed = pd.util.hash_pandas_object(value, index=True).to_numpy()
        names = list(value.columns) if isinstance(value, pd.DataFrame) else [value.name]
        return {
            "pandas": type(value).__name__,
            "names": _jsonable(names),
            "rows": _jsonable(hashed),
        }
    if isinstance(value, np.generic):  # numpy scalars
        return _jsonable(value.item())
    return repr(value)


def request_parameters(request: SiteRequest) -> dict[str, Any]:
    """What the audit log hashes as a request's parameters: analysis, spec and recipe."""
    name = getattr(request.analysis, "name", None)
    return {
        "analysis": name,
        "spec": _jsonable(request.spec),
        "recipe": _jsonable(request.recipe),
    }


def _function_key(fn: Any) -> Any:
    """A transform's identity: its import path, or the object itself for a local function."""
    if isinstance(fn, functools.partial):
        return ("partial", _function_key(fn.func), json.dumps(_jsonable([fn.args, fn.keywords])))
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
    if "<" in name or getattr(fn, "__closure__", None):  # lambdas, closures: by identity
        return ("object", fn)
    return name


def _recipe_key(recipe: TableRecipe) -> Any:
    """A cache key equal for equal recipes, also when they arrive unpickled in new objects.

    Arrays and frames bound into a transform count with every byte, so two models whose
    coefficients differ in the last digit never share a table; a local function (in process
    only) counts by its identity.
    """
    spec = json.dumps(_jsonable(recipe.spec), sort_keys=True)
    steps = tuple((label, _function_key(fn)) for label, fn in recipe.transforms)
    return (recipe.kind, spec, steps)


def _import_guard() -> Any:
    try:
        from clinnova_explore.federated import guard
    except ImportError:
        return None
    return guard


def _import_schemas() -> Any:
    try:
        from clinnova_explore.federated import schemas
    except ImportError:
        return None
    return schemas


def validate(payload: Payload, analysis: Any, policy: DisclosurePolicy | None) -> None:
    """Check a payload against its analysis' declared schema (and ``policy``'s cell rule).

    Uses :func:`clinnova_explore.federated.schemas.validate_payload`; raises its
    ``PayloadError`` naming analysis, site, table and column.
    """
    schemas = _import_schemas()
    if schemas is not None:
        schemas.validate_payload(payload, analysis, policy)


def declared_names(analysis: Any) -> tuple[str, ...]:
    """The analysis names a local step's class may run under (``policy.allowed_analyses``).

    A class's own ``ANALYSIS_NAMES``, else the default of its ``name`` field or attribute; a
    request that renames a step (e.g. a Cox step called ``"cohort"``) must not slip past a
    site that allows only the other name.
    """
    cls = type(analysis)
    names = getattr(cls, "ANALYSIS_NAMES", None)
    if names:
        return tuple(names)
    field_ = getattr(cls, "__dataclass_fields__", {}).get("name")
    if field_ is not None and isinstance(field_.default, str):
        return (field_.default,)
    default = getattr(cls, "name", None)
    return (default,) if isinstance(default, str) else ()


def _check_name(site_id: str, analysis: Any) -> None:
    name, names = getattr(analysis, "name", None), declared_names(analysis)
    if names and name not in names:
        raise PayloadError(
            f"site {site_id!r}: a {type(analysis).__name__} step runs as "
            f"{' or '.join(repr(n) for n in names)}, not {name!r}; the request is refused"
        )


class SiteRuntime:
    """One site answering requests with its own data, policy, audit log and guard.

    Parameters
    ----------
    source
        A catalog ``Site``, any CDM source, or a :class:`TableSite`.
    audit
        The site's audit log (``None``: requests are not logged).
    guard
        The site's differencing guard (``None``: one kept in memory is made when the
        site's policy asks for it and :mod:`~clinnova_explore.federated.guard` is there).
    """

    def __init__(self, source: Any, *, audit: AuditLog | None = None, guard: Any = None) -> None:
        self._source_ref: Callable[[], Any] = lambda: source
        self.id: str = source.id
        self.audit = audit
        self.guard = guard
        self._tables: dict[Any, TableSite] = {}

    def __repr__(self) -> str:
        return f"SiteRuntime({self.id!r}, audit={self.audit!r})"

    @property
    def source(self) -> Any:
        """The data source (raises if it no longer exists)."""
        source = self._source_ref()
        if source is None:
            raise RuntimeError(f"site {self.id!r}: the data source of this runtime was closed")
        return source

    @property
    def policy(self) -> DisclosurePolicy:
        """The site's own disclosure policy (the only one it applies)."""
        policy: DisclosurePolicy = self.source.policy
        return policy

    # ------------------------------------------------------------------ analysis table

    def site_for(self, recipe: TableRecipe | None) -> CdmSource:
        """What a local step runs on: the table built from ``recipe`` (cached) or the source."""
        source = self.source
        if recipe is None or isinstance(source, TableSite):
            site: CdmSource = source
            return site
        key = _recipe_key(recipe)
        if key not in self._tables:
            self._tables[key] = self._build(recipe)
        return self._tables[key]

    def _build(self, recipe: TableRecipe) -> TableSite:
        data = recipe_rows(self.source, recipe)
        return TableSite(self.id, self.policy, data, tuple(recipe.transforms))

    def forget(self, recipe: TableRecipe | None) -> None:
        """Drop the table built for ``recipe`` (every table when ``None``)."""
        if recipe is None:
            tables, self._tables = list(self._tables.values()), {}
        else:
            table = self._tables.pop(_recipe_key(recipe), None)
            tables = [table] if table is not None else []
        for table in tables:
            table.release()

    # ------------------------------------------------------------------ requests

    def handle(self, request: SiteRequest) -> SiteResponse:
        """Answer a request; never raises (a failure is ``ok=False`` with ``error``)."""
        try:
            return self.execute(request)
        except Exception as exc:
            _LOG.warning("site %s: %s request failed", self.id, request.kind, exc_info=exc)
            if request.kind in ("release", "preview") and request.analysis is not None:
                with contextlib.suppress(Exception):  # a broken log must not hide the error
                    self.log_rejection(request, "error", f"{type(exc).__name__}: {exc}")
            return SiteResponse(self.id, request.kind, ok=False, error=error_text(exc))

    def execute(self, request: SiteRequest) -> SiteResponse:
        """Answer a request; raises the original exception when the site fails."""
        if request.kind == "status":
            return SiteResponse(self.id, "status", info=self.status())
        if request.kind == "forget":
            self.forget(request.recipe)
            return SiteResponse(self.id, "forget")
        if request.kind not in ("release", "preview"):
            raise ValueError(f"site {self.id!r}: unknown request kind {request.kind!r}")
        if request.analysis is None:
            raise ValueError(f"site {self.id!r}: a {request.kind} request needs an analysis")
        payload, data, persons = self._payload(request)
        if payload.refused is None and persons is not None and self.guard is not None:
            # a preview counts too: its refusals would otherwise answer membership questions
            self.guard.record(persons)
        if request.kind == "preview":
            self._log(request, payload, kind="preview")
            # the size as Arrow (fixed-width numbers), whichever transport was asked for: a
            # JSON size would tell how many digits the numbers have
            size = (
                len(data)
                if request.transport == "arrow"
                else len(TRANSPORTS["arrow"].encode(payload))
            )
            return SiteResponse(self.id, "preview", preview=site_preview(payload, size))
        self._log(request, payload, kind="release")
        return SiteResponse(self.id, "release", data=data)

    def _payload(self, request: SiteRequest) -> tuple[Payload, bytes, Any]:
        """Steps 1-5 of the module docstring: the payload the site would release, encoded."""
        if request.transport not in TRANSPORTS:
            raise ValueError(
                f"site {self.id!r}: unknown transport {request.transport!r}; "
                f"use one of {', '.join(TRANSPORTS)}"
            )
        analysis, spec = request.analysis, request.spec
        _check_name(self.id, analysis)
        recipe = request.recipe
        shared = self.policy.analysis_tables
        if recipe is not None and recipe.kind == "table" and recipe.spec not in shared:
            payload = refuse(self.id, analysis, "analysis_tables")  # a table it does not share
            return payload, TRANSPORTS[request.transport].encode(payload), None
        site = self.site_for(recipe)
        policy = self.policy
        payload, persons = release(analysis, spec, site), None
        if payload.refused is None:  # a refusal releases nothing: no cohort to compare
            rule, persons = self._guard_check(site, analysis, spec, policy)
            if rule is not None:
                payload, persons = refuse(site, analysis, rule), None
        validate(payload, analysis, policy)
        data = TRANSPORTS[request.transport].encode(payload)
        return payload, data, persons

    def _guard_check(
        self, site: CdmSource, analysis: Any, spec: Any, policy: DisclosurePolicy
    ) -> tuple[str | None, Any]:
        """The rule the differencing guard fires (or None) and the cohort's persons."""
        if not getattr(policy, "differencing_guard", False):
            return None, None
        guard_mod = _import_guard()
        if guard_mod is None:
            return None, None
        if self.guard is None:
            self.guard = guard_mod.DifferencingGuard(self.id, None)
        if isinstance(site, TableSite):  # the same rows every round: computed once per table
            persons = site.cached(
                "guard_persons", lambda: guard_mod.cohort_persons(site, analysis, spec, site)
            )
        else:
            persons = guard_mod.cohort_persons(self.source, analysis, spec, None)
        rule: str | None = self.guard.check(persons, policy)
        return rule, persons

    def _log(self, request: SiteRequest, payload: Payload, *, kind: str) -> None:
        if self.audit is None:
            return
        self.audit.append(
            requester=request.requester,
            analysis=payload.analysis,
            parameters=request_parameters(request),
            policy=self.policy,
            payload=payload,
            kind="preview" if kind == "preview" else "release",
        )

    def log_rejection(self, request: SiteRequest, rule: str, detail: str) -> None:
        """Record a request the site would not run at all (e.g. it carries a derivation that
        is not a site transform) as a refusal naming ``rule``; ``detail`` is hashed with the
        requester's parameters, so the entry says what was asked without storing it."""
        if self.audit is None:
            return
        name = str(getattr(request.analysis, "name", "") or request.kind)
        self.audit.append(
            requester=request.requester,
            analysis=name,
            parameters={"rejected": detail},
            policy=self.policy,
            refused=rule,
            kind="preview" if request.kind == "preview" else "release",
        )

    # ------------------------------------------------------------------ status

    def status(self) -> SiteInfo:
        """Who the site is, what it runs, its policy and the state of its audit log."""
        source = self.source
        engine, version = _engine(source)
        if isinstance(source, TableSite) and source.origin is not None:
            source = source.origin
        policy = self.policy
        audit_path, entries, ok, head = None, 0, True, ""
        if self.audit is not None:
            state = self.audit.verify()
            audit_path, entries, ok, head = (
                str(self.audit.path),
                state.entries,
                state.ok,
                state.head,
            )
        return SiteInfo(
            site=self.id,
            name=str(getattr(source, "name", "") or self.id),
            country=str(getattr(source, "country", "") or ""),
            engine=engine,
            engine_version=version,
            cdm_version=str(getattr(source, "cdm_version", "") or ""),
            library_version=library_version(),
            policy=policy.model_dump(mode="json"),
            policy_version=policy_version(policy),
            audit_path=audit_path,
            audit_entries=entries,
            audit_ok=ok,
            audit_head=head,
        )


def _engine(source: Any) -> tuple[str, str]:
    """The backend's name and version (``pandas`` for rows held in memory)."""
    if isinstance(source, TableSite) and isinstance(source.data, pd.DataFrame):
        return "pandas", pd.__version__
    try:
        con = source.connect()
    except Exception as exc:
        return "unknown", error_text(exc)
    name = str(getattr(con, "name", type(con).__name__))
    try:
        version = str(con.version)
    except Exception:
        version = ""
    return name, version


def site_preview(payload: Payload, nbytes: int) -> SitePreview:
    """What a payload would show the coordinator, without any of its numbers."""
    return SitePreview(
        site=payload.site,
        analysis=payload.analysis,
        refused=payload.refused,
        shapes=dict(payload.shapes()),
        columns={name: tuple(str(c) for c in df.columns) for name, df in payload.tables.items()},
        values=tuple(sorted(payload.values)),
        suppressed=tuple(suppressed_cells(payload, numbers=False)),
        nbytes=nbytes,
    )


# ---------------------------------------------------------------------- registry

_RUNTIMES: dict[int, SiteRuntime] = {}


def _audit_of(source: Any) -> tuple[AuditLog | None, Path | None]:
    """The audit log and guard folder of a catalog site (or of the site a table came from)."""
    holder = source
    if isinstance(source, TableSite) and source.origin is not None:
        holder = source.origin
    path_of = getattr(holder, "audit_path", None)
    if not callable(path_of):
        return None, None
    if getattr(holder, "audit", None) is None and Path(getattr(holder, "base_dir", "")) == Path():
        return None, None  # made in code, not read from a catalog file: no folder of its own
    path = Path(path_of())
    return AuditLog(path, site=source.id), path.with_name(f"{source.id}.guard")


def runtime_for(source: Any) -> SiteRuntime:
    """The process-wide runtime of ``source`` (made on first use, dropped with the source).

    A catalog site (and a table whose ``origin`` is one) gets its audit log at
    ``site.audit_path()`` and a differencing guard kept beside it (folder
    ``<site id>.guard``); other sources (tables in memory, CDM files opened by path, the
    pooled site, a ``Site`` made in code with neither a catalog file nor an ``audit`` path)
    have no audit log and a guard in memory.
    """
    key = id(source)
    runtime = _RUNTIMES.get(key)
    if runtime is not None and runtime._source_ref() is source:  # the same living object
        return runtime
    audit, guard_path = _audit_of(source)
    guard = None
    if guard_path is not None:
        guard_mod = _import_guard()
        if guard_mod is not None:
            guard = guard_mod.DifferencingGuard(source.id, guard_path)
    runtime = SiteRuntime(source, audit=audit, guard=guard)
    try:  # the registry must not keep the source alive: hold it weakly, forget it with it
        runtime._source_ref = weakref.ref(source)
        weakref.finalize(source, _RUNTIMES.pop, key, None)
    except TypeError:
        pass
    _RUNTIMES[key] = runtime
    return runtime
