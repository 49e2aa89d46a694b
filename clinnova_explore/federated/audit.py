"""A site's append-only, hash-chained record of every request and of what left the site.

Each site keeps one JSON Lines file. An entry records when, who asked, which analysis with
which parameters (as a hash), under which policy (as a hash of the policy), whether it was a
release or a preview (what *would* have left), and either what was released (the hash and table
shapes of the encoded payload) or the rule that refused it. Every entry holds the hash of the
entry before it and its own hash over its canonical JSON, so editing, deleting, inserting or
reordering entries breaks the chain at the first entry touched; :meth:`AuditLog.verify` names
it. (Cutting entries off the end leaves a shorter valid chain: compare
:attr:`AuditVerification.head` with a copy kept elsewhere to detect that.)

Appends take an exclusive file lock, so several processes of one site can write one log. An
:class:`AuditLog` verifies the whole file on its first append, then only what other processes
appended since (it remembers where the verified part ends and its last hash); a file that
shrank, or whose remembered last entry changed, is verified in full again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import pandas as pd

from clinnova_explore.analysis.payload import Payload
from clinnova_explore.catalog import DisclosurePolicy

__all__ = [
    "GENESIS",
    "AuditError",
    "AuditLog",
    "AuditVerification",
    "EntryKind",
    "describe_entry",
    "entries_frame",
    "parameters_hash",
    "payload_hash",
    "policy_version",
]

GENESIS = "0" * 64
"""The ``prev`` of the first entry."""

EntryKind = Literal["release", "preview"]

_FIELDS = (
    "seq",
    "time",
    "site",
    "requester",
    "analysis",
    "kind",
    "parameters",
    "policy",
    "released",
    "refused",
    "prev",
)


class AuditError(ValueError):
    """An audit log that cannot be read or appended to."""


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parameters_hash(parameters: Mapping[str, Any]) -> str:
    """SHA-256 of the request parameters as canonical JSON (keys sorted).

    The log keeps only this hash: the parameters may name cohorts or concepts a site does not
    want spelled out in a file that auditors read, yet a request can be matched to its entry.
    """
    return _sha256(_canonical(dict(parameters)))


def policy_version(policy: DisclosurePolicy) -> str:
    """A short hash of the policy in force (changes whenever any rule changes)."""
    return _sha256(_canonical(policy.model_dump(mode="json")))[:16]


def payload_hash(payload: Payload) -> str:
    """SHA-256 of the payload's exact JSON encoding (what the coordinator can be shown)."""
    return _sha256(payload.to_json())


def _entry_hash(entry: Mapping[str, Any]) -> str:
    return _sha256(_canonical({k: entry[k] for k in _FIELDS}))


@dataclass(frozen=True)
class AuditVerification:
    """The result of :meth:`AuditLog.verify`.

    Parameters
    ----------
    ok
        Whether every entry is intact and chained to the one before.
    entries
        Number of entries read (up to and including the first bad one).
    first_bad
        Line number (1-based) of the first entry that is not, else ``None``.
    reason
        What is wrong with it.
    head
        Hash of the last intact entry (:data:`GENESIS` for an empty log).
    """

    ok: bool
    entries: int
    first_bad: int | None
    reason: str
    head: str


@dataclass(frozen=True)
class _Mark:
    """Where the verified part of the file ends: byte offset, entries, lines, last hash."""

    offset: int
    entries: int
    lines: int
    head: str
    last_start: int | None  # byte offset of the last entry's line (None: no entry yet)


_START = _Mark(0, 0, 0, GENESIS, None)


def _check_line(line: bytes, prev: str, seq: int) -> tuple[str, str]:
    """``(reason, hash)``: why a line is not the next entry of the chain ("" if it is)."""
    if not line.endswith(b"\n"):
        return "is incomplete (no line end)", ""
    try:
        entry = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "not valid JSON", ""
    if not isinstance(entry, dict) or set(entry) != {*_FIELDS, "hash"}:
        return "fields missing or added", ""
    if entry["hash"] != _entry_hash(entry):
        return "contents do not match the entry's hash (edited)", ""
    if entry["prev"] != prev:
        return "does not follow the entry before it (deleted, inserted or reordered)", ""
    if entry["seq"] != seq:
        return f"sequence number {entry['seq']} where {seq} was expected", ""
    return "", str(entry["hash"])


def _scan(fh: IO[bytes], mark: _Mark) -> tuple[AuditVerification, _Mark]:
    """Verify the lines after ``mark``; the verification and the new mark (if intact)."""
    fh.seek(mark.offset)
    offset, count, lines, head = mark.offset, mark.entries, mark.lines, mark.head
    last = mark.last_start
    for raw in fh:
        lines += 1
        if raw.strip():
            count += 1
            reason, digest = _check_line(raw, head, count)
            if reason:
                return AuditVerification(False, count, lines, reason, head), mark
            head, last = digest, offset
        offset += len(raw)
    return AuditVerification(True, count, None, "", head), _Mark(offset, count, lines, head, last)


def _mark_holds(fh: IO[bytes], mark: _Mark, size: int) -> bool:
    """Whether the file still holds, where ``mark`` says, the entry it remembers last."""
    if size < mark.offset:
        return False
    if mark.last_start is None:
        return mark.offset == 0
    fh.seek(mark.last_start)
    line = fh.read(mark.offset - mark.last_start)
    if not line.endswith(b"\n"):
        return False
    try:
        entry = json.loads(line.decode("utf-8"))
        return bool(entry["hash"] == mark.head == _entry_hash(entry))
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError):
        return False


def describe_entry(entry: Mapping[str, Any]) -> str:
    """What an entry says left the site, in words: table shapes and value names, or the rule.

    Examples
    --------
    >>> describe_entry({"released": {"shapes": {"events": [12, 3]}, "values": ["n"]}})
    'events 12x3; values: n'
    >>> describe_entry({"released": None, "refused": "min_cohort_size"})
    'refused: min_cohort_size'
    """
    released = entry.get("released")
    if not isinstance(released, Mapping):
        return f"refused: {entry.get('refused')}"
    shapes = released.get("shapes") or {}
    parts = [f"{name} {'x'.join(str(n) for n in shape)}" for name, shape in shapes.items()]
    values = released.get("values") or []
    if values:
        parts.append("values: " + ", ".join(str(v) for v in values))
    return "; ".join(parts) or "nothing"


def entries_frame(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """Entries as a table for people: seq, time, requester, analysis, kind, released.

    ``released`` is :func:`describe_entry` (shapes and value names, or the refusal).
    """
    columns = ["seq", "time", "requester", "analysis", "kind", "released"]
    rows = [[*(e.get(c) for c in columns[:-1]), describe_entry(e)] for e in entries]
    return pd.DataFrame(rows, columns=columns)


class AuditLog:
    """The audit log of one site, a JSON Lines file.

    Parameters
    ----------
    path
        The log file (created with its folder on the first append).
    site
        The site id written into each entry.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> log = AuditLog(pathlib.Path(tempfile.mkdtemp()) / "basel.jsonl", site="basel")
    >>> entry = log.append(requester="ana", analysis="cohort", parameters={"id": 1},
    ...                    policy=DisclosurePolicy(), refused="min_cohort_size")
    >>> log.verify().ok, entry["seq"], entry["kind"]
    (True, 1, 'release')
    """

    def __init__(self, path: str | Path, *, site: str) -> None:
        self.path = Path(path)
        self.site = site
        self._mark: _Mark | None = None

    def __repr__(self) -> str:
        return f"AuditLog({self.site!r}, {str(self.path)!r})"

    def _lines(self) -> Iterator[tuple[int, str]]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    yield number, line

    @staticmethod
    def _parse(path: Path, number: int, line: str) -> dict[str, Any]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AuditError(f"{path}:{number}: not a JSON entry ({exc.msg})") from exc
        if not isinstance(entry, dict):
            raise AuditError(f"{path}:{number}: not a JSON object")
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest first (read as is; see :meth:`verify`).

        Raises
        ------
        AuditError
            If a line is not a JSON object (names the file and line).
        """
        return [self._parse(self.path, number, line) for number, line in self._lines()]

    def tail(self, n: int) -> list[dict[str, Any]]:
        """The last ``n`` entries, oldest first (read as is; only those ``n`` are parsed).

        Raises
        ------
        AuditError
            If one of those lines is not a JSON object (names the file and line).
        """
        if n <= 0:
            return []
        last = deque(self._lines(), maxlen=n)
        return [self._parse(self.path, number, line) for number, line in last]

    def verify(self) -> AuditVerification:
        """Check every entry's hash and its link to the entry before it.

        Reads under a shared lock (never a half-written entry). The result also tells later
        appends of this object how far the log is known to be intact; a broken log makes them
        verify in full again (and refuse).
        """
        if not self.path.exists():
            self._mark = _START
            return AuditVerification(True, 0, None, "", GENESIS)
        with self.path.open("rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_SH)
            try:
                check, mark = _scan(fh, _START)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        self._mark = mark if check.ok else None
        return check

    def _verified(self, fh: IO[bytes]) -> _Mark:
        """The intact chain up to the end of the (locked) file; raises if it is broken."""
        mark = self._mark
        if mark is None or not _mark_holds(fh, mark, os.fstat(fh.fileno()).st_size):
            mark = _START
        check, mark = _scan(fh, mark)
        if not check.ok:
            self._mark = None
            raise AuditError(
                f"{self.path}: entry {check.entries} on line {check.first_bad} {check.reason}; "
                "the log is not appended to until it is restored"
            )
        return mark

    def append(
        self,
        *,
        requester: str,
        analysis: str,
        parameters: Mapping[str, Any],
        policy: DisclosurePolicy,
        payload: Payload | None = None,
        refused: str | None = None,
        kind: EntryKind = "release",
        time: datetime | None = None,
    ) -> dict[str, Any]:
        """Add one entry: a released ``payload`` or a refusal (``refused`` = the rule).

        Parameters
        ----------
        kind
            ``"release"``: the payload left the site (or the refusal was sent).
            ``"preview"``: nothing left; the entry records what *would* have been released
            (its hash and shapes) or the refusal.

        Returns
        -------
        dict
            The entry as written, with its ``hash``.

        Raises
        ------
        AuditError
            If the log does not verify (nothing is appended to a broken chain), or if neither
            or both of ``payload`` and ``refused`` are given.
        """
        if kind not in ("release", "preview"):
            raise AuditError(f"audit entry kind must be 'release' or 'preview', not {kind!r}")
        if payload is not None and payload.refused is not None:
            refused, payload = payload.refused, None
        if (payload is None) == (refused is None):
            raise AuditError("an audit entry records either a released payload or a refusal")
        released = None
        if payload is not None:
            released = {
                "payload": payload_hash(payload),
                "shapes": {name: list(shape) for name, shape in payload.shapes().items()},
                "values": sorted(payload.values),
            }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                mark = self._verified(fh)
                entry: dict[str, Any] = {
                    "seq": mark.entries + 1,
                    "time": (time or datetime.now(UTC)).isoformat(timespec="seconds"),
                    "site": self.site,
                    "requester": requester,
                    "analysis": analysis,
                    "kind": kind,
                    "parameters": parameters_hash(parameters),
                    "policy": policy_version(policy),
                    "released": released,
                    "refused": refused,
                    "prev": mark.head,
                }
                entry["hash"] = _entry_hash(entry)
                line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
                fh.write(line)
                fh.flush()
                self._mark = _Mark(
                    mark.offset + len(line),
                    mark.entries + 1,
                    mark.lines + 1,
                    entry["hash"],
                    mark.offset,
                )
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return entry
