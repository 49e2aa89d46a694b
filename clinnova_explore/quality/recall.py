"""Compare what harmonization and the quality checks caught with the synthetic ground truth.

The generator lists every injected fault in ``truth.json`` as ``{site, file, line, table,
kind, catcher, detail}``. The catcher is ``quality:<check id prefix>`` for faults that load
into the CDM (``quality:unmapped_code``) and ``<stage>:<reason>`` for faults harmonization
quarantines (``quarantine:duplicate``). A fault counts as found when that catcher reports the
same site, file and line: the quarantine with that reason, or a violation of a check whose id
starts with the prefix, traced to the line through ``source_provenance``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

import pandas as pd

from clinnova_explore.quality.report import QualityReport

__all__ = ["QUALITY_CATCHERS", "recall_against_truth", "truth_faults", "unexplained_violations"]

#: The check-id prefixes of the faults the quality checks are expected to catch.
QUALITY_CATCHERS: tuple[str, ...] = (
    "unmapped_code",
    "implausible_value",
    "date_out_of_range",
    "end_before_start",
)

RECALL_COLUMNS = [
    "site",
    "file",
    "line",
    "table",
    "kind",
    "catcher",
    "found",
    "where_found",
    "elsewhere",
]

Key = tuple[str, str, int]


def _file(name: object) -> str:
    """Compare files by name: truth and provenance may differ in directory prefixes."""
    return PurePath(str(name).replace("\\", "/")).name


def truth_faults(truth: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The fault list of a ``truth.json`` document.

    Parameters
    ----------
    truth
        The parsed document (with a ``faults`` list) or the list itself.

    Returns
    -------
    list of dict
        A copy of each fault.

    Raises
    ------
    KeyError
        When a document has no ``faults`` list.
    """
    if isinstance(truth, Mapping):
        if "faults" not in truth:
            raise KeyError("truth document has no `faults` list; expected synth's truth.json")
        return [dict(f) for f in truth["faults"]]
    return [dict(f) for f in truth]


def _split_catcher(catcher: str) -> tuple[str, str]:
    stage, _, key = str(catcher).partition(":")
    return (stage, key) if key else ("quarantine", stage)


def _violation_index(reports: Mapping[str, QualityReport]) -> dict[Key, set[str]]:
    index: dict[Key, set[str]] = defaultdict(set)
    for site, report in reports.items():
        v = report.violations.dropna(subset=["source_file", "source_line"])
        for check_id, f, line in zip(
            v["check_id"], v["source_file"], v["source_line"], strict=True
        ):
            index[(site, _file(f), int(line))].add(str(check_id))
    return index


def _quarantine_index(quarantine: pd.DataFrame) -> dict[Key, set[str]]:
    index: dict[Key, set[str]] = defaultdict(set)
    if quarantine is None or quarantine.empty:
        return index
    q = quarantine.dropna(subset=["source_line"])
    for site, f, line, reason in zip(
        q["site"], q["source_file"], q["source_line"], q["reason"], strict=True
    ):
        index[(str(site), _file(f), int(line))].add(str(reason))
    return index


def recall_against_truth(
    reports: Mapping[str, QualityReport],
    quarantine: pd.DataFrame,
    truth: Mapping[str, Any] | Iterable[Mapping[str, Any]],
) -> pd.DataFrame:
    """For every injected fault: was it caught by its expected catcher, and where.

    Parameters
    ----------
    reports
        Site id -> :class:`QualityReport` (with violations traced to source lines).
    quarantine
        Harmonization's quarantine rows of all sites (``site, source_file, source_line,
        reason, ...``).
    truth
        The ``truth.json`` document (or its ``faults`` list).

    Returns
    -------
    pandas.DataFrame
        One row per fault: ``site, file, line, table, kind, catcher, found, where_found``
        (``quarantine:<reason>`` or ``quality:<check_id>``) and ``elsewhere`` (what else
        flagged that line, for diagnosing a miss).
    """
    viol = _violation_index(reports)
    quar = _quarantine_index(quarantine)
    rows = []
    for f in truth_faults(truth):
        key = (str(f["site"]), _file(f["file"]), int(f["line"]))
        stage, name = _split_catcher(f["catcher"])
        checks, reasons = sorted(viol.get(key, ())), sorted(quar.get(key, ()))
        if stage == "quality":
            hits = [f"quality:{c}" for c in checks if c.startswith(name)]
        else:
            hits = [f"quarantine:{r}" for r in reasons if r == name]
        others = [f"quality:{c}" for c in checks] + [f"quarantine:{r}" for r in reasons]
        rows.append(
            {
                "site": key[0],
                "file": f["file"],
                "line": key[2],
                "table": f.get("table"),
                "kind": f.get("kind"),
                "catcher": f["catcher"],
                "found": bool(hits),
                "where_found": hits[0] if hits else None,
                "elsewhere": ", ".join(o for o in others if o not in hits) or None,
            }
        )
    return pd.DataFrame(rows, columns=RECALL_COLUMNS)


def unexplained_violations(
    reports: Mapping[str, QualityReport],
    truth: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    prefixes: tuple[str, ...] = QUALITY_CATCHERS,
) -> pd.DataFrame:
    """Violations of the fault-catching checks on rows that are not injected faults.

    The complement of recall: on synthetic data every such violation is a false alarm
    (or a fault the generator forgot to list).

    Parameters
    ----------
    reports
        Site id -> :class:`QualityReport` (with violations traced to source lines).
    truth
        The ``truth.json`` document (or its ``faults`` list).
    prefixes
        Check-id prefixes of the checks that catch injected faults.

    Returns
    -------
    pandas.DataFrame
        The offending rows of the reports' ``violations``.
    """
    faults = {(str(f["site"]), _file(f["file"]), int(f["line"])) for f in truth_faults(truth)}
    frames = []
    for site, report in reports.items():
        v = report.violations
        v = v[v["check_id"].str.startswith(prefixes)]
        keep = [
            pd.isna(f) or pd.isna(line) or (site, _file(f), int(line)) not in faults
            for f, line in zip(v["source_file"], v["source_line"], strict=True)
        ]
        frames.append(v[keep])
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)
