"""The site audit log: append-only, hash-chained, tampering named at the first entry touched."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest

from clinnova_explore.analysis.payload import Payload
from clinnova_explore.catalog import DisclosurePolicy
from clinnova_explore.federated.audit import (
    GENESIS,
    AuditError,
    AuditLog,
    parameters_hash,
    payload_hash,
    policy_version,
)

POLICY = DisclosurePolicy()


def _payload(n: int = 3) -> Payload:
    table = pd.DataFrame({"time": [1.0, 2.0, 3.0][:n], "n_events": [5, 6, 7][:n]})
    return Payload(site="basel", analysis="survival", tables={"events": table}, values={"n": 18})


def _filled(tmp_path: Path, n: int = 5) -> AuditLog:
    log = AuditLog(tmp_path / "audit" / "basel.jsonl", site="basel")
    for i in range(n):
        if i % 2:
            log.append(
                requester="ana", analysis="cox", parameters={"i": i}, policy=POLICY, refused="x"
            )
        else:
            log.append(
                requester="ana",
                analysis="survival",
                parameters={"i": i},
                policy=POLICY,
                payload=_payload(),
            )
    return log


def _rewrite(log: AuditLog, lines: list[str]) -> None:
    log.path.write_text("".join(lines), encoding="utf-8")


def test_entries_chain_and_record_what_left(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    entries = log.entries()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0]["prev"] == GENESIS
    for before, after in pairwise(entries):
        assert after["prev"] == before["hash"]
    # the hash is SHA-256 over the entry's canonical JSON, recomputed here independently
    body = {k: v for k, v in entries[2].items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert entries[2]["hash"] == hashlib.sha256(canonical.encode()).hexdigest()
    released = entries[0]["released"]
    assert released == {
        "payload": hashlib.sha256(_payload().to_json()).hexdigest(),
        "shapes": {"events": [3, 2]},
        "values": ["n"],
    }
    assert entries[1]["released"] is None and entries[1]["refused"] == "x"
    assert entries[0]["parameters"] == parameters_hash({"i": 0}) != parameters_hash({"i": 1})
    check = log.verify()
    assert check.ok and check.entries == 5 and check.first_bad is None
    assert check.head == entries[-1]["hash"]


def test_a_refused_payload_is_logged_as_a_refusal(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl", site="basel")
    refused = Payload(site="basel", analysis="cox", refused="max_params_per_obs")
    entry = log.append(requester="r", analysis="cox", parameters={}, policy=POLICY, payload=refused)
    assert entry["refused"] == "max_params_per_obs" and entry["released"] is None
    with pytest.raises(AuditError, match="either a released payload or a refusal"):
        log.append(requester="r", analysis="cox", parameters={}, policy=POLICY)


@pytest.mark.parametrize(
    ("tamper", "line", "reason"),
    [
        ("edit", 3, "edited"),
        ("delete", 3, "deleted, inserted or reordered"),
        ("swap", 2, "deleted, inserted or reordered"),
        ("insert", 4, "deleted, inserted or reordered"),
        ("garble", 5, "not valid JSON"),
    ],
)
def test_tampering_is_found_at_the_first_entry_touched(
    tmp_path: Path, tamper: str, line: int, reason: str
) -> None:
    log = _filled(tmp_path)
    lines = log.path.read_text(encoding="utf-8").splitlines(keepends=True)
    if tamper == "edit":
        entry = json.loads(lines[2])
        entry["requester"] = "mallory"
        lines[2] = json.dumps(entry) + "\n"
    elif tamper == "delete":
        del lines[2]
    elif tamper == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    elif tamper == "insert":
        lines.insert(3, lines[1])
    else:
        lines[4] = lines[4][:20] + "\n"
    _rewrite(log, lines)
    check = log.verify()
    assert not check.ok and check.first_bad == line and reason in check.reason
    # nothing is appended to a broken chain
    with pytest.raises(AuditError, match=f"line {line}"):
        log.append(requester="r", analysis="cox", parameters={}, policy=POLICY, refused="x")


def test_an_edit_that_also_rehashes_is_caught_by_the_next_entry(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    lines = log.path.read_text(encoding="utf-8").splitlines(keepends=True)
    entry = json.loads(lines[1])
    entry["refused"] = None
    body = {k: v for k, v in entry.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    entry["hash"] = hashlib.sha256(canonical.encode()).hexdigest()
    lines[1] = json.dumps(entry) + "\n"
    _rewrite(log, lines)
    check = log.verify()
    assert not check.ok and check.first_bad == 3


def test_policy_version_follows_the_policy() -> None:
    assert policy_version(POLICY) == policy_version(DisclosurePolicy())
    assert policy_version(POLICY) != policy_version(DisclosurePolicy(min_cell_count=3))
    assert payload_hash(_payload(3)) != payload_hash(_payload(2))


def test_time_is_recorded_in_utc(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl", site="basel")
    when = datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC)
    entry = log.append(
        requester="r", analysis="cox", parameters={}, policy=POLICY, refused="x", time=when
    )
    assert entry["time"] == "2026-11-28T12:00:05+00:00"


def test_concurrent_writers_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    code = (
        "import sys\n"
        "from clinnova_explore.catalog import DisclosurePolicy\n"
        "from clinnova_explore.federated.audit import AuditLog\n"
        "log = AuditLog(sys.argv[1], site='basel')\n"
        "for i in range(40):\n"
        "    log.append(requester=sys.argv[2], analysis='cox', parameters={'i': i},\n"
        "               policy=DisclosurePolicy(), refused='x')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), who]) for who in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    log = AuditLog(path, site="basel")
    check = log.verify()
    assert check.ok and check.entries == 80
    assert sorted(e["requester"] for e in log.entries()) == ["a"] * 40 + ["b"] * 40


def test_unreadable_line_names_file_and_line(tmp_path: Path) -> None:
    log = _filled(tmp_path, 2)
    with log.path.open("a", encoding="utf-8") as fh:
        fh.write("{oops\n")
    with pytest.raises(AuditError, match=r"basel\.jsonl:3: not a JSON entry"):
        log.entries()


def test_a_preview_records_what_would_leave(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl", site="basel")
    entry = log.append(
        requester="r",
        analysis="survival",
        parameters={},
        policy=POLICY,
        payload=_payload(2),
        kind="preview",
    )
    refusal = log.append(
        requester="r", analysis="cox", parameters={}, policy=POLICY, refused="x", kind="preview"
    )
    assert entry["kind"] == "preview" and entry["released"]["shapes"] == {"events": [2, 2]}
    assert refusal["kind"] == "preview" and refusal["refused"] == "x"
    assert [e["kind"] for e in log.entries()] == ["preview", "preview"]
    assert log.verify().ok
    with pytest.raises(AuditError, match="'release' or 'preview'"):
        log.append(
            requester="r",
            analysis="cox",
            parameters={},
            policy=POLICY,
            refused="x",
            kind="sent",  # type: ignore[arg-type]
        )


def test_tail_gives_the_last_entries_oldest_first(tmp_path: Path) -> None:
    log = _filled(tmp_path, 5)
    assert [e["seq"] for e in log.tail(2)] == [4, 5]
    assert [e["seq"] for e in log.tail(50)] == [1, 2, 3, 4, 5]
    assert log.tail(0) == []
    assert AuditLog(tmp_path / "none.jsonl", site="basel").tail(3) == []


def _refusal(log: AuditLog, who: str = "ana") -> dict[str, object]:
    return log.append(requester=who, analysis="cox", parameters={}, policy=POLICY, refused="x")


def test_appends_verify_only_what_others_appended(tmp_path: Path) -> None:
    ours = _filled(tmp_path, 3)
    theirs = AuditLog(ours.path, site="basel")
    _refusal(theirs, "bob")
    _refusal(theirs, "bob")
    # our next append checks the two entries written by another writer and chains onto them
    assert _refusal(ours)["seq"] == 6
    assert ours.verify().ok and ours.verify().entries == 6
    # an edit of the same length before what we verified is not re-read by an append ...
    lines = ours.path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = lines[1].replace('"ana"', '"eve"')
    _rewrite(ours, lines)
    fresh = AuditLog(ours.path, site="basel")
    _refusal(ours)
    assert [e["seq"] for e in ours.tail(1)] == [7]
    # ... but verify() reads everything, and after it no append goes through
    check = ours.verify()
    assert not check.ok and check.first_bad == 2 and "edited" in check.reason
    with pytest.raises(AuditError, match="line 2 contents do not match"):
        _refusal(ours)
    # a log object that never verified this file checks it in full on its first append
    with pytest.raises(AuditError, match="line 2"):
        _refusal(fresh)
    assert len(ours.entries()) == 7


def test_appends_after_a_foreign_bad_line_or_a_shrunk_log_are_refused(tmp_path: Path) -> None:
    log = _filled(tmp_path, 4)
    with log.path.open("a", encoding="utf-8") as fh:
        fh.write("\n{oops\n")
    # line numbers continue from where this object's verification stopped (line 5 is blank)
    with pytest.raises(AuditError, match="entry 5 on line 6 not valid JSON"):
        _refusal(log)
    other = _filled(tmp_path / "b", 5)
    other_lines = other.path.read_text(encoding="utf-8").splitlines(keepends=True)
    del other_lines[2]
    _rewrite(other, other_lines)  # shorter than what this object verified: verify in full
    with pytest.raises(AuditError, match="line 3 does not follow"):
        _refusal(other)


def test_a_replaced_log_is_verified_in_full_before_an_append(tmp_path: Path) -> None:
    log = _filled(tmp_path, 3)
    other = AuditLog(tmp_path / "other.jsonl", site="basel")
    for who in "abcde":
        _refusal(other, who)
    # a longer, different but intact chain now sits where the verified one was
    log.path.write_bytes(other.path.read_bytes())
    entry = _refusal(log)
    assert entry["seq"] == 6 and entry["prev"] == other.tail(1)[0]["hash"]
    assert log.verify().ok
