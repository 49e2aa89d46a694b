"""Generate notebooks/02_cohorts.ipynb (without outputs) with nbformat.

Run ``python tools/make_notebook_02.py``; ``tests/test_notebooks.py`` executes the notebook on a
small federation and checks its values against direct library calls. Cells carry tags the test
looks them up by.
"""

from __future__ import annotations

from notebook_cells import NOTEBOOKS, code, md, write

OUT = NOTEBOOKS / "02_cohorts.ipynb"

CELLS = [
    md(
        """
# 02 · Cohorts: definitions, attrition, Table 1, incidence and treatment pathways

A cohort is where every question starts: *MS patients who started a high-efficacy therapy after
at least a year of observation, aged 18-60*. This notebook loads such a definition, shows the SQL
it compiles to, counts it at every site (federated, and pooled for comparison), compares it with
the patients who started a platform therapy in a Table 1 with standardized mean differences, and
looks at relapse incidence and at treatment escalation paths. All logic lives in the
`clinnova_explore` library; the cells only call it.

It reads the catalog named by `$CLINNOVA_CATALOG`, or the project's `data_catalog.yaml`.
"""
    ),
    code(
        """
import holoviews as hv
import pandas as pd

from clinnova_explore import Catalog
from clinnova_explore.analysis import count_cohort
from clinnova_explore.analysis.characterize import characterize
from clinnova_explore.analysis.incidence import incidence
from clinnova_explore.analysis.pathways import pathways
from clinnova_explore.cdm import concepts
from clinnova_explore.cohort import builtin_definition, compile_cohort

hv.extension("bokeh")
catalog = Catalog.load()
catalog.site_ids
"""
    ),
    md(
        """
## A cohort definition

The shipped demo definitions are YAML files (ATLAS/Circe JSON can be imported too, with
`CohortDefinition.from_circe`). Concept sets include their descendants through the vocabulary's
`concept_ancestor`; inclusion rules are evaluated in order.
"""
    ),
    code(
        """
target = builtin_definition("ms_high_efficacy_start")
print(target.to_yaml())
"""
    ),
    md(
        """
The definition compiles to one lazy query per site. Nothing runs until a number is asked for;
this is the SQL DuckDB receives at Basel:
"""
    ),
    code(
        """
compiled = compile_cohort(target, catalog.site("basel"))
print(compiled.to_sql())
"""
    ),
    md(
        """
## Attrition per site

Each site counts its own cohort and releases only the counts (cells below its minimum cell
count are suppressed). The attrition shows, as ATLAS does, how many persons remain after each
inclusion rule.
"""
    ),
    code(
        """
counts = count_cohort(target, catalog)
counts.attrition.pivot_table(index=["step", "rule"], columns="site", values="persons",
                             aggfunc="first", sort=False)
""",
        "attrition",
    ),
    md(
        """
## Federated and pooled counts

Federated mode combines the per-site payloads; pooled mode runs the same code on one virtual
database holding every site. Where nothing is suppressed, both give the same overall numbers.
"""
    ),
    code(
        """
pooled = count_cohort(target, catalog, mode="pooled")
both = pd.DataFrame({"federated": counts.overall(), "pooled": pooled.overall()})
both.loc[["persons", "records"]]
""",
        "pooled-vs-federated",
    ),
    md(
        """
## Table 1: high-efficacy against platform therapy starters

The comparator cohort starts a platform therapy (interferon beta, glatiramer, teriflunomide,
dimethyl fumarate) under the same rules, without a high-efficacy therapy before. Standardized
mean differences above 0.1 flag imbalance: the patients who start a high-efficacy drug differ
at baseline (confounding by indication).
"""
    ),
    code(
        """
comparator = builtin_definition("ms_platform_start")
table1 = characterize(target, catalog, comparator=comparator)
table1
""",
        "table1",
    ),
    code(
        """
table1.plot()
"""
    ),
    code(
        """
table1.smd["overall"].abs().sort_values(ascending=False).head(8)
""",
        "smd",
    ),
    md(
        """
## Incidence of relapse on high-efficacy therapy

Relapses (the shipped `ms_relapse` outcome cohort) during the time on therapy: persons at risk,
person-years, outcomes, and rates per 100 person-years with exact Poisson confidence intervals,
per site and overall.
"""
    ),
    code(
        """
relapse = builtin_definition("ms_relapse")
relapse_incidence = incidence(target, relapse, catalog)
relapse_incidence.overall()
""",
        "incidence",
    ),
    code(
        """
relapse_incidence.plot(by="site")
"""
    ),
    md(
        """
## Treatment pathways: escalation from platform to high-efficacy therapy

Sequences of MS disease-modifying therapy classes among all MS patients, from their first
diagnosis; each site releases the number of persons per path.
"""
    ),
    code(
        """
dmt_classes = {"platform": concepts.MS_DMT_PLATFORM, "high-efficacy": concepts.MS_DMT_HIGH_EFFICACY}
dmt_paths = pathways(builtin_definition("ms_diagnosis"), dmt_classes, catalog, max_length=3)
dmt_paths.summary.pivot_table(index="path", columns="site", values="persons", aggfunc="first")
""",
        "pathways",
    ),
    code(
        """
dmt_paths.plot(site="strasbourg")
"""
    ),
    md(
        """
The high-efficacy cohort's size per site, the number the attrition above ends with:
"""
    ),
    code(
        """
counts.summary.set_index("site")["persons"]
""",
        "persons",
    ),
]


if __name__ == "__main__":
    write(CELLS, OUT)
