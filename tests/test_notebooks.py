"""Notebooks run end to end on a real federation and hold no logic of their own."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

from clinnova_explore.catalog import Catalog
from clinnova_explore.pipeline import BuildResult

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_no_logic(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        defs = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda)
        ]
        assert not defs, f"{path.name}: logic belongs in the library, not in a cell"


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(
    path: Path, small_build: BuildResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINNOVA_CATALOG", str(small_build.catalog_path))
    nb = nbformat.read(path, as_version=4)
    probe = PROBES.get(path.stem)
    if probe is not None:  # a probe cell (test code, not shipped) reports the values
        nb.cells.append(nbformat.v4.new_code_cell(probe))
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    if path.stem == "01_data_and_quality":
        last = nb.cells[-1].outputs[0]["data"]["text/plain"]
        assert float(last) == 1.0  # every injected fault found
    if path.stem == "02_cohorts":
        _check_02(nb, Catalog.load(small_build.catalog_path))
    if path.stem == "03_survival":
        _check_03(json.loads(nb.cells[-1].outputs[0]["text"]))
    if path.stem == "04_treatment_effects":
        _check_04(json.loads(nb.cells[-1].outputs[0]["text"]))
    if path.stem == "05_federated_analysis":
        _check_05(json.loads(nb.cells[-1].outputs[0]["text"]), small_build.catalog_path)


PROBE_02 = """
import json
paths = dmt_paths.summary[["site", "path", "persons"]]
print(json.dumps({
    "federated": [int(counts.overall()["persons"]), int(counts.overall()["records"])],
    "pooled": [int(pooled.overall()["persons"]), int(pooled.overall()["records"])],
    "at_risk": int(relapse_incidence.overall()["persons_at_risk"]),
    "paths": json.loads(paths.to_json(orient="records")),
    "smd_columns": [str(c) for c in table1.smd.columns],
}))
"""


PROBE_03 = """
import json
print(json.dumps({
    "data": json.loads(data[["site", "duration", "event", "treatment"]].to_json(orient="records")),
    "naive": float(naive.summary.loc["treatment", "coef"]),
    "median": json.loads(km.median.reset_index().to_json(orient="records")),
    "refused": sorted(federated.provenance.refused),
    "difference": float((federated.summary["coef"] - pooled_fit.summary["coef"]).abs().max()),
}))
"""

PROBE_04 = """
import json
rows = pooled.sites[0].frame(["site", "duration", "event", "treatment"])
print(json.dumps({
    "data": json.loads(rows.to_json(orient="records")),
    "naive": float(weighted.summary.loc["naive", "hr"]),
    "iptw": float(weighted.summary.loc["iptw", "hr"]),
    "regression": float(conditional.summary.loc["regression", "hr"]),
}))
"""

PROBE_05 = """
import json
rows = pooled.sites[0].frame(["site", "duration", "event", "treatment"])
overall = "cohort == 'target' and site == 'overall' and variable == 'Persons'"
persons = [int(t.data.query(overall)["n"].iloc[0]) for t in (table1, pooled_table1)]
print(json.dumps({
    "data": json.loads(rows.to_json(orient="records")),
    "cox": [float(m.summary.loc["treatment", "coef"]) for m in (federated_cox, pooled_cox)],
    "refused": sorted(federated_cox.provenance.refused),
    "km_events": [km.summary.groupby("group")["n_events"].sum().tolist(),
                  pooled_km.summary.groupby("group")["n_events"].sum().tolist()],
    "km_notes": list(km.provenance.suppressed),
    "persons": persons,
    "table1_refused": sorted(table1.provenance.refused),
    "preview_sites": sorted(p.site for p in km_preview),
    "requester": runner.requester,
}))
"""

PROBES = {
    "02_cohorts": PROBE_02,
    "03_survival": PROBE_03,
    "04_treatment_effects": PROBE_04,
    "05_federated_analysis": PROBE_05,
}


def _lifelines_treatment_coef(rows: list[dict[str, object]]) -> float:
    """Site-stratified Cox of the outcome (event 1) on treatment alone, fitted by lifelines."""
    from lifelines import CoxPHFitter

    df = pd.DataFrame(rows)
    df["outcome"] = (df["event"] == 1).astype(int)
    fit = CoxPHFitter().fit(
        df[["site", "duration", "outcome", "treatment"]],
        "duration",
        "outcome",
        strata=["site"],
        fit_options={"precision": 1e-12},
    )
    return float(fit.params_["treatment"])


def _check_03(probe: dict[str, object]) -> None:
    from lifelines import KaplanMeierFitter

    rows = probe["data"]
    assert isinstance(rows, list) and rows
    assert probe["naive"] == pytest.approx(_lifelines_treatment_coef(rows), abs=1e-6)
    df = pd.DataFrame(rows)
    medians = {r["group"]: r["median"] for r in probe["median"]}  # type: ignore[attr-defined]
    for arm, part in df.groupby("treatment"):
        ref = KaplanMeierFitter().fit(part["duration"], part["event"] == 1).median_survival_time_
        assert medians[arm] == ref or (np.isinf(ref) and medians[arm] is None)
    # federated equals pooled unless a site refused (then it is left out and named)
    if probe["refused"]:
        assert probe["difference"] > 1e-8
    else:
        assert probe["difference"] < 1e-8


def _check_04(probe: dict[str, object]) -> None:
    rows = probe["data"]
    assert isinstance(rows, list) and rows
    naive = float(probe["naive"])  # type: ignore[arg-type]
    assert np.log(naive) == pytest.approx(_lifelines_treatment_coef(rows), abs=1e-6)
    # confounding by indication: adjustment moves the estimate away from the naive one
    assert float(probe["iptw"]) < naive and float(probe["regression"]) < naive  # type: ignore[arg-type]


def _tagged(nb: nbformat.NotebookNode, tag: str) -> str:
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"one cell tagged {tag!r} expected"
    return "".join(o["data"]["text/plain"] for o in cells[0].outputs if "data" in o)


def _check_02(nb: nbformat.NotebookNode, catalog: Catalog) -> None:
    from clinnova_explore.cohort import builtin_definition, compile_cohort

    target = builtin_definition("ms_high_efficacy_start")
    direct = {s.id: compile_cohort(target, s).count()["persons"] for s in catalog}
    # the last cell: persons per site, as each site's compiled cohort counts them
    shown = dict(line.split() for line in _tagged(nb, "persons").splitlines()[1:-1])
    assert {k: int(v) for k, v in shown.items()} == {**direct, "overall": sum(direct.values())}
    assert "MS diagnosis on or before index" in _tagged(nb, "attrition")
    probe = json.loads(nb.cells[-1].outputs[0]["text"])
    # federated and pooled counts agree, and match the sum of the sites
    assert probe["federated"] == probe["pooled"]
    assert probe["federated"][0] == sum(direct.values())
    # every member of the target cohort is at risk of relapse from index
    assert probe["at_risk"] == sum(direct.values())
    assert "overall" in probe["smd_columns"]
    # at a site where no path is suppressed, the paths partition the MS diagnosis cohort
    ms = builtin_definition("ms_diagnosis")
    by_site: dict[str, list[int | None]] = {}
    for row in probe["paths"]:
        by_site.setdefault(row["site"], []).append(row["persons"])
    complete = [s for s, v in by_site.items() if s != "overall" and None not in v]
    assert complete
    for site in complete:
        total = compile_cohort(ms, catalog.site(site)).count()["persons"]
        assert sum(by_site[site]) == total  # type: ignore[arg-type]


def _check_05(probe: dict[str, object], catalog_path: Path) -> None:
    from clinnova_explore.federated.audit import AuditLog

    rows = probe["data"]
    assert isinstance(rows, list) and rows
    federated, pooled = probe["cox"]  # type: ignore[misc]
    # the pooled fit checked against lifelines on the same rows, the federated one against it
    assert pooled == pytest.approx(_lifelines_treatment_coef(rows), abs=1e-6)
    if probe["refused"]:
        assert abs(federated - pooled) > 1e-8
    else:
        assert federated == pytest.approx(pooled, abs=1e-8)
    # merging small cells moves events to later times but loses none, unless a site/arm's
    # table was withheld (then the provenance says so)
    fed_events, pooled_events = probe["km_events"]  # type: ignore[misc]
    withheld = [n for n in probe["km_notes"] if "not released" in n]  # type: ignore[union-attr]
    assert (fed_events == pooled_events) == (not withheld)
    df = pd.DataFrame(rows)
    assert sum(pooled_events) == int((df["event"] == 1).sum())
    # Table 1: the overall persons of the target cohort, federated (sum of sites) and pooled
    fed_persons, pooled_persons = probe["persons"]  # type: ignore[misc]
    if probe["table1_refused"]:  # a refusing site's persons are missing from the sum
        assert 0 < fed_persons < pooled_persons
    else:
        assert fed_persons == pooled_persons > 0
    # every site wrote its audit log: previews and releases, by the notebook's requester
    catalog = Catalog.load(catalog_path)
    assert probe["preview_sites"] == sorted(catalog.site_ids)
    for site in catalog:
        log = AuditLog(site.audit_path(), site=site.id)
        assert log.verify().ok
        mine = [e for e in log.entries() if e["requester"] == probe["requester"]]
        kinds = {(e["analysis"], e["kind"]) for e in mine}
        assert {("survival", "preview"), ("survival", "release"), ("cox", "release")} <= kinds
        assert ("characterize", "preview") in kinds and ("characterize", "release") in kinds
