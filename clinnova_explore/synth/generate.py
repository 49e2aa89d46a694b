"""The generator's entry point: persons -> courses -> native files + ``truth.json``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from clinnova_explore.harmonize.manifest import write_manifest
from clinnova_explore.harmonize.spec import FhirSpec, load_site_specs
from clinnova_explore.synth import params as p
from clinnova_explore.synth.model import simulate_course
from clinnova_explore.synth.population import sample_persons
from clinnova_explore.synth.records import build_tables
from clinnova_explore.synth.truth import TruthAccumulator, fault_summary
from clinnova_explore.synth.writer_fhir import FhirSiteWriter
from clinnova_explore.synth.writers_csv import CsvSiteWriter

__all__ = ["CHUNK", "generate", "site_counts"]

#: Persons per chunk: memory is bounded by one chunk whatever the total.
CHUNK = 2000
Progress = Callable[[str, int, int], None]


def site_counts(persons: int, shares: dict[str, float]) -> dict[str, int]:
    """Persons per site by share (largest remainder, ties in site order)."""
    raw = {s: persons * w for s, w in shares.items()}
    out = {s: int(np.floor(v)) for s, v in raw.items()}
    rest = persons - sum(out.values())
    for s in sorted(raw, key=lambda s: -(raw[s] - out[s]))[:rest]:
        out[s] += 1
    return out


def generate(out_dir: Path, persons: int, seed: int = 42, progress: Progress | None = None) -> dict:
    """Write a synthetic five-site federation: native exports plus ``truth.json``.

    Parameters
    ----------
    out_dir
        Output folder; creates ``raw/<site>/<files of the site spec>`` and ``truth.json``.
    persons
        Persons in the whole federation, split across sites by the specs' ``share``.
    seed
        Seed; the same seed gives byte-identical files.
    progress
        Called as ``progress(site, persons_done, persons_total)`` after each chunk.

    Returns
    -------
    dict
        The truth (also written to ``truth.json``), see :mod:`clinnova_explore.synth`.
    """
    if persons < 1:
        raise ValueError(f"persons must be at least 1, got {persons}")
    out_dir = Path(out_dir)
    specs = load_site_specs()
    counts = site_counts(persons, {s: spec.share for s, spec in specs.items()})
    acc = TruthAccumulator()
    faults: list[dict] = []
    lines: dict[str, dict[str, int]] = {}
    for site_no, (site, spec) in enumerate(specs.items()):
        directory = out_dir / "raw" / site
        writer = (
            FhirSiteWriter(spec, directory)
            if isinstance(spec, FhirSpec)
            else CsvSiteWriter(spec, directory)
        )
        total = counts[site]
        for chunk, first in enumerate(range(0, total, CHUNK)):
            n = min(CHUNK, total - first)
            rng = np.random.default_rng([seed, site_no, chunk])
            pe = sample_persons(rng, site, n)
            co = simulate_course(rng, site, pe)
            tables = build_tables(rng, pe, co)
            numbers = np.arange(first, first + n)
            writer.write_chunk(
                numbers,
                tables,
                np.random.default_rng([seed, site_no, chunk, 1]),
                first_chunk=chunk == 0,
            )
            acc.add(site, pe, co)
            if progress is not None:
                progress(site, first + n, total)
        lines[site] = writer.close()
        write_manifest(directory, site, p.DATA_CUT_DATE, lines[site])
        faults += writer.faults
        if total == 0 and progress is not None:
            progress(site, 0, 0)
    sites, effects = acc.result()
    for site, spec in specs.items():
        sites.setdefault(site, {"persons": 0, "deaths": 0, "persons_by_disease": {}})
        sites[site]["share"] = spec.share
        sites[site]["lines"] = lines[site]
    truth = {
        "generator": "clinnova_explore.synth",
        "seed": seed,
        "persons": persons,
        "study_start": "2012-01-01",
        "data_cut": p.DATA_CUT_DATE.isoformat(),
        "sites": sites,
        "effects": effects,
        "mortality": {
            "model": "Gompertz h(age) = b * exp(g * age_years) per year",
            "b": p.GOMPERTZ_B,
            "g": p.GOMPERTZ_G,
            "role": "competing event for every outcome",
        },
        "loss_to_follow_up_per_year": p.LOSS_TO_FOLLOW_UP_PER_YEAR,
        "faults": faults,
        "fault_counts": fault_summary(faults),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "truth.json").write_text(
        json.dumps(truth, sort_keys=True, indent=1) + "\n", encoding="utf-8"
    )
    return json.loads(json.dumps(truth, sort_keys=True))
