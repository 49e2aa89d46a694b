"""Generate the shipped vocabulary subset, clinnova_explore/cdm/data/*.csv.

The concept rows, hierarchy edges and source-code mappings below are the single source of the
vocabulary CSVs; each concept carries where its id was confirmed (concept_provenance.csv).
Run ``python tools/build_vocabulary.py [OUT_DIR]``; ``tests/test_vocabulary.py`` checks that the
shipped CSVs equal a fresh run.
"""

import csv
import sys
from collections import defaultdict
from pathlib import Path

OUT = (
    Path(sys.argv[1])
    if len(sys.argv) > 1
    else Path(__file__).resolve().parent.parent / "clinnova_explore" / "cdm" / "data"
)
START, END = "1970-01-01", "2099-12-31"

# provenance sources
DQD = "OHDSI DataQualityDashboard inst/csv/OMOP_CDMv5.4_Concept_Level.csv"
EUN = "OHDSI Eunomia inst/csv/concept.csv (GiBleed)"
FE = "OHDSI FeatureExtraction inst/csv/Table1Specs.csv"
OXF = "answerdigital/oxford-omop-data-mapper RxNorm lookup (DrugExposure docs)"
PED = "PEDSnet Variable-Dictionary conditions/crohns_dx_full.csv"
DES = "shared/DESIGN.md (team reference)"
PROF = "public OMOP data profile (condition_type_concept_id 32817 = EHR)"
ISS = "public ATLAS demo link in a GitHub issue (atlas-demo.ohdsi.org/#/concept/21601386)"
LOCAL = "local: no public confirmation"
GWIKI = "OHDSI Vocabulary-v5.0 wiki, page Vocab. GENDER (FEMALE 8532, MALE 8507)"

concepts = []  # dicts
prov = {}
edges = []  # (parent, child) hierarchy among standard/classification concepts
maps = []  # (source_id, standard_id)


def add(cid, name, domain, vocab, cls, std, code, source, note=""):
    assert cid not in prov, cid
    concepts.append(
        dict(
            concept_id=cid,
            concept_name=name,
            domain_id=domain,
            vocabulary_id=vocab,
            concept_class_id=cls,
            standard_concept=std,
            concept_code=code,
        )
    )
    prov[cid] = (source, note)


# ---- metadata, gender, visit, type
add(0, "No matching concept", "Metadata", "None", "Undefined", "", "No matching concept", EUN)
add(8507, "MALE", "Gender", "Gender", "Gender", "S", "M", GWIKI)
add(
    8532, "FEMALE", "Gender", "Gender", "Gender", "S", "F", FE, "covariate 8532001 'Gender: female'"
)
add(9201, "Inpatient Visit", "Visit", "Visit", "Visit", "S", "IP", EUN, f"also {DQD}")
add(9202, "Outpatient Visit", "Visit", "Visit", "Visit", "S", "OP", EUN, f"also {DQD}")
add(9203, "Emergency Room Visit", "Visit", "Visit", "Visit", "S", "ER", EUN, f"also {DQD}")
add(
    32817,
    "EHR",
    "Type Concept",
    "Type Concept",
    "Type Concept",
    "S",
    "EHR",
    PROF,
    f"id also in {DES}; concept_code not confirmed",
)

# ---- units
add(
    8751,
    "milligram per liter",
    "Unit",
    "UCUM",
    "Unit",
    "S",
    "mg/L",
    DQD,
    "named in creatinine rows; CRP unit",
)
add(
    8840,
    "milligram per deciliter",
    "Unit",
    "UCUM",
    "Unit",
    "S",
    "mg/dL",
    DQD,
    "named in cholesterol rows; CRP unit",
)
add(
    8636,
    "gram per liter",
    "Unit",
    "UCUM",
    "Unit",
    "S",
    "g/L",
    DQD,
    "approved hemoglobin unit (with 8713)",
)
add(
    8713,
    "gram per deciliter",
    "Unit",
    "UCUM",
    "Unit",
    "S",
    "g/dL",
    DQD,
    "approved hemoglobin unit (with 8636)",
)
add(9529, "kilogram", "Unit", "UCUM", "Unit", "S", "kg", OXF, f"body weight unit; also {DQD}")
add(
    2000000901,
    "microgram per gram",
    "Unit",
    "CLX",
    "Unit",
    "S",
    "ug/g",
    LOCAL,
    "UCUM ug/g; OMOP id not confirmed (8837 is ug/dL per DQD, not ug/g)",
)
add(2000000902, "score", "Unit", "CLX", "Unit", "S", "{score}", LOCAL, "UCUM annotation {score}")

# ---- conditions (standard)
C = "Condition"
add(
    374919,
    "Multiple sclerosis",
    C,
    "SNOMED",
    "Clinical Finding",
    "S",
    "24700007",
    DES,
    "SNOMED code 24700007 from general knowledge",
)
add(
    2000000011,
    "Relapsing remitting multiple sclerosis",
    C,
    "CLX",
    "Clinical Finding",
    "S",
    "RRMS",
    LOCAL,
    "SNOMED CT 426373005 (public MONDO xref); OMOP id not confirmed",
)
add(
    2000000012,
    "Secondary progressive multiple sclerosis",
    C,
    "CLX",
    "Clinical Finding",
    "S",
    "SPMS",
    LOCAL,
    "SNOMED CT 425500002 (public MONDO xref); OMOP id not confirmed",
)
add(
    2000000013,
    "Primary progressive multiple sclerosis",
    C,
    "CLX",
    "Clinical Finding",
    "S",
    "PPMS",
    LOCAL,
    "SNOMED CT 428700003 (general knowledge); OMOP id not confirmed",
)
add(
    80809,
    "Rheumatoid arthritis",
    C,
    "SNOMED",
    "Clinical Finding",
    "S",
    "69896004",
    EUN,
    f"also {DQD}",
)
add(
    2000000014,
    "Seropositive rheumatoid arthritis",
    C,
    "CLX",
    "Clinical Finding",
    "S",
    "SEROPOS_RA",
    LOCAL,
    "SNOMED CT 239791005 (general knowledge); OMOP id not confirmed",
)
add(
    2000000015,
    "Inflammatory bowel disease",
    C,
    "CLX",
    "Clinical Finding",
    "S",
    "IBD",
    LOCAL,
    "SNOMED CT 24526004 (general knowledge); OMOP id not confirmed",
)
add(
    201606,
    "Crohn's disease",
    C,
    "SNOMED",
    "Clinical Finding",
    "S",
    "34000006",
    PED,
    f"also {DQD}; SNOMED code from general knowledge",
)
add(
    81893,
    "Ulcerative colitis",
    C,
    "SNOMED",
    "Clinical Finding",
    "S",
    "64766004",
    EUN,
    f"also {DQD}",
)
add(255848, "Pneumonia", C, "SNOMED", "Clinical Finding", "S", "233604007", EUN, f"also {DQD}")
add(
    2000000016,
    "Sepsis",
    C,
    "CLX",
    "Clinical Finding",
    "S",
    "SEPSIS",
    LOCAL,
    "SNOMED CT 91302008; OMOP id (commonly cited 132797) not confirmed in public sources searched",
)
add(
    316866,
    "Hypertensive disorder",
    C,
    "SNOMED",
    "Clinical Finding",
    "S",
    "38341003",
    DQD,
    "SNOMED code from general knowledge; parent of local essential hypertension",
)
add(
    2000000017,
    "Essential hypertension",
    C,
    "CLX",
    "Clinical Finding",
    "S",
    "ESSENTIAL_HTN",
    LOCAL,
    "SNOMED CT 59621000; OMOP id (commonly cited 320128) seen only in a test fixture, not confirmed",
)
add(
    201820,
    "Diabetes mellitus",
    C,
    "SNOMED",
    "Clinical Finding",
    "S",
    "73211009",
    DQD,
    f"also {FE}; parent of local type 2 diabetes",
)
add(
    2000000018,
    "Type 2 diabetes mellitus",
    C,
    "CLX",
    "Clinical Finding",
    "S",
    "T2DM",
    LOCAL,
    "SNOMED CT 44054006; OMOP id (commonly cited 201826) not confirmed in public sources searched",
)
add(
    440383,
    "Depressive disorder",
    C,
    "SNOMED",
    "Clinical Finding",
    "S",
    "35489007",
    DQD,
    f"also {FE}; SNOMED code from general knowledge",
)
edges += [
    (374919, 2000000011),
    (374919, 2000000012),
    (374919, 2000000013),
    (80809, 2000000014),
    (2000000015, 201606),
    (2000000015, 81893),
    (316866, 2000000017),
    (201820, 2000000018),
]

# ---- events (CLX_EVENT standard, Observation domain)
for cid, code, name in [
    (2000000201, "MS_RELAPSE", "Multiple sclerosis relapse"),
    (2000000202, "RA_FLARE", "Rheumatoid arthritis flare"),
    (2000000203, "IBD_FLARE", "Inflammatory bowel disease flare"),
]:
    add(
        cid,
        name,
        "Observation",
        "CLX_EVENT",
        "Clinical Observation",
        "S",
        code,
        LOCAL,
        "local clinical event; standard itself",
    )

# ---- drug ingredients
D = "Drug"
ING = {
    "INTERFERON_BETA_1A": (722424, "interferon beta-1a", "72257", OXF),
    "GLATIRAMER": (751889, "glatiramer", "214582", OXF),
    "TERIFLUNOMIDE": (42900584, "teriflunomide", "1310520", OXF),
    "DIMETHYL_FUMARATE": (43526424, "dimethyl fumarate", "1373478", OXF),
    "FINGOLIMOD": (40226579, "fingolimod", "1012892", OXF),
    "NATALIZUMAB": (735843, "natalizumab", "354770", OXF),
    "OCRELIZUMAB": (2000000101, "ocrelizumab", "OCRELIZUMAB", LOCAL),
    "METHOTREXATE": (1305058, "methotrexate", "6851", EUN),
    "ADALIMUMAB": (1119119, "adalimumab", "327361", OXF),
    "ETANERCEPT": (1151789, "etanercept", "214555", OXF),
    "TOCILIZUMAB": (40171288, "tocilizumab", "612865", OXF),
    "TOFACITINIB": (42904205, "tofacitinib", "1357536", OXF),
    "MESALAMINE": (968426, "mesalamine", "52582", OXF),
    "AZATHIOPRINE": (19014878, "azathioprine", "1256", OXF),
    "INFLIXIMAB": (937368, "infliximab", "191831", OXF),
    "VEDOLIZUMAB": (45774639, "vedolizumab", "1538097", OXF),
    "USTEKINUMAB": (40161532, "ustekinumab", "847083", OXF),
    "PREDNISOLONE": (1550557, "prednisolone", "8638", OXF),
}
for key, (cid, name, code, src) in ING.items():
    if cid > 2_000_000_000:
        add(
            cid,
            name,
            D,
            "CLX",
            "Ingredient",
            "S",
            code,
            src,
            "RxNorm ingredient; OMOP id not confirmed in public sources searched",
        )
    else:
        note = "id confirmed; RxNorm code (RXCUI) from general knowledge"
        if key == "METHOTREXATE":
            note = f"id and RXCUI 6851 in Eunomia; also {OXF}"
        add(cid, name, D, "RxNorm", "Ingredient", "S", code, src, note)
I = {k: v[0] for k, v in ING.items()}

CLS = [
    ("MS_DMT", 2000000301, "Multiple sclerosis disease-modifying therapy"),
    ("MS_DMT_PLATFORM", 2000000302, "MS platform (moderate-efficacy) therapy"),
    ("MS_DMT_HIGH_EFFICACY", 2000000303, "MS high-efficacy therapy"),
    ("CSDMARD", 2000000304, "Conventional synthetic DMARD"),
    ("BDMARD", 2000000305, "Biologic DMARD"),
    ("ANTI_TNF", 2000000306, "TNF-alpha inhibitor"),
    ("TSDMARD", 2000000307, "Targeted synthetic DMARD"),
    ("IBD_ADVANCED_THERAPY", 2000000308, "IBD advanced therapy"),
    ("AMINOSALICYLATE", 2000000309, "Aminosalicylate"),
    ("THIOPURINE", 2000000310, "Thiopurine"),
]
K = {}
for key, cid, name in CLS:
    K[key] = cid
    add(cid, name, D, "CLX", "Drug Class", "C", key, LOCAL, "local drug class (classification)")
edges += [(K["MS_DMT"], K["MS_DMT_PLATFORM"]), (K["MS_DMT"], K["MS_DMT_HIGH_EFFICACY"])]
edges += [
    (K["MS_DMT_PLATFORM"], I[k])
    for k in ("INTERFERON_BETA_1A", "GLATIRAMER", "TERIFLUNOMIDE", "DIMETHYL_FUMARATE")
]
edges += [(K["MS_DMT_HIGH_EFFICACY"], I[k]) for k in ("FINGOLIMOD", "NATALIZUMAB", "OCRELIZUMAB")]
edges += [
    (K["CSDMARD"], I["METHOTREXATE"]),
    (K["BDMARD"], K["ANTI_TNF"]),
    (K["BDMARD"], I["TOCILIZUMAB"]),
    (K["TSDMARD"], I["TOFACITINIB"]),
    (K["AMINOSALICYLATE"], I["MESALAMINE"]),
    (K["THIOPURINE"], I["AZATHIOPRINE"]),
]
edges += [(K["ANTI_TNF"], I[k]) for k in ("ADALIMUMAB", "ETANERCEPT", "INFLIXIMAB")]
edges += [
    (K["IBD_ADVANCED_THERAPY"], I[k])
    for k in ("INFLIXIMAB", "ADALIMUMAB", "VEDOLIZUMAB", "USTEKINUMAB")
]

# ---- ATC classes (2023)
ATC_CLASSES = [
    ("L", 21601386, "ANTINEOPLASTIC AND IMMUNOMODULATING AGENTS", "ATC 1st", None),
    ("L03", None, "IMMUNOSTIMULANTS", "ATC 2nd", "L"),
    ("L03A", None, "IMMUNOSTIMULANTS", "ATC 3rd", "L03"),
    ("L03AB", None, "Interferons", "ATC 4th", "L03A"),
    ("L03AX", None, "Other immunostimulants", "ATC 4th", "L03A"),
    ("L04", None, "IMMUNOSUPPRESSANTS", "ATC 2nd", "L"),
    ("L04A", None, "IMMUNOSUPPRESSANTS", "ATC 3rd", "L04"),
    ("L04AA", None, "Selective immunosuppressants", "ATC 4th", "L04A"),
    ("L04AB", None, "Tumor necrosis factor alpha (TNF-alpha) inhibitors", "ATC 4th", "L04A"),
    ("L04AC", None, "Interleukin inhibitors", "ATC 4th", "L04A"),
    ("L04AX", None, "Other immunosuppressants", "ATC 4th", "L04A"),
    (
        "A07",
        None,
        "ANTIDIARRHEALS, INTESTINAL ANTIINFLAMMATORY/ANTIINFECTIVE AGENTS",
        "ATC 2nd",
        None,
    ),
    ("A07E", None, "INTESTINAL ANTIINFLAMMATORY AGENTS", "ATC 3rd", "A07"),
    ("A07EC", None, "Aminosalicylic acid and similar agents", "ATC 4th", "A07E"),
    ("H02", None, "CORTICOSTEROIDS FOR SYSTEMIC USE", "ATC 2nd", None),
    ("H02A", None, "CORTICOSTEROIDS FOR SYSTEMIC USE, PLAIN", "ATC 3rd", "H02"),
    ("H02AB", None, "Glucocorticoids", "ATC 4th", "H02A"),
]
atc_id = {}
nxt = 2000002001
for code, cid, name, cls, parent in ATC_CLASSES:
    if cid is None:
        cid, nxt = nxt, nxt + 1
        add(cid, name, D, "ATC", cls, "C", code, LOCAL, "WHO ATC 2023 class; OMOP id not confirmed")
    else:
        add(cid, name, D, "ATC", cls, "C", code, ISS, "ATC 1st level L")
    atc_id[code] = cid
    if parent:
        edges.append((atc_id[parent], cid))
ATC5 = [
    ("L04AA23", "natalizumab", "NATALIZUMAB"),
    ("L04AA36", "ocrelizumab", "OCRELIZUMAB"),
    ("L04AA27", "fingolimod", "FINGOLIMOD"),
    ("L04AA31", "teriflunomide", "TERIFLUNOMIDE"),
    ("L04AX07", "dimethyl fumarate", "DIMETHYL_FUMARATE"),
    ("L03AB07", "interferon beta-1a", "INTERFERON_BETA_1A"),
    ("L03AX13", "glatiramer acetate", "GLATIRAMER"),
    ("L04AX03", "methotrexate", "METHOTREXATE"),
    ("L04AB04", "adalimumab", "ADALIMUMAB"),
    ("L04AB01", "etanercept", "ETANERCEPT"),
    ("L04AC07", "tocilizumab", "TOCILIZUMAB"),
    ("L04AA29", "tofacitinib", "TOFACITINIB"),
    ("A07EC02", "mesalazine", "MESALAMINE"),
    ("L04AX01", "azathioprine", "AZATHIOPRINE"),
    ("L04AB02", "infliximab", "INFLIXIMAB"),
    ("L04AA33", "vedolizumab", "VEDOLIZUMAB"),
    ("L04AC05", "ustekinumab", "USTEKINUMAB"),
    ("H02AB06", "prednisolone", "PREDNISOLONE"),
]
nxt = 2000002101
for code, name, key in ATC5:
    add(
        nxt,
        name,
        D,
        "ATC",
        "ATC 5th",
        "",
        code,
        LOCAL,
        "WHO ATC 2023 code; source concept mapped to the RxNorm ingredient (simplification)",
    )
    maps.append((nxt, I[key]))
    edges.append((atc_id[code[:5]], I[key]))
    nxt += 1

# ---- measurements (standard)
M = "Measurement"
MEAS = {
    "CRP": 3020460,
    "HEMOGLOBIN": 3000963,
    "BODY_WEIGHT": 3025315,
    "FECAL_CALPROTECTIN": 2000000401,
    "EDSS": 2000000402,
    "DAS28_CRP": 2000000403,
}
add(
    3020460,
    "C reactive protein [Mass/volume] in Serum or Plasma",
    M,
    "LOINC",
    "Lab Test",
    "S",
    "1988-5",
    DQD,
    "LOINC code 1988-5 from general knowledge",
)
add(
    3000963,
    "Hemoglobin [Mass/volume] in Blood",
    M,
    "LOINC",
    "Lab Test",
    "S",
    "718-7",
    EUN,
    f"also {DQD}",
)
add(
    3025315,
    "Body weight",
    M,
    "LOINC",
    "Clinical Observation",
    "S",
    "29463-7",
    DQD,
    "LOINC code 29463-7 from general knowledge",
)
add(
    2000000401,
    "Calprotectin [Mass/mass] in Stool",
    M,
    "CLX",
    "Lab Test",
    "S",
    "FCAL",
    LOCAL,
    "LOINC 38445-3 (general knowledge); OMOP id not confirmed",
)
add(
    2000000402,
    "Expanded Disability Status Scale (EDSS) score",
    M,
    "CLX",
    "Clinical Observation",
    "S",
    "EDSS",
    LOCAL,
    "no confirmable LOINC/SNOMED standard concept found",
)
add(
    2000000403,
    "Disease Activity Score 28 joints with CRP (DAS28-CRP)",
    M,
    "CLX",
    "Clinical Observation",
    "S",
    "DAS28_CRP",
    LOCAL,
    "no confirmable LOINC/SNOMED standard concept found",
)

# ---- procedures (standard, local)
P = "Procedure"
PROC = {"COLECTOMY": 2000000501, "BOWEL_RESECTION": 2000000502, "MRI_BRAIN": 2000000503}
add(
    2000000501,
    "Colectomy",
    P,
    "CLX",
    "Procedure",
    "S",
    "COLECTOMY",
    LOCAL,
    "SNOMED CT 23968004 (public SNOMED editorial guide); OMOP id not confirmed",
)
add(
    2000000502,
    "Resection of intestine (partial or ileocecal)",
    P,
    "CLX",
    "Procedure",
    "S",
    "BOWEL_RESECTION",
    LOCAL,
    "OMOP id not confirmed",
)
add(
    2000000503,
    "Magnetic resonance imaging of brain",
    P,
    "CLX",
    "Procedure",
    "S",
    "MRI_BRAIN",
    LOCAL,
    "OMOP id not confirmed",
)
edges_unused = None

# ---- source vocabularies
S = dict(
    MS=374919,
    RRMS=2000000011,
    SPMS=2000000012,
    PPMS=2000000013,
    RA=80809,
    SERO=2000000014,
    CD=201606,
    UC=81893,
    PNEU=255848,
    SEPSIS=2000000016,
    HTN=2000000017,
    T2D=2000000018,
    DEP=440383,
)

ICD10 = [
    ("G35", "Multiple sclerosis", "MS"),
    ("M05.9", "Seropositive rheumatoid arthritis, unspecified", "SERO"),
    ("M06.9", "Rheumatoid arthritis, unspecified", "RA"),
    ("K50.0", "Crohn disease of small intestine", "CD"),
    ("K50.1", "Crohn disease of large intestine", "CD"),
    ("K50.9", "Crohn disease, unspecified", "CD"),
    ("K51.0", "Ulcerative (chronic) pancolitis", "UC"),
    ("K51.9", "Ulcerative colitis, unspecified", "UC"),
    ("J18.9", "Pneumonia, unspecified", "PNEU"),
    ("A41.9", "Sepsis, unspecified", "SEPSIS"),
    ("I10", "Essential (primary) hypertension", "HTN"),
    ("E11.9", "Type 2 diabetes mellitus without complications", "T2D"),
    ("F32.9", "Depressive episode, unspecified", "DEP"),
]
CIM10 = [
    ("G35", "Sclérose en plaques", "MS"),
    ("M05.9", "Polyarthrite rhumatoïde séropositive, sans précision", "SERO"),
    ("M06.9", "Polyarthrite rhumatoïde, sans précision", "RA"),
    ("K50.0", "Maladie de Crohn de l'intestin grêle", "CD"),
    ("K50.1", "Maladie de Crohn du gros intestin", "CD"),
    ("K50.9", "Maladie de Crohn, sans précision", "CD"),
    ("K51.0", "Pancolite ulcéreuse (chronique)", "UC"),
    ("K51.9", "Colite ulcéreuse, sans précision", "UC"),
    ("J18.9", "Pneumopathie, sans précision", "PNEU"),
    ("A41.9", "Sepsis, sans précision", "SEPSIS"),
    ("I10", "Hypertension essentielle (primitive)", "HTN"),
    ("E11.9", "Diabète sucré de type 2, sans complication", "T2D"),
    ("F32.9", "Épisode dépressif, sans précision", "DEP"),
]
GM = [
    ("G35.0", "Erstmanifestation einer multiplen Sklerose", "MS"),
    (
        "G35.10",
        "Multiple Sklerose mit vorherrschend schubförmigem Verlauf: Ohne Angabe einer akuten "
        "Exazerbation oder Progression",
        "RRMS",
    ),
    (
        "G35.11",
        "Multiple Sklerose mit vorherrschend schubförmigem Verlauf: Mit Angabe einer akuten "
        "Exazerbation oder Progression",
        "RRMS",
    ),
    (
        "G35.20",
        "Multiple Sklerose mit primär-chronischem Verlauf: Ohne Angabe einer akuten "
        "Exazerbation oder Progression",
        "PPMS",
    ),
    (
        "G35.21",
        "Multiple Sklerose mit primär-chronischem Verlauf: Mit Angabe einer akuten "
        "Exazerbation oder Progression",
        "PPMS",
    ),
    (
        "G35.30",
        "Multiple Sklerose mit sekundär-chronischem Verlauf: Ohne Angabe einer akuten "
        "Exazerbation oder Progression",
        "SPMS",
    ),
    (
        "G35.31",
        "Multiple Sklerose mit sekundär-chronischem Verlauf: Mit Angabe einer akuten "
        "Exazerbation oder Progression",
        "SPMS",
    ),
    ("G35.9", "Multiple Sklerose, nicht näher bezeichnet", "MS"),
    (
        "M05.90",
        "Seropositive chronische Polyarthritis, nicht näher bezeichnet: Mehrere Lokalisationen",
        "SERO",
    ),
    ("M06.00", "Seronegative chronische Polyarthritis: Mehrere Lokalisationen", "RA"),
    ("M06.90", "Chronische Polyarthritis, nicht näher bezeichnet: Mehrere Lokalisationen", "RA"),
    ("K50.0", "Crohn-Krankheit des Dünndarmes", "CD"),
    ("K50.1", "Crohn-Krankheit des Dickdarmes", "CD"),
    ("K50.8", "Sonstige Crohn-Krankheit", "CD"),
    ("K50.9", "Crohn-Krankheit, nicht näher bezeichnet", "CD"),
    ("K51.0", "Ulzeröse (chronische) Pankolitis", "UC"),
    ("K51.2", "Ulzeröse (chronische) Proktitis", "UC"),
    ("K51.5", "Linksseitige Colitis ulcerosa", "UC"),
    ("K51.9", "Colitis ulcerosa, nicht näher bezeichnet", "UC"),
    ("J18.9", "Pneumonie, nicht näher bezeichnet", "PNEU"),
    ("A41.9", "Sepsis, nicht näher bezeichnet", "SEPSIS"),
    (
        "I10.90",
        "Essentielle Hypertonie, nicht näher bezeichnet: Ohne Angabe einer hypertensiven Krise",
        "HTN",
    ),
    (
        "E11.90",
        "Diabetes mellitus, Typ 2: Ohne Komplikationen: Nicht als entgleist bezeichnet",
        "T2D",
    ),
    ("F32.9", "Depressive Episode, nicht näher bezeichnet", "DEP"),
]


def source_block(base, vocab, cls, domain, rows, target, note):
    cid = base
    for code, name, key in rows:
        add(cid, name, domain, vocab, cls, "", code, LOCAL, note)
        maps.append((cid, target[key]))
        cid += 1


source_block(
    2000003001,
    "ICD10",
    "ICD10 code",
    C,
    ICD10,
    S,
    "WHO ICD-10 code; OMOP source concept id not confirmed",
)
source_block(
    2000004001,
    "CIM10",
    "CIM10 code",
    C,
    CIM10,
    S,
    "French ICD-10 (ATIH) code stored with dot; OMOP source concept id not confirmed",
)
source_block(
    2000005001,
    "ICD10GM",
    "ICD10GM code",
    C,
    GM,
    S,
    "German ICD-10-GM code; OMOP source concept id not confirmed",
)

# LOINC (sites send these codes): confirmed standard ones map to themselves; calprotectin is local
LOINC_SRC = [("38445-3", "Calprotectin [Mass/mass] in Stool", "FECAL_CALPROTECTIN")]
source_block(
    2000006001,
    "LOINC",
    "Lab Test",
    M,
    LOINC_SRC,
    MEAS,
    "LOINC code from general knowledge; OMOP id not confirmed; maps to local standard",
)
source_block(
    2000006101,
    "CLX_SCORE",
    "Clinical Observation",
    M,
    [("EDSS", "Expanded Disability Status Scale", "EDSS"), ("DAS28CRP", "DAS28-CRP", "DAS28_CRP")],
    MEAS,
    "local score code (LOINC sites)",
)
source_block(
    2000006201,
    "CLX_LAB_STRASBOURG",
    "Lab Test",
    M,
    [
        ("CRP", "Protéine C réactive", "CRP"),
        ("CALPRO", "Calprotectine fécale", "FECAL_CALPROTECTIN"),
        ("HB", "Hémoglobine", "HEMOGLOBIN"),
        ("POIDS", "Poids", "BODY_WEIGHT"),
        ("EDSS", "Score EDSS", "EDSS"),
        ("DAS28CRP", "Score DAS28-CRP", "DAS28_CRP"),
    ],
    MEAS,
    "local laboratory code of Strasbourg",
)
source_block(
    2000006301,
    "CLX_LAB_FREIBURG",
    "Lab Test",
    M,
    [
        ("CRP_S", "C-reaktives Protein (Serum)", "CRP"),
        ("CALP_ST", "Calprotectin (Stuhl)", "FECAL_CALPROTECTIN"),
        ("HB_B", "Hämoglobin (Blut)", "HEMOGLOBIN"),
        ("GEW", "Körpergewicht", "BODY_WEIGHT"),
        ("EDSS", "EDSS-Score", "EDSS"),
        ("DAS28", "DAS28-CRP-Score", "DAS28_CRP"),
    ],
    MEAS,
    "local laboratory code of Freiburg",
)

source_block(
    2000007001,
    "SNOMED",
    "Procedure",
    P,
    [
        ("23968004", "Colectomy", "COLECTOMY"),
        ("CLX0001", "Resection of intestine", "BOWEL_RESECTION"),
        ("CLX0002", "Magnetic resonance imaging of brain", "MRI_BRAIN"),
    ],
    PROC,
    "SNOMED procedure code used by Luxembourg; 23968004 confirmed (SNOMED editorial guide), "
    "CLX000x are local placeholders, not SCTIDs",
)
source_block(
    2000007101,
    "CCAM",
    "CCAM",
    P,
    [
        ("ZZHH001", "Colectomie totale", "COLECTOMY"),
        ("ZZHH002", "Résection iléocæcale", "BOWEL_RESECTION"),
        ("ZZAC001", "Remnographie [IRM] de l'encéphale", "MRI_BRAIN"),
    ],
    PROC,
    "local-looking CCAM code (ZZ prefix): real CCAM code not confirmed",
)
source_block(
    2000007201,
    "OPS",
    "OPS",
    P,
    [
        ("5-455", "Partielle Resektion des Dickdarmes", "BOWEL_RESECTION"),
        ("5-456", "(Totale) Kolektomie und Proktokolektomie", "COLECTOMY"),
        ("5-454", "Resektion des Dünndarmes", "BOWEL_RESECTION"),
        ("3-800", "Native Magnetresonanztomographie des Schädels", "MRI_BRAIN"),
        ("3-820", "Magnetresonanztomographie des Schädels mit Kontrastmittel", "MRI_BRAIN"),
    ],
    PROC,
    "OPS (BfArM) code; OMOP source concept id not confirmed",
)
source_block(
    2000007301,
    "CHOP",
    "CHOP",
    P,
    [
        ("Z45.8", "Totale intraabdominale Kolektomie", "COLECTOMY"),
        ("Z45.72", "Ileozäkalresektion", "BOWEL_RESECTION"),
        ("Z45.62", "Sonstige Teilresektion des Dünndarmes", "BOWEL_RESECTION"),
        ("Z88.91", "Magnetresonanztomographie von Gehirn und Hirnstamm", "MRI_BRAIN"),
    ],
    PROC,
    "Swiss CHOP code (ICD-9-CM vol. 3 numbering, Z prefix); not in OMOP, local id",
)

# ---- relationships
rel = []
std_ids = [c["concept_id"] for c in concepts if c["standard_concept"] == "S"]
for s in std_ids:
    rel.append((s, s, "Maps to"))
    rel.append((s, s, "Mapped from"))
for s, t in maps:
    rel.append((s, t, "Maps to"))
    rel.append((t, s, "Mapped from"))
for p, c in edges:
    rel.append((c, p, "Is a"))
    rel.append((p, c, "Subsumes"))

# ---- ancestors (transitive closure with min/max levels)
children = defaultdict(list)
for p, c in edges:
    children[p].append(c)
hier = [c["concept_id"] for c in concepts if c["standard_concept"] in ("S", "C")]
anc = []
for a in hier:
    best = {a: (0, 0)}
    frontier = [(a, 0)]
    # enumerate paths (graph is small and acyclic)
    while frontier:
        node, d = frontier.pop()
        for ch in children[node]:
            lo, hi = best.get(ch, (d + 1, d + 1))
            best[ch] = (min(lo, d + 1), max(hi, d + 1))
            frontier.append((ch, d + 1))
    for dsc, (lo, hi) in best.items():
        anc.append((a, dsc, lo, hi))

# ---- write
OUT.mkdir(parents=True, exist_ok=True)
ids = [c["concept_id"] for c in concepts]
assert len(ids) == len(set(ids))
with open(OUT / "concept.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(
        [
            "concept_id",
            "concept_name",
            "domain_id",
            "vocabulary_id",
            "concept_class_id",
            "standard_concept",
            "concept_code",
            "valid_start_date",
            "valid_end_date",
            "invalid_reason",
        ]
    )
    for c in sorted(concepts, key=lambda c: c["concept_id"]):
        w.writerow(
            [
                c["concept_id"],
                c["concept_name"],
                c["domain_id"],
                c["vocabulary_id"],
                c["concept_class_id"],
                c["standard_concept"],
                c["concept_code"],
                START,
                END,
                "",
            ]
        )
with open(OUT / "concept_relationship.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(
        [
            "concept_id_1",
            "concept_id_2",
            "relationship_id",
            "valid_start_date",
            "valid_end_date",
            "invalid_reason",
        ]
    )
    for a, b, r in sorted(set(rel)):
        w.writerow([a, b, r, START, END, ""])
with open(OUT / "concept_ancestor.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(
        [
            "ancestor_concept_id",
            "descendant_concept_id",
            "min_levels_of_separation",
            "max_levels_of_separation",
        ]
    )
    for row in sorted(anc):
        w.writerow(row)
with open(OUT / "concept_provenance.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["concept_id", "source", "note"])
    for cid in sorted(prov):
        w.writerow([cid, *prov[cid]])
RANGES = [
    (MEAS["CRP"], 8751, 0, 500, "clinical judgement: assay range of serum CRP in mg/L"),
    (
        MEAS["FECAL_CALPROTECTIN"],
        2000000901,
        0,
        6000,
        "clinical judgement: upper reportable range of fecal calprotectin assays with dilution",
    ),
    (MEAS["HEMOGLOBIN"], 8713, 3, 25, "clinical judgement: survivable hemoglobin in g/dL"),
    (MEAS["BODY_WEIGHT"], 9529, 20, 300, "clinical judgement: adult body weight in kg"),
    (MEAS["EDSS"], 2000000902, 0, 10, "Kurtzke EDSS scale range 0-10"),
    (MEAS["DAS28_CRP"], 2000000902, 0, 10, "DAS28-CRP formula range (about 0.96-9.4)"),
]
with open(OUT / "measurement_ranges.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(
        [
            "measurement_concept_id",
            "canonical_unit_concept_id",
            "plausible_low",
            "plausible_high",
            "source",
        ]
    )
    for r in RANGES:
        w.writerow(r)
print(len(concepts), "concepts", len(set(rel)), "relationships", len(anc), "ancestors")
