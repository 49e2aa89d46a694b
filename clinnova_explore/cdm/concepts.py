"""Named OMOP concept ids of the shipped vocabulary subset.

Every constant is the ``concept_id`` of a row in ``cdm/data/concept.csv``. Real OMOP standard
concept ids are used where a public source confirms them; everything else lives in the local
range above 2,000,000,000 (see ``cdm/data/concept_provenance.csv`` for the source of each id).

``CANONICAL_UNIT`` and ``PLAUSIBLE_RANGE`` are read from ``cdm/data/measurement_ranges.csv``:
the unit every measurement is converted to, and the range outside which a value (in that unit)
is implausible.
"""

from __future__ import annotations

import csv
import io
from importlib import resources

# Gender, visits, record type
MALE = 8507
FEMALE = 8532
INPATIENT_VISIT = 9201
OUTPATIENT_VISIT = 9202
ER_VISIT = 9203
EHR = 32817
NO_MATCHING_CONCEPT = 0

# Conditions
MULTIPLE_SCLEROSIS = 374919
RRMS = 2000000011
SPMS = 2000000012
PPMS = 2000000013
RHEUMATOID_ARTHRITIS = 80809
SEROPOSITIVE_RA = 2000000014
IBD = 2000000015
CROHNS_DISEASE = 201606
ULCERATIVE_COLITIS = 81893
PNEUMONIA = 255848
SEPSIS = 2000000016
HYPERTENSION = 2000000017
TYPE_2_DIABETES = 2000000018
DEPRESSION = 440383
HYPERTENSIVE_DISORDER = 316866
DIABETES_MELLITUS = 201820

# Clinical events (Observation domain, vocabulary CLX_EVENT)
MS_RELAPSE = 2000000201
RA_FLARE = 2000000202
IBD_FLARE = 2000000203

# Drug ingredients (RxNorm; ocrelizumab is local)
INTERFERON_BETA_1A = 722424
GLATIRAMER = 751889
TERIFLUNOMIDE = 42900584
DIMETHYL_FUMARATE = 43526424
FINGOLIMOD = 40226579
NATALIZUMAB = 735843
OCRELIZUMAB = 2000000101
METHOTREXATE = 1305058
ADALIMUMAB = 1119119
ETANERCEPT = 1151789
TOCILIZUMAB = 40171288
TOFACITINIB = 42904205
MESALAMINE = 968426
AZATHIOPRINE = 19014878
INFLIXIMAB = 937368
VEDOLIZUMAB = 45774639
USTEKINUMAB = 40161532
PREDNISOLONE = 1550557

# Drug classes (classification concepts, standard_concept 'C')
MS_DMT = 2000000301
MS_DMT_PLATFORM = 2000000302
MS_DMT_HIGH_EFFICACY = 2000000303
CSDMARD = 2000000304
BDMARD = 2000000305
ANTI_TNF = 2000000306
TSDMARD = 2000000307
IBD_ADVANCED_THERAPY = 2000000308
AMINOSALICYLATE = 2000000309
THIOPURINE = 2000000310

# Measurements
CRP = 3020460
HEMOGLOBIN = 3000963
BODY_WEIGHT = 3025315
FECAL_CALPROTECTIN = 2000000401
EDSS = 2000000402
DAS28_CRP = 2000000403

# Procedures
COLECTOMY = 2000000501
BOWEL_RESECTION = 2000000502
MRI_BRAIN = 2000000503

# Units
UNIT_MG_PER_L = 8751
UNIT_MG_PER_DL = 8840
UNIT_G_PER_L = 8636
UNIT_G_PER_DL = 8713
UNIT_KG = 9529
UNIT_UG_PER_G = 2000000901
UNIT_SCORE = 2000000902


def _read_ranges() -> tuple[dict[int, int], dict[int, tuple[float, float]]]:
    text = (resources.files("clinnova_explore.cdm") / "data" / "measurement_ranges.csv").read_text(
        encoding="utf-8"
    )
    units: dict[int, int] = {}
    ranges: dict[int, tuple[float, float]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        concept_id = int(row["measurement_concept_id"])
        units[concept_id] = int(row["canonical_unit_concept_id"])
        ranges[concept_id] = (float(row["plausible_low"]), float(row["plausible_high"]))
    return units, ranges


CANONICAL_UNIT: dict[int, int]
PLAUSIBLE_RANGE: dict[int, tuple[float, float]]
CANONICAL_UNIT, PLAUSIBLE_RANGE = _read_ranges()
