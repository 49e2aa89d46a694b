"""Site export specifications: the shipped five are valid; broken ones say what and where."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinnova_explore.catalog import Catalog
from clinnova_explore.harmonize.spec import (
    LOGICAL_FIELDS,
    SPEC_DIR,
    FhirSpec,
    SiteSpec,
    SpecError,
    load_site_spec,
    load_site_specs,
)


def test_shipped_specs_cover_five_sites_and_every_logical_field() -> None:
    specs = load_site_specs()
    assert list(specs) == ["luxembourg", "strasbourg", "basel", "freiburg", "homburg"]
    assert sum(s.share for s in specs.values()) == pytest.approx(1.0)
    assert isinstance(specs["luxembourg"], FhirSpec)
    csv_specs = [s for s in specs.values() if isinstance(s, SiteSpec)]
    assert {s.encoding for s in csv_specs} == {"latin-1", "utf-8", "utf-8-sig", "cp1252"}
    assert {s.decimal for s in csv_specs} == {".", ","}
    assert {s.date_format for s in csv_specs} == {"%d/%m/%Y", "%d.%m.%Y", "%Y-%m-%d"}
    for s in csv_specs:
        for kind, fields in LOGICAL_FIELDS.items():
            assert set(fields) <= set(s.tables[kind].columns), (s.site, kind)


def test_project_catalog_lists_the_spec_sites() -> None:
    cat = Catalog.load(Path(__file__).resolve().parent.parent / "data_catalog.yaml")
    assert cat.site_ids == list(load_site_specs())
    for site in cat.sites:
        spec = load_site_specs()[site.id]
        assert (site.name, site.country) == (spec.name, spec.country)


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = (SPEC_DIR / "freiburg.yaml").read_text(encoding="utf-8")
    assert old in text
    p = tmp_path / "freiburg.yaml"
    p.write_text(text.replace(old, new, 1), encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ('decimal: ","', 'decimal: ";"', "field `decimal`"),
        ("  events:\n", "  happenings:\n", "field `tables`"),
        ("code: Laborkuerzel, ", "", "lacks columns for ['code']"),
        ("share: 0.25", "share: 1.5", "field `share`"),
    ],
)
def test_broken_spec_names_file_and_field(tmp_path: Path, old: str, new: str, where: str) -> None:
    p = _broken(tmp_path, old, new)
    with pytest.raises(SpecError) as err:
        load_site_spec(p)
    assert str(p) in str(err.value)
    assert where in str(err.value)


def test_shares_must_sum_to_one(tmp_path: Path) -> None:
    _broken(tmp_path, "share: 0.25", "share: 0.5")
    for other in ("luxembourg", "strasbourg", "basel", "homburg"):
        (tmp_path / f"{other}.yaml").write_bytes((SPEC_DIR / f"{other}.yaml").read_bytes())
    with pytest.raises(SpecError, match=r"shares sum to 1\.25"):
        load_site_specs(str(tmp_path))


def test_empty_spec_file_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "empty.yaml"
    p.write_text("", encoding="utf-8")
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        load_site_spec(p)
