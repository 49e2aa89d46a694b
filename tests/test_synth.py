"""The synthetic federation: native files per spec, determinism, faults, ground truth."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import Counter
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from clinnova_explore.cdm import concepts as c
from clinnova_explore.cdm.units import conversion_factor
from clinnova_explore.cdm.vocabulary import source_to_standard
from clinnova_explore.harmonize.spec import FhirSpec, SiteSpec, load_site_specs
from clinnova_explore.synth import generate
from clinnova_explore.synth.generate import site_counts

PERSONS = 600
CUT = dt.date(2025, 12, 31)
RANGES = {
    c.EDSS: (0, 10),
    c.DAS28_CRP: (0.96, 9.4),
    c.CRP: (0, 300),
    c.FECAL_CALPROTECTIN: (5, 3000),
    c.HEMOGLOBIN: (6, 20),
    c.BODY_WEIGHT: (35, 200),
}
CANON = {
    c.EDSS: "{score}",
    c.DAS28_CRP: "{score}",
    c.CRP: "mg/L",
    c.FECAL_CALPROTECTIN: "ug/g",
    c.HEMOGLOBIN: "g/dL",
    c.BODY_WEIGHT: "kg",
}
HIGH_EFFICACY_ATC = {"L04AA27", "L04AA23", "L04AA36"}
BAD_NUMBERS = {"n.a.", "1.2.3", "pos.", "?", "1,2,3"}
PLATFORM_ATC = {"L03AB07", "L03AX13", "L04AA31", "L04AX07"}


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth")
    return out, generate(out, persons=PERSONS, seed=3)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_differs(fed, tmp_path):
    root, _ = fed
    again = generate(tmp_path / "a", persons=PERSONS, seed=3)
    assert _files(tmp_path / "a") == _files(root)
    assert again["faults"] == fed[1]["faults"]
    generate(tmp_path / "b", persons=PERSONS, seed=4)
    other = _files(tmp_path / "b")
    assert other.keys() == _files(root).keys()
    assert other != _files(root)


def test_progress_reports_every_site(tmp_path):
    seen: list[tuple[str, int, int]] = []
    generate(tmp_path, persons=50, seed=1, progress=lambda s, d, t: seen.append((s, d, t)))
    assert {s for s, _, _ in seen} == set(load_site_specs())
    assert all(d == t for _, d, t in seen)


def test_persons_per_site_follow_shares(fed):
    root, truth = fed
    specs = load_site_specs()
    expected = site_counts(PERSONS, {s: sp.share for s, sp in specs.items()})
    assert sum(expected.values()) == PERSONS
    for site, spec in specs.items():
        assert truth["sites"][site]["persons"] == expected[site]
        assert abs(expected[site] - PERSONS * spec.share) <= 1
        name = spec.files["Patient"] if isinstance(spec, FhirSpec) else spec.tables["patients"].file
        lines = (root / "raw" / site / name).read_bytes().count(b"\n")
        header = 0 if isinstance(spec, FhirSpec) else 1
        assert lines - header == expected[site]
    by_disease = Counter()
    for s in truth["sites"].values():
        by_disease.update(s["persons_by_disease"])
    assert 0.33 < by_disease["ms"] / PERSONS < 0.47
    assert 0.22 < by_disease["ra"] / PERSONS < 0.38


def test_headers_encodings_decimals_and_dates(fed):
    root, _ = fed
    specs = load_site_specs()
    for site, spec in specs.items():
        if not isinstance(spec, SiteSpec):
            continue
        for ts in spec.tables.values():
            raw = (root / "raw" / site / ts.file).read_bytes()
            assert raw.startswith(b"\xef\xbb\xbf") == (spec.encoding == "utf-8-sig")
            text = raw.decode(
                "utf-8-sig" if spec.encoding == "utf-8-sig" else spec.encoding, errors="replace"
            )
            header = next(csv.reader(io.StringIO(text), delimiter=spec.delimiter))
            assert header == list(ts.columns.values()), (site, ts.file)
    stras = specs["strasbourg"]
    assert isinstance(stras, SiteSpec)
    raw = (root / "raw" / "strasbourg" / stras.tables["labs"].file).read_bytes()
    assert "Hémoglobine".encode("latin-1") in raw  # é as the single byte 0xE9
    assert b"\xc3\xa9" not in raw
    rows = list(csv.DictReader(io.StringIO(raw.decode("latin-1")), delimiter=";"))
    assert any("," in r["resultat"] for r in rows)
    assert not any("." in r["resultat"] for r in rows if r["resultat"] not in BAD_NUMBERS)
    assert {r["unite"] for r in rows if r["code_analyse"] == "HB"} == {"g/l"}
    homburg = (root / "raw" / "homburg" / "befund.txt").read_bytes()
    assert "µg/g".encode("cp1252") in homburg
    for site, spec in specs.items():
        if isinstance(spec, SiteSpec):
            pts = spec.tables["patients"]
            text = (
                (root / "raw" / site / pts.file)
                .read_bytes()
                .decode("utf-8-sig" if spec.encoding == "utf-8-sig" else spec.encoding)
            )
            births = [
                r[pts.columns["birth_date"]]
                for r in csv.DictReader(io.StringIO(text), delimiter=spec.delimiter)
            ]
            for b in births:
                dt.datetime.strptime(b, spec.date_format)


def test_fhir_resources_validate(fed):
    root, _ = fed
    spec = load_site_specs()["luxembourg"]
    assert isinstance(spec, FhirSpec)
    faulty = {(f["file"], f["line"]) for f in fed[1]["faults"] if f["site"] == "luxembourg"}
    for rtype, name in spec.files.items():
        lines = (root / "raw" / "luxembourg" / name).read_bytes().split(b"\n")[:-1]
        checked = 0
        for i, line in enumerate(lines, 1):
            if (name, i) in faulty or i % 7:
                continue
            obj = json.loads(line)
            assert obj["resourceType"] == rtype
            get_fhir_model_class(rtype).model_validate(obj)
            checked += 1
        assert checked > 5, name


# ---- independent fault detection -------------------------------------------------------


def _known_codes(vocabularies: tuple[str, ...], undotted: bool) -> set[str]:
    out: set[str] = set()
    for v in vocabularies:
        codes = source_to_standard(v)["source_code"]
        out |= {x.replace(".", "") if undotted else x for x in codes}
    return out


def _lab_standard(vocabularies: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in vocabularies:
        m = source_to_standard(v)
        out.update(dict(zip(m["source_code"], m["standard_concept_id"], strict=True)))
    return out


def _detect_csv(root: Path, spec: SiteSpec) -> Counter:
    found: Counter = Counter()
    d = root / "raw" / spec.site
    enc = "utf-8" if spec.encoding == "utf-8-sig" else spec.encoding

    def read(ts):
        raw = (d / ts.file).read_bytes().removeprefix(b"\xef\xbb\xbf")
        return raw.split(b"\n")[:-1]

    def date(text: str) -> dt.date | None:
        return dt.datetime.strptime(text, spec.date_format).date() if text else None

    pts = spec.tables["patients"]
    persons = {}
    for line in read(pts)[1:]:
        r = dict(
            zip(
                pts.columns,
                next(csv.reader([line.decode(enc)], delimiter=spec.delimiter)),
                strict=True,
            )
        )
        persons[r["patient_id"]] = (date(r["birth_date"]), r["death_date"])
    for kind, ts in spec.tables.items():
        if kind == "patients":
            continue
        seen: set[bytes] = set()
        known = _known_codes(ts.vocabulary, ts.code_format == "undotted") if ts.vocabulary else None
        std = _lab_standard(ts.vocabulary) if kind == "labs" else {}
        for no, line in enumerate(read(ts)[1:], start=2):
            key = (ts.file, no)
            try:
                text = line.decode(enc)
            except UnicodeDecodeError:
                found[key, "invalid_encoding"] += 1
                continue
            fields = next(csv.reader([text], delimiter=spec.delimiter))
            if len(fields) != len(ts.columns):
                found[key, "malformed_line"] += 1
                continue
            if line in seen:
                found[key, "duplicate"] += 1
                continue
            seen.add(line)
            r = dict(zip(ts.columns, fields, strict=True))
            nulls = set(spec.null_values)
            dates = {f: r[f] for f in ("date", "start_date", "end_date") if f in r}
            try:
                parsed = {f: (None if v in nulls else date(v)) for f, v in dates.items()}
            except ValueError:
                found[key, "invalid_date"] += 1
                continue
            if kind == "labs":
                try:
                    value = float(r["value"].replace(spec.decimal, "."))
                except ValueError:
                    found[key, "invalid_number"] += 1
                    continue
            if r["patient_id"] not in persons:
                found[key, "unknown_person"] += 1
                continue
            if known is not None and r["code"] not in known:
                found[key, "unmapped_code"] += 1
                continue
            if kind == "labs":
                concept = std[r["code"]]
                value *= conversion_factor(spec.units[r["unit"]], CANON[concept])
                lo, hi = RANGES[concept]
                if not lo <= value <= hi:
                    found[key, "impossible_value"] += 1
                    continue
            birth = persons[r["patient_id"]][0]
            when = [v for v in parsed.values() if v is not None]
            if any(w < birth or w > CUT for w in when):
                found[key, "date_out_of_range"] += 1
                continue
            if parsed.get("end_date") and parsed["end_date"] < parsed["start_date"]:
                found[key, "end_before_start"] += 1
    return found


def _detect_fhir(root: Path, spec: FhirSpec) -> Counter:
    found: Counter = Counter()
    d = root / "raw" / spec.site
    patients = {}
    for line in (d / spec.files["Patient"]).read_bytes().split(b"\n")[:-1]:
        p = json.loads(line)
        patients[f"Patient/{p['id']}"] = dt.date.fromisoformat(p["birthDate"])
    known = {uri: _known_codes((v,), False) for uri, v in spec.systems.items()}
    for rtype, name in spec.files.items():
        if rtype == "Patient":
            continue
        seen: set[bytes] = set()
        for no, line in enumerate((d / name).read_bytes().split(b"\n")[:-1], start=1):
            key = (name, no)
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                found[key, "invalid_encoding"] += 1
                continue
            try:
                r = json.loads(text)
            except json.JSONDecodeError:
                found[key, "invalid_json"] += 1
                continue
            if line in seen:
                found[key, "duplicate"] += 1
                continue
            seen.add(line)
            if "status" not in r and rtype != "Condition":
                found[key, "invalid_resource"] += 1
                continue
            if r["subject"]["reference"] not in patients:
                found[key, "unknown_person"] += 1
                continue
            concept = r.get("code") or r.get("medicationCodeableConcept") or {"coding": [{}]}
            coding = concept["coding"][0]
            if coding and coding["code"] not in known[coding["system"]]:
                found[key, "unmapped_code"] += 1
                continue
            q = r.get("valueQuantity")
            if q is not None:
                std = _lab_standard(("LOINC", "CLX_SCORE"))[coding["code"]]
                lo, hi = RANGES[std]
                if not lo <= q["value"] <= hi:
                    found[key, "impossible_value"] += 1
                    continue
            stamp = (
                r.get("onsetDateTime") or r.get("effectiveDateTime") or r.get("performedDateTime")
            )
            period = r.get("effectivePeriod") or r.get("period") or {}
            days = [
                dt.date.fromisoformat(x)
                for x in (stamp, period.get("start"), period.get("end"))
                if x
            ]
            birth = patients[r["subject"]["reference"]]
            if any(x < birth or x > CUT for x in days):
                found[key, "date_out_of_range"] += 1
                continue
            if period.get("end") and period["end"] < period["start"]:
                found[key, "end_before_start"] += 1
    return found


def test_faults_in_truth_are_exactly_the_faulty_lines(fed):
    root, truth = fed
    for site, spec in load_site_specs().items():
        found = _detect_fhir(root, spec) if isinstance(spec, FhirSpec) else _detect_csv(root, spec)
        listed = Counter(
            ((f["file"], f["line"]), f["kind"]) for f in truth["faults"] if f["site"] == site
        )
        assert found == listed, site
        kinds = Counter(k for (_, k) in listed.elements())
        assert min(kinds.values()) >= 3, (site, kinds)
    counts = truth["fault_counts"]
    assert counts["total"] == len(truth["faults"])
    assert sum(counts["by_kind"].values()) == counts["total"]
    dup = next(f for f in truth["faults"] if f["kind"] == "duplicate")
    assert dup["catcher"] == "quarantine:duplicate"
    original = int(dup["detail"].rsplit(" ", 1)[1])
    site_dir = root / "raw" / dup["site"]
    lines = (site_dir / dup["file"]).read_bytes().split(b"\n")
    assert original < dup["line"]
    assert lines[original - 1] == lines[dup["line"] - 1]


# ---- ground truth recoverable from the files --------------------------------------------


def test_confounding_by_indication_visible_in_the_data(fed):
    root, truth = fed
    high, platform = [], []
    for site, spec in load_site_specs().items():
        if not isinstance(spec, SiteSpec):
            continue
        enc = "utf-8-sig" if spec.encoding == "utf-8-sig" else spec.encoding

        def rows(table, spec=spec, site=site, enc=enc):
            ts = spec.tables[table]
            text = (root / "raw" / site / ts.file).read_bytes().decode(enc, errors="replace")
            for r in csv.reader(io.StringIO(text), delimiter=spec.delimiter):
                if len(r) == len(ts.columns):
                    yield dict(zip(ts.columns, r, strict=True))

        def day(text, spec=spec):
            try:
                return dt.datetime.strptime(text, spec.date_format).date()
            except ValueError:
                return None

        first: dict[str, tuple[dt.date, str]] = {}
        for r in rows("medications"):
            start = day(r["start_date"])
            if (
                r["code"] in HIGH_EFFICACY_ATC | PLATFORM_ATC
                and start is not None
                and (r["patient_id"] not in first or start < first[r["patient_id"]][0])
            ):
                first[r["patient_id"]] = (start, r["code"])
        edss_codes = {"EDSS"}
        for r in rows("labs"):
            when = day(r["date"])
            if r["code"] not in edss_codes or r["patient_id"] not in first or when is None:
                continue
            start, code = first[r["patient_id"]]
            if 0 <= (start - when).days <= 90:
                value = float(r["value"].replace(spec.decimal, "."))
                (high if code in HIGH_EFFICACY_ATC else platform).append(value)
    assert len(high) > 20 and len(platform) > 20
    assert sum(high) / len(high) > sum(platform) / len(platform) + 0.5
    ms = truth["effects"]["ms"]
    assert ms["hazard_ratio"] < 0.6
    assert ms["observed"]["crude_rate_ratio"] > ms["hazard_ratio"] + 0.15
    assert (
        ms["observed"]["mean_baseline_edss_exposed"]
        > ms["observed"]["mean_baseline_edss_reference"]
    )
    for eff in truth["effects"].values():
        assert set(eff["site_baseline_hazard_multiplier"]) == set(truth["sites"])
        assert {"index", "outcome", "exposed", "reference", "censoring"} <= set(eff)


def test_rows_scale_linearly(tmp_path):
    small = generate(tmp_path / "s", persons=400, seed=9)
    large = generate(tmp_path / "l", persons=800, seed=9)

    def rows(t):
        return sum(sum(s["lines"].values()) for s in t["sites"].values())

    ratio = rows(large) / rows(small)
    assert 1.7 < ratio < 2.3
    assert 40 < rows(large) / 800 < 90
