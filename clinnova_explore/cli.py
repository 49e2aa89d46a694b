"""``clinnova-explore``: build the demo federation, check quality, count cohorts, serve the
dashboards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from clinnova_explore.catalog import PROJECT_ROOT, Catalog
from clinnova_explore.cli_common import CatalogOpt, console
from clinnova_explore.cli_common import load_catalog as _load
from clinnova_explore.cli_common import progress as _progress
from clinnova_explore.cli_common import user_errors as _user_errors
from clinnova_explore.cli_federation import audit_app, site_app

if TYPE_CHECKING:
    from clinnova_explore.cdm.source import CdmSource
    from clinnova_explore.cohort import CohortDefinition

app = typer.Typer(
    name="clinnova-explore",
    help="Explore harmonized OMOP CDM data across hospitals (MS, IBD, RA).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)

app.add_typer(audit_app, name="audit")
app.add_typer(site_app, name="site")


@app.command()
def build(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("demo"),
    persons: Annotated[int, typer.Option("--persons", "-n", min=50, help="Persons in all.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 42,
    quality: Annotated[bool, typer.Option(help="Run data-quality checks after loading.")] = True,
) -> None:
    """Generate the five hospitals' native exports, harmonize them into one CDM database per
    site, and check data quality.

    Writes `OUT/raw/<site>/`, `OUT/cdm/<site>.duckdb`, `OUT/truth.json` and
    `OUT/data_catalog.yaml`.

    **Examples**

        clinnova-explore build --persons 20000 --seed 42 --out demo

        clinnova-explore build -n 500 -o /tmp/small --no-quality
    """
    from clinnova_explore.pipeline import build as run_build

    with _user_errors(), _progress() as cb:
        result = run_build(out, persons=persons, seed=seed, quality=quality, progress=cb)
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    console.print(f"[green]built[/green] {persons} persons in {out} ({stages})")
    console.print(f"catalog: {result.catalog_path}")


@app.command()
def harmonize(
    raw: Annotated[Path, typer.Option("--raw", help="Folder with one sub-folder per site.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for <site>.duckdb files.")],
    site: Annotated[
        list[str] | None, typer.Option("--site", "-s", help="Only these sites.")
    ] = None,
) -> None:
    """Harmonize existing native exports into one CDM database per site.

    Each site's export is read with its spec (`harmonize/sites/<site>.yaml`); every row is
    loaded or quarantined, and the reconciliation is printed.

    **Examples**

        clinnova-explore harmonize --raw demo/raw --out demo/cdm

        clinnova-explore harmonize --raw /data/exports --out /data/cdm -s freiburg
    """
    from clinnova_explore.harmonize import harmonize_site
    from clinnova_explore.harmonize.spec import load_site_specs

    with _user_errors():
        specs = load_site_specs()
        chosen = site or [s for s in specs if (raw / s).is_dir()]
        if not chosen:
            raise FileNotFoundError(f"no site folders under {raw} (expected {', '.join(specs)})")
        table = Table("site", "rows in", "loaded", "quarantined", "seconds")
        with _progress() as cb:
            for i, sid in enumerate(chosen):
                cb("harmonize", i, len(chosen))
                rep = harmonize_site(specs[sid], raw / sid, out / f"{sid}.duckdb")
                rec = rep.reconciliation
                table.add_row(
                    sid,
                    f"{rec.rows_in.sum():,}",
                    f"{rec.loaded.sum():,}",
                    f"{rec.quarantined.sum():,}",
                    f"{rep.seconds:.1f}",
                )
                cb("harmonize", i + 1, len(chosen))
    console.print(table)


@app.command()
def sites(catalog: CatalogOpt = None) -> None:
    """List the catalog's sites.

    **Example**

        clinnova-explore sites --catalog demo/data_catalog.yaml
    """
    cat = _load(catalog)
    table = Table("id", "name", "country", "region", "backend", "CDM", "min cell")
    for s in cat.sites:
        table.add_row(
            s.id,
            s.name,
            s.country,
            s.region,
            s.backend,
            s.cdm_version,
            str(s.policy.min_cell_count),
        )
    console.print(table)


@app.command()
def quality(
    catalog: CatalogOpt = None,
    site: Annotated[
        list[str] | None, typer.Option("--site", "-s", help="Only these sites.")
    ] = None,
    failing: Annotated[bool, typer.Option("--failing", help="List failing checks.")] = False,
) -> None:
    """Run the data-quality checks on each site and print a per-site summary.

    Checks run inside each site's database; only counts come back.

    **Examples**

        clinnova-explore quality --catalog demo/data_catalog.yaml

        clinnova-explore quality -s basel --failing
    """
    from clinnova_explore.quality import overview as quality_overview
    from clinnova_explore.quality import run_site

    cat = _load(catalog)
    with _user_errors():
        chosen = [cat.site(s) for s in site] if site else list(cat.sites)
    summary = Table("site", "checks", "passed", "failed", "errors", "violating rows")
    reports = {}
    with _progress() as cb:
        for i, s in enumerate(chosen):
            cb("quality", i, len(chosen))
            reports[s.id] = run_site(s)
            cb("quality", i + 1, len(chosen))
    for r in quality_overview(reports).itertuples(index=False):
        summary.add_row(
            r.site, *(str(v) for v in (r.checks, r.passed, r.failed, r.errors, r.violated_rows))
        )
    console.print(summary)
    if failing:
        for sid, rep in reports.items():
            bad = rep.summary[rep.summary.status.isin(["FAIL", "ERROR"])]
            for r in bad.itertuples():
                console.print(
                    f"{sid}: [red]{r.status}[/red] {r.check_id} "
                    f"({r.num_violated}/{r.num_denominator}) {r.description}"
                )


@app.command()
def reconcile(
    catalog: CatalogOpt = None,
    detail: Annotated[bool, typer.Option("--detail", help="One row per source file.")] = False,
) -> None:
    """Show, per site and source table, rows in = loaded + quarantined (nothing lost).

    Exits with status 1 if any file does not reconcile.

    **Examples**

        clinnova-explore reconcile --catalog demo/data_catalog.yaml

        clinnova-explore reconcile --detail
    """
    from clinnova_explore.overview import reconciliation

    cat = _load(catalog)
    rec = reconciliation(cat)
    cols = ["site", "source_table", "source_file"] if detail else ["site"]
    agg = rec.groupby(cols, sort=False)[["rows_in", "loaded", "quarantined"]].sum().reset_index()
    table = Table(*cols, "rows in", "loaded", "quarantined", "lost")
    bad = 0
    for r in agg.itertuples(index=False):
        lost = int(r.rows_in - r.loaded - r.quarantined)
        bad += lost != 0
        table.add_row(
            *[str(getattr(r, c)) for c in cols],
            f"{r.rows_in:,}",
            f"{r.loaded:,}",
            f"{r.quarantined:,}",
            f"[red]{lost}[/red]" if lost else "0",
        )
    console.print(table)
    if bad:
        raise typer.Exit(1)


@app.command()
def serve(
    catalog: CatalogOpt = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5006,
    show: Annotated[bool, typer.Option(help="Open a browser.")] = False,
) -> None:
    """Serve the Panel dashboards on http://127.0.0.1:PORT.

    **Examples**

        clinnova-explore serve --catalog demo/data_catalog.yaml

        clinnova-explore serve --port 5007
    """
    cat = _load(catalog)
    apps = sorted(
        str(p) for p in (PROJECT_ROOT / "dashboards").glob("*.py") if not p.name.startswith("_")
    )
    env = {**os.environ, "CLINNOVA_CATALOG": str(cat.path)}
    cmd = [
        sys.executable,
        "-m",
        "panel",
        "serve",
        *apps,
        "--address",
        "127.0.0.1",
        "--port",
        str(port),
        "--allow-websocket-origin",
        f"127.0.0.1:{port}",
        "--allow-websocket-origin",
        f"localhost:{port}",
        "--index",
        "overview",
    ]
    if show:
        cmd.append("--show")
    for path in apps:
        console.print(f"serving http://127.0.0.1:{port}/{Path(path).stem}")
    raise typer.Exit(subprocess.call(cmd, env=env))


cohort_app = typer.Typer(
    help="Count, show and generate cohorts on any OMOP CDM (a catalog site or a DuckDB file).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(cohort_app, name="cohort")

CdmOpt = Annotated[
    str,
    typer.Option(
        "--cdm",
        help="A catalog site id (e.g. `basel`) or the path of a DuckDB file holding an OMOP CDM.",
    ),
]
DefinitionOpt = Annotated[
    Path,
    typer.Option(
        "--definition",
        "-d",
        help="Cohort definition: YAML (`.yaml`/`.yml`), ATLAS/Circe JSON (`.json`), or the "
        "name of a shipped definition (e.g. `ms_high_efficacy_start`).",
    ),
]


def _read_definition(path: Path) -> CohortDefinition:
    """A definition from a YAML or Circe JSON file (by suffix, else by its first character), or
    a shipped definition by name (e.g. `ms_high_efficacy_start`)."""
    from clinnova_explore.cohort import (
        CohortDefinition,
        builtin_definition,
        builtin_definition_names,
    )

    if not path.is_file():
        if str(path) in builtin_definition_names():
            return builtin_definition(str(path))
        raise FileNotFoundError(
            f"cohort definition file {path} not found (shipped definitions: "
            f"{', '.join(builtin_definition_names())})"
        )
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return CohortDefinition.from_yaml(path)
    if suffix == ".json" or path.read_text(encoding="utf-8").lstrip().startswith("{"):
        return CohortDefinition.from_circe(path)
    return CohortDefinition.from_yaml(path.read_text(encoding="utf-8"))


def _open_cdm(target: str, catalog: Path | None) -> CdmSource:
    """The CDM named by ``--cdm``: an existing file path, else a site of the catalog."""
    from clinnova_explore.cdm.source import open_cdm

    if Path(target).exists() or target.endswith((".duckdb", ".db")):
        return open_cdm(Path(target))
    return open_cdm(target, catalog=Catalog.load(catalog))


@cohort_app.command("count")
def cohort_count(
    cdm: CdmOpt,
    definition: DefinitionOpt,
    catalog: CatalogOpt = None,
) -> None:
    """Count a cohort's persons and eras and print its attrition, as JSON.

    The counts are computed inside the given database and printed exactly (this command runs
    where the data are; use the library's federated `count_cohort` to apply each site's
    disclosure policy). `attrition` lists the persons left after each inclusion rule, starting
    with the qualifying entry events, as ATLAS shows them.

    **Examples**

        clinnova-explore cohort count --cdm basel --definition ms_high_efficacy.yaml

        clinnova-explore cohort count --cdm /data/eunomia.duckdb --definition gi_bleed.json
    """
    from clinnova_explore.cohort.compile import count_and_attrition

    with _user_errors():
        defn = _read_definition(definition)
        source = _open_cdm(cdm, catalog)
        counts, attrition = count_and_attrition(defn, source)
    payload = {
        "definition": defn.name,
        "definition_hash": defn.definition_hash,
        "cdm": source.id,
        "persons": int(counts["persons"]),
        "records": int(counts["records"]),
        "attrition": [
            {"rule": str(r.rule), "persons": int(r.persons), "records": int(r.records)}
            for r in attrition.itertuples(index=False)
        ],
    }
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


@cohort_app.command("sql")
def cohort_sql(
    cdm: CdmOpt,
    definition: DefinitionOpt,
    catalog: CatalogOpt = None,
    dialect: Annotated[
        str, typer.Option(help="SQL dialect, e.g. `duckdb` or `postgres`.")
    ] = "duckdb",
) -> None:
    """Print the SQL a cohort definition compiles to on a CDM.

    **Examples**

        clinnova-explore cohort sql --cdm basel --definition ms_high_efficacy.yaml

        clinnova-explore cohort sql --cdm basel -d ms.yaml --dialect postgres
    """
    from clinnova_explore.cohort import compile_cohort

    with _user_errors():
        defn = _read_definition(definition)
        sql = compile_cohort(defn, _open_cdm(cdm, catalog)).to_sql(dialect=dialect)
    typer.echo(sql)


@cohort_app.command("generate")
def cohort_generate(
    cdm: CdmOpt,
    definition: DefinitionOpt,
    catalog: CatalogOpt = None,
    cohort_id: Annotated[
        int, typer.Option("--cohort-id", min=0, help="`cohort_definition_id` of the rows.")
    ] = 1,
    database: Annotated[
        Path | None,
        typer.Option(help="DuckDB file to write into (default: the CDM's own DuckDB file)."),
    ] = None,
) -> None:
    """Write a cohort's eras into the OMOP `cohort` table (and its attrition into
    `cohort_attrition`) of a DuckDB file; print the attrition.

    Rows of the same `cohort_definition_id` are replaced.

    **Examples**

        clinnova-explore cohort generate --cdm /data/eunomia.duckdb -d gi_bleed.json

        clinnova-explore cohort generate --cdm basel -d ms.yaml --cohort-id 7 --database out.duckdb
    """
    from clinnova_explore.cohort import CohortGenerationError, generate_cohort

    with _user_errors():
        defn = _read_definition(definition)
        source = _open_cdm(cdm, catalog)
        try:
            attrition = generate_cohort(defn, source, cohort_id, database=database)
        except CohortGenerationError as exc:
            raise ValueError(str(exc)) from None
    table = Table("rule", "persons", "records")
    for r in attrition.itertuples(index=False):
        table.add_row(str(r.rule), f"{int(r.persons):,}", f"{int(r.records):,}")
    console.print(table)
    where = database or getattr(source, "resolved_location", lambda: source.id)()
    console.print(f"[green]wrote[/green] cohort {cohort_id} ({defn.name}) into {where}")


report_app = typer.Typer(
    help="Write scripted reports: self-contained HTML files that open offline.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(report_app, name="report")


@report_app.command("survival")
def report_survival(
    config: Annotated[
        Path, typer.Option("--config", help="Report config YAML (catalog, comparison, ...).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "survival_report.html"
    ),
) -> None:
    """Write a survival and treatment-effect report (attrition, Table 1, Kaplan-Meier with
    risk table, naive vs adjusted Cox, balance, provenance) as one self-contained HTML file.

    The config names the catalog (relative to the config file), a comparison preset or an
    inline time-to-event spec, the adjustment (`naive`, `iptw`, `match`, `regression`), the
    mode (`federated` or `pooled`), the days of the risk table and a title; see
    `reports/ms_survival.yaml`.

    **Examples**

        clinnova-explore report survival --config reports/ms_survival.yaml -o ms_survival.html

        clinnova-explore report survival --config my_report.yaml --out /tmp/report.html
    """
    from clinnova_explore.report import write_survival_report

    with _user_errors():
        written = write_survival_report(config, out)
    size = written.stat().st_size / 1e6
    console.print(f"[green]wrote[/green] {written} ({size:.1f} MB, opens offline)")


def main() -> None:  # pragma: no cover - console entry point
    """Entry point of the ``clinnova-explore`` script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
