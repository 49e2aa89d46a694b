"""Synthetic five-hospital federation with a known ground truth.

:func:`generate` writes every site's *native* export (exactly as its site spec in
``harmonize/sites`` describes it) plus ``truth.json``. Seeded and deterministic: each site is
simulated in chunks of 2,000 persons with its own generator ``default_rng([seed, site, chunk])``,
so memory is bounded and time is linear in persons.

Data-generating process
-----------------------
Population
    Persons are split across sites by spec ``share``; each site has its own disease mix
    (about 40% MS, 30% RA, 30% IBD overall). Female share MS 70%, RA 75%, IBD 50%; onset age
    normal (MS 32±7, RA 52±10, IBD 27±7 years, clipped); first visit uniform in 2012-01-01 ..
    2023-06-30, on average two years after onset. MS subtypes RRMS 85% (3%/year convert to
    SPMS, after which SPMS is coded), PPMS 10%, SPMS 5%; IBD Crohn's 55% / UC 45%; RA 70%
    seropositive. Death: Gompertz hazard 4e-5·exp(0.09·age)/year; loss to follow-up
    4%/year; data cut 2025-12-31.
Visits
    Outpatient every 91-200 days from the first visit to the end of follow-up, a baseline visit
    7-60 days before the index date (no other scheduled visit in the 90 days before it), a
    visit for every relapse/flare (MS: 30% emergency; IBD flares: 30% admitted, 20% emergency),
    inpatient stays for IBD surgery, serious infections (pneumonia 75%/sepsis 25%; 1%/year
    untreated, 2.2%/year on reference drugs, 4.5%/year on the exposed drugs) and elective
    admissions, and a final contact visit on the last day of follow-up (inpatient if the
    person died). Diagnoses: the index disease at the first visit and at 30% of later
    visits, at event, surgery and elective visits; hypertension, type 2 diabetes and
    depression from an onset date on. Labs at scheduled visits: EDSS (MS), DAS28-CRP and CRP
    (RA), calprotectin and CRP (IBD), hemoglobin, weight; MRI brain for MS.
Treatments and ground truth (see :mod:`.params` and ``truth.json['effects']``)
    Each disease has an index drug start (MS: first DMT; RA: first b/tsDMARD after
    methotrexate; IBD: first advanced therapy), a baseline at the baseline visit, a logistic
    treatment choice in baseline severity plus a site offset (confounding by indication), and
    a Weibull proportional-hazards time to the first outcome (MS relapse; RA flare; IBD
    surgery) with true log hazard ratios and site baseline-hazard multipliers. Drugs switch
    only after the first outcome event. Censoring: death, loss to follow-up, data cut.
Faults
    About 0.2% extra lines, at least three of each applicable kind per site, each listed
    with its file and physical line (see :mod:`.faults`).
"""

from __future__ import annotations

from clinnova_explore.synth.generate import generate, site_counts

__all__ = ["generate", "site_counts"]
