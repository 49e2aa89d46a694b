"""A site's append-only, hash-chained record of every request and of what left the site.

Each site keeps one JSON Lines file. An entry records when, who asked, which analysis with
which parameters (as a hash), under which policy (as a hash of the policy), and either what was
released (the hash and table shapes of the encoded payload) or the rule that refused it. Every
entry holds the hash of the entry before it and its own hash over its canonical JSON, so
editing, deleting, inserting or reordering entries breaks the chain at the first entry touched;
:meth:`AuditLog.verify` names it. (Cutting entries off the end leaves a shorter valid chain:
compare :attr:`AuditVerification.head` with a copy kept elsewhere to detect that.)

Appends take an exclusive file lock, so several processes of one site can write one log.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clinnova_explore.analysis.payload import Payload
from clinnova_explore.catalog import DisclosurePolicy

__all__ = [
    "GENESIS",
    "AuditError",
    "AuditLog",
    "AuditVerification",
    "parameters_hash",
    "payload_hash",
    "policy_version",
]

GENESIS = "0" * 64
"""The ``prev`` of the first entry."""

_FIELDS = (
    "seq",
    "time",
    "site",
    "requester",
    "analysis",
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
        Number of entries read.
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
    >>> log.verify().ok, entry["seq"]
    (True, 1)
    """

    def __init__(self, path: str | Path, *, site: str) -> None:
        self.path = Path(path)
        self.site = site

    def __repr__(self) -> str:
        return f"AuditLog({self.site!r}, {str(self.path)!r})"

    def _lines(self) -> Iterator[tuple[int, str]]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    yield number, line

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest first (read as is; see :meth:`verify`).

        Raises
        ------
        AuditError
            If a line is not a JSON object (names the file and line).
        """
        out = []
        for number, line in self._lines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AuditError(f"{self.path}:{number}: not a JSON entry ({exc.msg})") from exc
            if not isinstance(entry, dict):
                raise AuditError(f"{self.path}:{number}: not a JSON object")
            out.append(entry)
        return out

    def verify(self) -> AuditVerification:
        """Check every entry's hash and its link to the entry before it."""
        prev, count = GENESIS, 0
        for number, line in self._lines():
            count += 1
            bad = self._check_line(line, prev, count)
            if bad:
                return AuditVerification(False, count, number, bad, prev)
            prev = json.loads(line)["hash"]
        return AuditVerification(True, count, None, "", prev)

    @staticmethod
    def _check_line(line: str, prev: str, seq: int) -> str:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            return "not valid JSON"
        if not isinstance(entry, dict) or set(entry) != {*_FIELDS, "hash"}:
            return "fields missing or added"
        if entry["hash"] != _entry_hash(entry):
            return "contents do not match the entry's hash (edited)"
        if entry["prev"] != prev:
            return "does not follow the entry before it (deleted, inserted or reordered)"
        if entry["seq"] != seq:
            return f"sequence number {entry['seq']} where {seq} was expected"
        return ""

    def append(
        self,
        *,
        requester: str,
        analysis: str,
        parameters: Mapping[str, Any],
        policy: DisclosurePolicy,
        payload: Payload | None = None,
        refused: str | None = None,
        time: datetime | None = None,
    ) -> dict[str, Any]:
        """Add one entry: a released ``payload`` or a refusal (``refused`` = the rule).

        Returns
        -------
        dict
            The entry as written, with its ``hash``.

        Raises
        ------
        AuditError
            If the existing log does not verify (nothing is appended to a broken chain), or
            if neither or both of ``payload`` and ``refused`` are given.
        """
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
        with self.path.open("a+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                state = self.verify()
                if not state.ok:
                    raise AuditError(
                        f"{self.path}: entry on line {state.first_bad} {state.reason}; "
                        "the log is not appended to until it is restored"
                    )
                entry: dict[str, Any] = {
                    "seq": state.entries + 1,
                    "time": (time or datetime.now(UTC)).isoformat(timespec="seconds"),
                    "site": self.site,
                    "requester": requester,
                    "analysis": analysis,
                    "parameters": parameters_hash(parameters),
                    "policy": policy_version(policy),
                    "released": released,
                    "refused": refused,
                    "prev": state.head,
                }
                entry["hash"] = _entry_hash(entry)
                fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
                fh.flush()
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return entry
