"""A site export's manifest: when the data were extracted, and how long each file is.

A site may place ``manifest.json`` beside its native files (a FHIR bulk export carries the same
fact as ``transactionTime``). Its ``export_date`` is the data cut of that export: observation
periods never run past it and ``cdm_source.source_release_date`` records it, so rebuilding the
same export gives the same database on any day. Without a manifest the extraction is taken to
be today. Its optional ``lines`` maps each file name to its physical lines (header included):
harmonization checks every file it reads against it, so a truncated or altered export is
refused instead of silently losing rows.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from clinnova_explore.harmonize.errors import HarmonizeError

__all__ = ["MANIFEST", "check_lines", "declared_lines", "export_date", "write_manifest"]

MANIFEST = "manifest.json"


def _read(raw_dir: Path) -> dict | None:
    path = Path(raw_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarmonizeError(f"{path}: not a JSON manifest ({exc})") from None
    if not isinstance(doc, dict):
        raise HarmonizeError(f"{path}: a manifest must be a JSON object")
    return doc


def declared_lines(raw_dir: Path) -> dict[str, int]:
    """File name -> physical lines (header included) declared by the manifest (may be empty).

    Raises
    ------
    HarmonizeError
        If the manifest is not JSON or ``lines`` is not an object of non-negative integers.
    """
    doc = _read(raw_dir)
    lines = (doc or {}).get("lines", {})
    ok = isinstance(lines, dict) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in lines.values()
    )
    if not ok:
        raise HarmonizeError(
            f"{Path(raw_dir) / MANIFEST}: field `lines` must map file names "
            f"to numbers of lines, got {lines!r}"
        )
    return dict(lines)


def check_lines(raw_dir: Path, name: str, counted: int) -> None:
    """Check a file's physical line count against the manifest (files it lists only).

    Raises
    ------
    HarmonizeError
        If the manifest declares another number of lines for ``name``.
    """
    declared = declared_lines(raw_dir).get(name)
    if declared is not None and declared != counted:
        raise HarmonizeError(
            f"{Path(raw_dir) / name}: the file has {counted} physical lines but the export "
            f"manifest ({MANIFEST}) declares {declared}; the file was truncated or altered "
            "after the export. Copy the complete export again."
        )


def export_date(raw_dir: Path) -> dt.date:
    """The extraction date declared in ``raw_dir/manifest.json`` (today if there is none).

    Raises
    ------
    HarmonizeError
        If the manifest is not JSON or its ``export_date`` is not an ISO date.
    """
    path = Path(raw_dir) / MANIFEST
    doc = _read(raw_dir)
    if doc is None:
        return dt.date.today()
    value = doc.get("export_date")
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise HarmonizeError(
            f"{path}: field `export_date` must be an ISO date (YYYY-MM-DD), got {value!r}"
        ) from None


def write_manifest(raw_dir: Path, site: str, export: dt.date, files: dict[str, int]) -> Path:
    """Write a site's ``manifest.json`` (site id, export date, physical lines per file)."""
    path = Path(raw_dir) / MANIFEST
    doc = {"site": site, "export_date": export.isoformat(), "lines": dict(sorted(files.items()))}
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path
