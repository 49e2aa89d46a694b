"""The differencing guard: no two released cohorts of a site may differ by a handful of persons.

Small-cell suppression protects each released table on its own, but not a pair of them: count
a cohort, then the same cohort minus one person, and the difference of any two released
numbers describes that one person. A site's :class:`DifferencingGuard` remembers the person
set behind everything it released and refuses (rule ``"differencing"``) a new request whose
cohort differs from a remembered one by 1 to ``min_cell_count - 1`` persons (the size of the
symmetric difference). Identical cohorts pass (the iterations of one model, a re-run), and so
do cohorts far apart. An empty cohort is never compared: the difference between nothing and a
cohort is that cohort, whose own release its analysis governs (``min_cohort_size``).

Person sets never leave the site: they are kept in memory, or in a directory beside the site's
audit log so that a restarted site still remembers (one ``.npy`` file of sorted ``int64`` ids
per released set, named by its size and a fingerprint of its contents).

:func:`cohort_persons` finds the person sets a request touches: for a
:class:`~clinnova_explore.federated.table_site.TableSite` the ``person_id`` (or ``subject_id``)
column of its rows after the site's transforms, or the row positions when there is none; for an
analysis on a site's CDM, the persons of each population cohort in the spec (the definition a
count counts, the target and comparator a Table 1, an incidence, a pathway or a time-to-event
extraction describes), computed in the site's own database. Outcome and event cohorts are
not compared: the guard protects who is described, not (yet) what is counted about them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis.expr.types as ir
import numpy as np
import pandas as pd
from pydantic import BaseModel

if TYPE_CHECKING:
    from clinnova_explore.catalog import DisclosurePolicy
    from clinnova_explore.federated.table_site import TableSite

__all__ = [
    "DIFFERENCING",
    "PERSON_COLUMNS",
    "POPULATION_ROLES",
    "DifferencingGuard",
    "cohort_persons",
    "person_set",
]

DIFFERENCING = "differencing"
"""The rule name a refusal carries."""
PERSON_COLUMNS = ("person_id", "subject_id")
"""Columns of an analysis table that identify its persons (the first one found is used)."""
POPULATION_ROLES = ("target", "comparator", "cohort", "definition")
"""Spec fields holding the cohorts an analysis describes (outcome and event cohorts are what
happens to those persons: they are not compared)."""
_FILE = re.compile(r"^(\d+)-([0-9a-f]{32})\.npy$")


def person_set(ids: Iterable[Any] | np.ndarray | pd.Series) -> np.ndarray:
    """Distinct person ids as a sorted ``int64`` array (non-integer ids are hashed).

    Examples
    --------
    >>> person_set([3, 1, 3, 2]).tolist()
    [1, 2, 3]
    """
    if isinstance(ids, np.ndarray) and ids.dtype.kind in "iub":
        arr = ids.astype(np.int64, copy=False)
        if arr.ndim == 1 and bool((arr[1:] > arr[:-1]).all()):
            return arr  # already sorted and distinct (what cohort_persons returns)
        return _distinct(arr)
    if isinstance(ids, pd.Series):
        values = ids
    else:
        values = pd.Series(ids if isinstance(ids, np.ndarray) else list(ids))
    values = values.dropna()
    kind = values.dtype
    whole = pd.api.types.is_float_dtype(kind) and bool((values % 1 == 0).all())
    if pd.api.types.is_integer_dtype(kind) or pd.api.types.is_bool_dtype(kind) or whole:
        arr = values.to_numpy(dtype=np.int64)
    else:
        arr = pd.util.hash_array(values.astype(str).to_numpy(dtype=object)).view(np.int64)
    return _distinct(arr)


def _distinct(arr: np.ndarray) -> np.ndarray:
    """Sorted distinct values (a sort and a neighbour test; faster than ``np.unique``)."""
    out = np.sort(arr, kind="stable")
    if out.size > 1:
        out = out[np.concatenate(([True], out[1:] != out[:-1]))]
    return out


def _fingerprint(ids: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(ids).tobytes(), digest_size=16).hexdigest()


def _symmetric_difference(a: np.ndarray, b: np.ndarray) -> int:
    """``|a △ b|`` of two sorted arrays of distinct ids."""
    if len(a) > len(b):
        a, b = b, a
    if len(a) == 0:
        return len(b)
    pos = np.searchsorted(b, a)
    pos[pos == len(b)] = len(b) - 1
    common = int(np.count_nonzero(b[pos] == a))
    return len(a) + len(b) - 2 * common


@dataclasses.dataclass
class _Released:
    size: int
    fingerprint: str
    ids: np.ndarray | None  # None: on disk, loaded on demand


class DifferencingGuard:
    """Remembers the person sets a site released and refuses near-duplicates.

    Parameters
    ----------
    site_id
        The site (named in messages).
    path
        A directory for the remembered sets (created when needed; keep it beside the site's
        audit log, never where the coordinator can read it). ``None``: in memory only.

    Examples
    --------
    >>> from clinnova_explore.catalog import DisclosurePolicy
    >>> guard = DifferencingGuard("basel", None)
    >>> everyone = np.arange(100)
    >>> guard.check([everyone], DisclosurePolicy()) is None
    True
    >>> guard.record([everyone])
    >>> guard.check([everyone[1:]], DisclosurePolicy())
    'differencing'
    """

    def __init__(self, site_id: str, path: Path | str | None = None) -> None:
        self.site_id = site_id
        self.path = None if path is None else Path(path)
        self._sets: dict[str, _Released] = {}
        self._scan()

    def _scan(self) -> None:
        """Pick up sets on disk (also those another process of this site recorded)."""
        if self.path is None or not self.path.is_dir():
            return
        for file in sorted(self.path.iterdir()):
            match = _FILE.match(file.name)
            if match and match.group(2) not in self._sets:
                size, fp = int(match.group(1)), match.group(2)
                self._sets[fp] = _Released(size, fp, None)

    def __repr__(self) -> str:
        where = "in memory" if self.path is None else str(self.path)
        return f"DifferencingGuard({self.site_id!r}, {len(self._sets)} released sets, {where})"

    def __len__(self) -> int:
        return len(self._sets)

    def _ids(self, entry: _Released) -> np.ndarray:
        if entry.ids is None:
            assert self.path is not None
            file = self.path / f"{entry.size}-{entry.fingerprint}.npy"
            return np.load(file, mmap_mode="r", allow_pickle=False)
        return entry.ids

    def check(self, persons: list[np.ndarray], policy: DisclosurePolicy) -> str | None:
        """``"differencing"`` when a set differs from a released one (or from another set of
        the same request) by 1 to ``min_cell_count - 1`` persons; else ``None``.

        Parameters
        ----------
        persons
            The person sets of one request (:func:`cohort_persons`).
        policy
            The site's policy (nothing is refused when ``differencing_guard`` is off or
            ``min_cell_count`` is 1).
        """
        k = policy.min_cell_count
        if not policy.differencing_guard or k <= 1:
            return None
        new = [(ids, _fingerprint(ids)) for ids in map(person_set, persons)]
        for i, (ids, fp) in enumerate(new):
            if len(ids) == 0:
                continue
            others = [(self._ids(e), e.fingerprint) for e in self._candidates(len(ids), k)]
            others += [(o, ofp) for o, ofp in new[:i] if abs(len(o) - len(ids)) < k]
            for other, other_fp in others:
                if other_fp == fp or len(other) == 0 or abs(len(other) - len(ids)) >= k:
                    continue
                if 0 < _symmetric_difference(ids, np.asarray(other)) < k:
                    return DIFFERENCING
        return None

    def _candidates(self, size: int, k: int) -> list[_Released]:
        self._scan()
        return [e for e in self._sets.values() if abs(e.size - size) < k]

    def record(self, persons: list[np.ndarray]) -> None:
        """Remember the person sets of a released request (persisted when ``path`` is set)."""
        for p in persons:
            ids = person_set(p)
            fp = _fingerprint(ids)
            if fp in self._sets or len(ids) == 0:
                continue
            if self.path is not None:
                self._save(ids, fp)
                self._sets[fp] = _Released(len(ids), fp, None)
            else:
                self._sets[fp] = _Released(len(ids), fp, ids)

    def _save(self, ids: np.ndarray, fp: str) -> None:
        assert self.path is not None
        self.path.mkdir(parents=True, exist_ok=True)
        final = self.path / f"{len(ids)}-{fp}.npy"
        if final.exists():
            return
        fd, tmp = tempfile.mkstemp(dir=self.path, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, ids, allow_pickle=False)
            os.replace(tmp, final)  # atomic: a crash never leaves half a set
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def forget(self) -> None:
        """Drop every remembered set (and its files): for a site's operator, not the network."""
        if self.path is not None:
            for entry in self._sets.values():
                (self.path / f"{entry.size}-{entry.fingerprint}.npy").unlink(missing_ok=True)
        self._sets.clear()


# ---------------------------------------------------------------------- person sets


def _table_persons(table: TableSite) -> np.ndarray:
    columns = table.columns
    column = next((c for c in PERSON_COLUMNS if c in columns), None)
    data = table.relation()
    if column is None:
        n = table.n_rows()
        return np.arange(n, dtype=np.int64)
    if isinstance(data, ir.Table):
        ids = data.select(column).distinct().to_pandas()[column]
    else:
        ids = data[column]
    return person_set(ids)


def _cohorts(spec: object) -> list[Any]:
    """The population cohorts of a spec: the spec itself when it is a cohort definition (or
    cohort table), else its :data:`POPULATION_ROLES` fields."""
    if hasattr(spec, "definition_hash"):
        return [spec]
    definitions = getattr(spec, "definitions", None)
    if callable(definitions):  # e.g. a TimeToEventSpec: shipped cohort names resolved
        found = definitions()
        if isinstance(found, Mapping):
            return [found[r] for r in POPULATION_ROLES if r in found]
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        names = [f.name for f in dataclasses.fields(spec)]
    elif isinstance(spec, BaseModel):
        names = list(type(spec).model_fields)
    elif isinstance(spec, Mapping):
        return [spec[r] for r in POPULATION_ROLES if hasattr(spec.get(r), "definition_hash")]
    else:
        return []
    values = [getattr(spec, r) for r in POPULATION_ROLES if r in names]
    return [v for v in values if hasattr(v, "definition_hash")]


def _cdm_persons(source: Any, ref: Any) -> np.ndarray | None:
    from clinnova_explore.analysis.cohort_tables import CohortTable, resolve_cohort
    from clinnova_explore.cohort import CohortDefinition

    if not isinstance(ref, CohortDefinition | CohortTable):
        return None
    cohort = resolve_cohort(ref, source)
    ids = cohort.select("subject_id").distinct().to_pandas()["subject_id"]
    return person_set(ids)


def cohort_persons(
    source: Any, analysis: Any, spec: object, table: TableSite | None
) -> list[np.ndarray]:
    """The person sets a request releases aggregates of, computed at the site.

    Parameters
    ----------
    source
        The site (a catalog ``Site``, any CDM source, or a ``TableSite``).
    analysis
        The analysis object (unused today: every analysis is guarded by its cohorts).
    spec
        The analysis spec; on a CDM, each population cohort in it (the spec itself when it is
        a cohort definition or cohort table, else its ``target``, ``comparator``, ``cohort``
        or ``definition``) contributes its persons.
    table
        The analysis table the request runs on, if any (its rows after the site's
        transforms); it takes precedence over the spec.

    Returns
    -------
    list of numpy.ndarray
        Sorted distinct ``int64`` person ids, one array per cohort (empty list: nothing
        person-level to guard).
    """
    del analysis
    from clinnova_explore.federated.table_site import TableSite

    if table is None and isinstance(source, TableSite):
        table = source
    if table is not None:
        return [_table_persons(table)]
    out = []
    for ref in _cohorts(spec):
        ids = _cdm_persons(source, ref)
        if ids is not None:
            out.append(ids)
    return out
