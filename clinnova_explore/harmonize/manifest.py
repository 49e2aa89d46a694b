"""A site export's manifest: when the data were extracted.

A site may place ``manifest.json`` beside its native files (a FHIR bulk export carries the same
fact as ``transactionTime``). Its ``export_date`` is the data cut of that export: observation
periods never run past it and ``cdm_source.source_release_date`` records it, so rebuilding the
same export gives the same database on any day. Without a manifest the extraction is taken to
be today.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from clinnova_explore.harmonize.errors import HarmonizeError

__all__ = ["MANIFEST", "export_date", "write_manifest"]

MANIFEST = "manifest.json"


def export_date(raw_dir: Path) -> dt.date:
    """The extraction date declared in ``raw_dir/manifest.json`` (today if there is none).

    Raises
    ------
    HarmonizeError
        If the manifest is not JSON or its ``export_date`` is not an ISO date.
    """
    path = Path(raw_dir) / MANIFEST
    if not path.is_file():
        return dt.date.today()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarmonizeError(f"{path}: not a JSON manifest ({exc})") from None
    value = doc.get("export_date") if isinstance(doc, dict) else None
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
