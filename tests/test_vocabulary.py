"""Tests of the shipped OMOP vocabulary subset, the named concepts and UCUM conversion."""

from __future__ import annotations

from collections import defaultdict
from importlib import resources
from pathlib import Path

import ibis
import pandas as pd
import pytest

from clinnova_explore.cdm import SCHEMAS
from clinnova_explore.cdm import concepts as c
from clinnova_explore.cdm.units import (
    UCUM,
    IncompatibleUnitsError,
    UnknownUnitError,
    conversion_factor,
    convert,
)
from clinnova_explore.cdm.vocabulary import (
    ancestors,
    concept_name,
    descendants,
    load_vocabulary,
    source_to_standard,
    write_vocabulary,
)

LOCAL_MIN = 2_000_000_000

# Every (vocabulary, code) a site sends, with the standard concept and domain it must reach.
COND = "Condition"
EXPECTED_MAPPINGS: list[tuple[str, str, int, str]] = [
    *[
        (v, code, target, COND)
        for v in ("ICD10", "CIM10")
        for code, target in [
            ("G35", c.MULTIPLE_SCLEROSIS),
            ("M05.9", c.SEROPOSITIVE_RA),
            ("M06.9", c.RHEUMATOID_ARTHRITIS),
            ("K50.0", c.CROHNS_DISEASE),
            ("K50.1", c.CROHNS_DISEASE),
            ("K50.9", c.CROHNS_DISEASE),
            ("K51.0", c.ULCERATIVE_COLITIS),
            ("K51.9", c.ULCERATIVE_COLITIS),
            ("J18.9", c.PNEUMONIA),
            ("A41.9", c.SEPSIS),
            ("I10", c.HYPERTENSION),
            ("E11.9", c.TYPE_2_DIABETES),
            ("F32.9", c.DEPRESSION),
        ]
    ],
    *[
        ("ICD10GM", code, target, COND)
        for code, target in [
            ("G35.0", c.MULTIPLE_SCLEROSIS),
            ("G35.10", c.RRMS),
            ("G35.11", c.RRMS),
            ("G35.20", c.PPMS),
            ("G35.21", c.PPMS),
            ("G35.30", c.SPMS),
            ("G35.31", c.SPMS),
            ("G35.9", c.MULTIPLE_SCLEROSIS),
            ("M05.90", c.SEROPOSITIVE_RA),
            ("M06.00", c.RHEUMATOID_ARTHRITIS),
            ("M06.90", c.RHEUMATOID_ARTHRITIS),
            ("K50.0", c.CROHNS_DISEASE),
            ("K50.1", c.CROHNS_DISEASE),
            ("K50.8", c.CROHNS_DISEASE),
            ("K50.9", c.CROHNS_DISEASE),
            ("K51.0", c.ULCERATIVE_COLITIS),
            ("K51.2", c.ULCERATIVE_COLITIS),
            ("K51.5", c.ULCERATIVE_COLITIS),
            ("K51.9", c.ULCERATIVE_COLITIS),
            ("J18.9", c.PNEUMONIA),
            ("A41.9", c.SEPSIS),
            ("I10.90", c.HYPERTENSION),
            ("E11.90", c.TYPE_2_DIABETES),
            ("F32.9", c.DEPRESSION),
        ]
    ],
    *[
        ("ATC", code, target, "Drug")
        for code, target in [
            ("L04AA23", c.NATALIZUMAB),
            ("L04AA36", c.OCRELIZUMAB),
            ("L04AA27", c.FINGOLIMOD),
            ("L04AA31", c.TERIFLUNOMIDE),
            ("L04AX07", c.DIMETHYL_FUMARATE),
            ("L03AB07", c.INTERFERON_BETA_1A),
            ("L03AX13", c.GLATIRAMER),
            ("L04AX03", c.METHOTREXATE),
            ("L04AB04", c.ADALIMUMAB),
            ("L04AB01", c.ETANERCEPT),
            ("L04AC07", c.TOCILIZUMAB),
            ("L04AA29", c.TOFACITINIB),
            ("A07EC02", c.MESALAMINE),
            ("L04AX01", c.AZATHIOPRINE),
            ("L04AB02", c.INFLIXIMAB),
            ("L04AA33", c.VEDOLIZUMAB),
            ("L04AC05", c.USTEKINUMAB),
            ("H02AB06", c.PREDNISOLONE),
        ]
    ],
    ("LOINC", "1988-5", c.CRP, "Measurement"),
    ("LOINC", "718-7", c.HEMOGLOBIN, "Measurement"),
    ("LOINC", "29463-7", c.BODY_WEIGHT, "Measurement"),
    ("LOINC", "38445-3", c.FECAL_CALPROTECTIN, "Measurement"),
    ("CLX_SCORE", "EDSS", c.EDSS, "Measurement"),
    ("CLX_SCORE", "DAS28CRP", c.DAS28_CRP, "Measurement"),
    *[
        ("CLX_LAB_STRASBOURG", code, target, "Measurement")
        for code, target in [
            ("CRP", c.CRP),
            ("CALPRO", c.FECAL_CALPROTECTIN),
            ("HB", c.HEMOGLOBIN),
            ("POIDS", c.BODY_WEIGHT),
            ("EDSS", c.EDSS),
            ("DAS28CRP", c.DAS28_CRP),
        ]
    ],
    *[
        ("CLX_LAB_FREIBURG", code, target, "Measurement")
        for code, target in [
            ("CRP_S", c.CRP),
            ("CALP_ST", c.FECAL_CALPROTECTIN),
            ("HB_B", c.HEMOGLOBIN),
            ("GEW", c.BODY_WEIGHT),
            ("EDSS", c.EDSS),
            ("DAS28", c.DAS28_CRP),
        ]
    ],
    ("SNOMED", "23968004", c.COLECTOMY, "Procedure"),
    ("SNOMED", "CLX0001", c.BOWEL_RESECTION, "Procedure"),
    ("SNOMED", "CLX0002", c.MRI_BRAIN, "Procedure"),
    ("CCAM", "ZZHH001", c.COLECTOMY, "Procedure"),
    ("CCAM", "ZZHH002", c.BOWEL_RESECTION, "Procedure"),
    ("CCAM", "ZZAC001", c.MRI_BRAIN, "Procedure"),
    ("OPS", "5-455", c.BOWEL_RESECTION, "Procedure"),
    ("OPS", "5-456", c.COLECTOMY, "Procedure"),
    ("OPS", "5-454", c.BOWEL_RESECTION, "Procedure"),
    ("OPS", "3-800", c.MRI_BRAIN, "Procedure"),
    ("OPS", "3-820", c.MRI_BRAIN, "Procedure"),
    ("CHOP", "Z45.8", c.COLECTOMY, "Procedure"),
    ("CHOP", "Z45.72", c.BOWEL_RESECTION, "Procedure"),
    ("CHOP", "Z45.62", c.BOWEL_RESECTION, "Procedure"),
    ("CHOP", "Z88.91", c.MRI_BRAIN, "Procedure"),
    ("CLX_EVENT", "MS_RELAPSE", c.MS_RELAPSE, "Observation"),
    ("CLX_EVENT", "RA_FLARE", c.RA_FLARE, "Observation"),
    ("CLX_EVENT", "IBD_FLARE", c.IBD_FLARE, "Observation"),
]

# constant name -> expected domain (and 'C' for classification concepts)
CLASSES = {
    "MS_DMT",
    "MS_DMT_HIGH_EFFICACY",
    "MS_DMT_PLATFORM",
    "CSDMARD",
    "BDMARD",
    "TSDMARD",
    "ANTI_TNF",
    "IBD_ADVANCED_THERAPY",
    "AMINOSALICYLATE",
    "THIOPURINE",
}
NAMED_DOMAINS: dict[str, str] = {
    **dict.fromkeys(["MALE", "FEMALE"], "Gender"),
    **dict.fromkeys(["INPATIENT_VISIT", "OUTPATIENT_VISIT", "ER_VISIT"], "Visit"),
    "EHR": "Type Concept",
    **dict.fromkeys(
        [
            "MULTIPLE_SCLEROSIS",
            "RRMS",
            "SPMS",
            "PPMS",
            "RHEUMATOID_ARTHRITIS",
            "SEROPOSITIVE_RA",
            "IBD",
            "CROHNS_DISEASE",
            "ULCERATIVE_COLITIS",
            "PNEUMONIA",
            "SEPSIS",
            "HYPERTENSION",
            "TYPE_2_DIABETES",
            "DEPRESSION",
        ],
        "Condition",
    ),
    **dict.fromkeys(["MS_RELAPSE", "RA_FLARE", "IBD_FLARE"], "Observation"),
    **dict.fromkeys(
        [
            "INTERFERON_BETA_1A",
            "GLATIRAMER",
            "TERIFLUNOMIDE",
            "DIMETHYL_FUMARATE",
            "FINGOLIMOD",
            "NATALIZUMAB",
            "OCRELIZUMAB",
            "METHOTREXATE",
            "ADALIMUMAB",
            "ETANERCEPT",
            "TOCILIZUMAB",
            "TOFACITINIB",
            "MESALAMINE",
            "AZATHIOPRINE",
            "INFLIXIMAB",
            "VEDOLIZUMAB",
            "USTEKINUMAB",
            "PREDNISOLONE",
        ],
        "Drug",
    ),
    **dict.fromkeys(CLASSES, "Drug"),
    **dict.fromkeys(
        ["EDSS", "DAS28_CRP", "CRP", "FECAL_CALPROTECTIN", "HEMOGLOBIN", "BODY_WEIGHT"],
        "Measurement",
    ),
    **dict.fromkeys(["COLECTOMY", "BOWEL_RESECTION", "MRI_BRAIN"], "Procedure"),
    **dict.fromkeys(
        [
            "UNIT_MG_PER_L",
            "UNIT_MG_PER_DL",
            "UNIT_UG_PER_G",
            "UNIT_G_PER_L",
            "UNIT_G_PER_DL",
            "UNIT_KG",
            "UNIT_SCORE",
        ],
        "Unit",
    ),
}


@pytest.fixture(scope="module")
def vocab() -> dict[str, pd.DataFrame]:
    return load_vocabulary()


@pytest.fixture(scope="module")
def concept(vocab: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return vocab["concept"].set_index("concept_id")


def test_tables_have_schema_columns_and_types(vocab: dict[str, pd.DataFrame]) -> None:
    for name, frame in vocab.items():
        assert list(frame.columns) == list(SCHEMAS[name].names)
        for col, dtype in SCHEMAS[name].items():
            if dtype.is_integer():
                assert frame[col].dtype == "int64", (name, col)
            elif dtype.is_date():
                assert pd.api.types.is_datetime64_any_dtype(frame[col]), (name, col)


def test_load_vocabulary_returns_independent_copies() -> None:
    first = load_vocabulary()
    first["concept"].loc[:, "concept_name"] = "changed"
    assert concept_name(c.CROHNS_DISEASE) == "Crohn's disease"
    assert (load_vocabulary()["concept"]["concept_name"] != "changed").all()


def test_concept_ids_unique_and_local_range(concept: pd.DataFrame) -> None:
    assert concept.index.is_unique
    for cid, row in concept.iterrows():
        local_vocab = row["vocabulary_id"].startswith("CLX")
        if local_vocab:
            assert cid > LOCAL_MIN, cid
        if cid > LOCAL_MIN:
            assert local_vocab or row["standard_concept"] in (None, "C"), (
                f"local id {cid} must be a CLX concept, a source concept or a classification"
            )


def test_standard_flags(concept: pd.DataFrame) -> None:
    assert set(concept["standard_concept"].dropna()) <= {"S", "C"}
    for name, domain in NAMED_DOMAINS.items():
        cid = getattr(c, name)
        row = concept.loc[cid]
        assert row["domain_id"] == domain, name
        assert row["standard_concept"] == ("C" if name in CLASSES else "S"), name
    atc = concept[concept["vocabulary_id"] == "ATC"]
    assert (atc.loc[atc["concept_class_id"] != "ATC 5th", "standard_concept"] == "C").all()
    assert atc.loc[atc["concept_class_id"] == "ATC 5th", "standard_concept"].isna().all()


def test_every_concept_has_provenance(concept: pd.DataFrame) -> None:
    path = resources.files("clinnova_explore.cdm") / "data" / "concept_provenance.csv"
    with resources.as_file(path) as file:
        prov = pd.read_csv(file, keep_default_na=False).set_index("concept_id")
    assert set(prov.index) == set(concept.index)
    for cid, row in prov.iterrows():
        assert row["source"].startswith("local") == (cid > LOCAL_MIN), cid


@pytest.mark.parametrize(("vocabulary", "code", "target", "domain"), EXPECTED_MAPPINGS)
def test_site_code_maps_to_standard(
    vocabulary: str, code: str, target: int, domain: str, concept: pd.DataFrame
) -> None:
    mapping = source_to_standard(vocabulary)
    hit = mapping[mapping["source_code"] == code]
    assert len(hit) == 1, f"{vocabulary} {code}"
    standard = int(hit["standard_concept_id"].iloc[0])
    assert standard == target
    assert concept.loc[standard, "standard_concept"] == "S"
    assert concept.loc[standard, "domain_id"] == domain


def test_every_source_concept_maps_exactly_once(vocab: dict[str, pd.DataFrame]) -> None:
    concept = vocab["concept"]
    rel = vocab["concept_relationship"]
    maps = rel[rel["relationship_id"] == "Maps to"]
    counts = maps.groupby("concept_id_1").size()
    sources = concept.loc[concept["standard_concept"].isna() & (concept["concept_id"] != 0)]
    assert (counts.reindex(sources["concept_id"]).fillna(0) == 1).all()
    mapped_from = set(
        zip(
            *rel.loc[
                rel["relationship_id"] == "Mapped from", ["concept_id_2", "concept_id_1"]
            ].T.values,
            strict=True,
        )
    )
    assert set(zip(maps["concept_id_1"], maps["concept_id_2"], strict=True)) == mapped_from


def test_source_to_standard_unknown_vocabulary() -> None:
    with pytest.raises(KeyError, match="NOPE"):
        source_to_standard("NOPE")
    assert len(source_to_standard()) > len(source_to_standard("ICD10GM"))


def test_cim10_codes_are_dotted() -> None:
    codes = source_to_standard("CIM10")["source_code"]
    assert all(len(code) == 3 or code[3] == "." for code in codes)


def test_concept_ancestor_is_transitive_closure(vocab: dict[str, pd.DataFrame]) -> None:
    concept = vocab["concept"]
    anc = vocab["concept_ancestor"]
    rel = vocab["concept_relationship"]
    hier_ids = set(concept.loc[concept["standard_concept"].isin(["S", "C"]), "concept_id"])
    children: dict[int, set[int]] = defaultdict(set)
    for p, ch in rel.loc[
        rel["relationship_id"] == "Subsumes", ["concept_id_1", "concept_id_2"]
    ].itertuples(index=False):
        children[p].add(ch)
    expected: dict[tuple[int, int], tuple[int, int]] = {}
    for a in hier_ids:
        stack = [(a, 0)]
        while stack:
            node, depth = stack.pop()
            lo, hi = expected.get((a, node), (depth, depth))
            expected[(a, node)] = (min(lo, depth), max(hi, depth))
            stack.extend((ch, depth + 1) for ch in children[node])
    got = {
        (r.ancestor_concept_id, r.descendant_concept_id): (
            r.min_levels_of_separation,
            r.max_levels_of_separation,
        )
        for r in anc.itertuples(index=False)
    }
    assert len(got) == len(anc)
    assert got == expected
    assert all(got[(i, i)] == (0, 0) for i in hier_ids)


def test_hierarchies() -> None:
    assert descendants(c.MULTIPLE_SCLEROSIS) == {c.MULTIPLE_SCLEROSIS, c.RRMS, c.SPMS, c.PPMS}
    assert descendants(c.IBD) == {c.IBD, c.CROHNS_DISEASE, c.ULCERATIVE_COLITIS}
    assert descendants(c.RHEUMATOID_ARTHRITIS) == {c.RHEUMATOID_ARTHRITIS, c.SEROPOSITIVE_RA}
    assert descendants(c.MS_DMT_PLATFORM) - {c.MS_DMT_PLATFORM} == {
        c.INTERFERON_BETA_1A,
        c.GLATIRAMER,
        c.TERIFLUNOMIDE,
        c.DIMETHYL_FUMARATE,
    }
    assert descendants(c.MS_DMT_HIGH_EFFICACY) - {c.MS_DMT_HIGH_EFFICACY} == {
        c.FINGOLIMOD,
        c.NATALIZUMAB,
        c.OCRELIZUMAB,
    }
    assert descendants(c.ANTI_TNF) - {c.ANTI_TNF} == {c.ADALIMUMAB, c.ETANERCEPT, c.INFLIXIMAB}
    bdmard = descendants(c.BDMARD)
    assert {c.ADALIMUMAB, c.ETANERCEPT, c.TOCILIZUMAB, c.INFLIXIMAB} <= bdmard
    assert c.METHOTREXATE not in bdmard
    assert descendants(c.CSDMARD) == {c.CSDMARD, c.METHOTREXATE}
    assert descendants(c.TSDMARD) == {c.TSDMARD, c.TOFACITINIB}
    assert descendants(c.IBD_ADVANCED_THERAPY) - {c.IBD_ADVANCED_THERAPY} == {
        c.INFLIXIMAB,
        c.ADALIMUMAB,
        c.VEDOLIZUMAB,
        c.USTEKINUMAB,
    }
    assert descendants(c.AMINOSALICYLATE) == {c.AMINOSALICYLATE, c.MESALAMINE}
    assert descendants(c.THIOPURINE) == {c.THIOPURINE, c.AZATHIOPRINE}
    assert {c.MS_DMT, c.MS_DMT_HIGH_EFFICACY} <= ancestors(c.NATALIZUMAB)
    assert c.HYPERTENSIVE_DISORDER in ancestors(c.HYPERTENSION)
    assert c.DIABETES_MELLITUS in ancestors(c.TYPE_2_DIABETES)


def test_atc_classes_reach_ingredients(concept: pd.DataFrame) -> None:
    by_code = {
        row["concept_code"]: cid
        for cid, row in concept[concept["vocabulary_id"] == "ATC"].iterrows()
    }
    assert c.INFLIXIMAB in descendants(by_code["L04AB"])
    assert c.TOCILIZUMAB in descendants(by_code["L04AC"])
    assert c.MESALAMINE in descendants(by_code["A07EC"])
    assert c.INTERFERON_BETA_1A in descendants(by_code["L03AB"])
    assert {c.NATALIZUMAB, c.AZATHIOPRINE, c.ADALIMUMAB} <= descendants(by_code["L04A"])


def test_lookup_errors() -> None:
    with pytest.raises(KeyError, match="123"):
        concept_name(123)
    with pytest.raises(KeyError):
        descendants(123)
    source_id = int(source_to_standard("ICD10").iloc[0]["source_concept_id"])
    assert descendants(source_id) == {source_id}


def test_labels_in_site_language(concept: pd.DataFrame) -> None:
    def name(vocab: str, code: str) -> str:
        rows = concept[(concept["vocabulary_id"] == vocab) & (concept["concept_code"] == code)]
        return str(rows["concept_name"].iloc[0])

    assert name("CIM10", "G35") == "Sclérose en plaques"
    assert "Crohn-Krankheit" in name("ICD10GM", "K50.9")
    assert "Kolektomie" in name("OPS", "5-456")
    assert name("ICD10", "G35") == "Multiple sclerosis"


def test_named_ranges_and_canonical_units() -> None:
    assert c.CANONICAL_UNIT == {
        c.CRP: c.UNIT_MG_PER_L,
        c.FECAL_CALPROTECTIN: c.UNIT_UG_PER_G,
        c.HEMOGLOBIN: c.UNIT_G_PER_DL,
        c.BODY_WEIGHT: c.UNIT_KG,
        c.EDSS: c.UNIT_SCORE,
        c.DAS28_CRP: c.UNIT_SCORE,
    }
    assert c.PLAUSIBLE_RANGE[c.EDSS] == (0.0, 10.0)
    assert all(low < high for low, high in c.PLAUSIBLE_RANGE.values())


def test_write_vocabulary_round_trip(tmp_path, vocab: dict[str, pd.DataFrame]) -> None:
    path = tmp_path / "vocab.duckdb"
    con = ibis.duckdb.connect(str(path))
    write_vocabulary(con)
    write_vocabulary(con, overwrite=True)
    con.disconnect()
    con = ibis.duckdb.connect(str(path))
    for name, frame in vocab.items():
        table = con.table(name)
        assert table.schema() == SCHEMAS[name]
        assert table.count().execute() == len(frame)
    back = con.table("concept").order_by("concept_id").execute()
    assert (
        back["concept_name"].tolist()
        == vocab["concept"].sort_values("concept_id")["concept_name"].tolist()
    )
    with pytest.raises(Exception, match=r"(?i)exist"):
        write_vocabulary(con, overwrite=False)


def test_ucum_ids_match_named_units() -> None:
    assert UCUM["mg/L"] == c.UNIT_MG_PER_L
    assert UCUM["mg/dL"] == c.UNIT_MG_PER_DL
    assert UCUM["{score}"] == c.UNIT_SCORE
    assert set(UCUM.values()) <= {getattr(c, n) for n in dir(c) if n.startswith("UNIT_")}


@pytest.mark.parametrize(
    ("src", "dst", "factor"),
    [
        ("mg/dL", "mg/L", 10.0),
        ("mg/L", "mg/dL", 0.1),
        ("g/L", "g/dL", 0.1),
        ("g/dL", "g/L", 10.0),
        ("kg", "kg", 1.0),
        ("{score}", "{score}", 1.0),
        ("ug/g", "ug/g", 1.0),
    ],
)
def test_conversion_factor(src: str, dst: str, factor: float) -> None:
    assert conversion_factor(src, dst) == factor


def test_convert_value() -> None:
    assert convert(1.2, "mg/dL", "mg/L") == pytest.approx(12.0)
    assert convert(135.0, "g/L", "g/dL") == pytest.approx(13.5)


def test_conversion_errors() -> None:
    with pytest.raises(IncompatibleUnitsError, match=r"mg/L.*kg"):
        conversion_factor("mg/L", "kg")
    with pytest.raises(UnknownUnitError, match="mmol/L"):
        conversion_factor("mmol/L", "mg/L")


def test_shipped_csvs_equal_a_fresh_run_of_the_generator(tmp_path: Path) -> None:
    """The CSVs are generated by tools/build_vocabulary.py; a hand edit would drift from it."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [sys.executable, str(root / "tools" / "build_vocabulary.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    shipped = root / "clinnova_explore" / "cdm" / "data"
    names = sorted(p.name for p in tmp_path.glob("*.csv"))
    assert names == sorted(p.name for p in shipped.glob("*.csv"))
    for name in names:
        assert (tmp_path / name).read_bytes() == (shipped / name).read_bytes(), name
