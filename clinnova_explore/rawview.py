"""Peek at a site's native export exactly as the hospital wrote it (for notebooks and docs)."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pandas as pd

from clinnova_explore.harmonize.spec import FhirSpec, load_site_specs

__all__ = ["raw_files", "raw_preview"]


def raw_files(raw_root: str | Path, site: str) -> pd.DataFrame:
    """The files of one site's native export with their size and physical line count.

    Parameters
    ----------
    raw_root
        The ``raw`` folder of a build (``<build>/raw``).
    site
        Site id.

    Returns
    -------
    pandas.DataFrame
        Columns ``file, bytes, lines``.
    """
    folder = Path(raw_root) / site
    if not folder.is_dir():
        raise FileNotFoundError(f"no native export for site {site!r} under {folder}")
    rows = []
    for f in sorted(folder.iterdir()):
        with f.open("rb") as fh:
            lines = sum(1 for _ in fh)
        rows.append({"file": f.name, "bytes": f.stat().st_size, "lines": lines})
    return pd.DataFrame(rows)


def raw_preview(raw_root: str | Path, site: str, table: str, n: int = 5) -> pd.DataFrame:
    """The first ``n`` records of one native file, decoded with the site's own settings.

    Values stay the strings the hospital wrote (native dates, decimal commas, local codes).
    For the FHIR site, ``table`` is a resource type and each row is one flattened resource.

    Parameters
    ----------
    raw_root
        The ``raw`` folder of a build.
    site
        Site id.
    table
        Logical table (``patients``, ``labs``, ...) or, for FHIR, a resource type.
    n
        Number of records.

    Returns
    -------
    pandas.DataFrame
        Native column names as the header.
    """
    spec = load_site_specs()[site]
    folder = Path(raw_root) / site
    if isinstance(spec, FhirSpec):
        path = folder / spec.files[table]
        with path.open(encoding=spec.encoding, errors="replace") as fh:
            records = [json.loads(line) for line in itertools.islice(fh, n)]
        return pd.json_normalize(records)
    path = folder / spec.tables[table].file
    with path.open(encoding=spec.encoding, errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=spec.delimiter)
        header = next(reader)
        rows = list(itertools.islice(reader, n))
    return pd.DataFrame(rows, columns=header)
