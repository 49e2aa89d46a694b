"""The scripted survival report: one YAML config in, one self-contained HTML file out.

:func:`build_survival_report` reads a config (:mod:`clinnova_explore.report.config`), runs the
analyses on the catalog's sites (federated or pooled) and renders the sections:

1. run parameters;
2. attrition: each cohort definition's rules (:func:`~clinnova_explore.count_cohort`) and the
   steps of the time-to-event extraction
   (:func:`~clinnova_explore.analysis.survival.tte.tte_attrition`, suppressed per site policy);
3. Table 1 of target vs comparator (:func:`~clinnova_explore.characterize`);
4. Kaplan-Meier curves by arm with a number-at-risk table, unadjusted and (with IPTW or
   matching) adjusted;
5. Cox hazard ratios, naive vs adjusted, with a forest plot
   (:func:`~clinnova_explore.analysis.effects.compare_treatments`);
6. covariate balance and love plot (IPTW or matching only);
7. provenance: catalog, definition hashes, library version, sites, suppressions, refusals, date.

A section whose analysis fails with a user-facing error (e.g. every site refused) says so in the
page; the rest of the report is still written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from clinnova_explore.analysis.result import Provenance, library_version, utc_now
from clinnova_explore.catalog import Catalog
from clinnova_explore.report.config import (
    ReportConfigError,
    SurvivalReportConfig,
    load_report_config,
)
from clinnova_explore.report.html import Section, render_page
from clinnova_explore.report.sections import (
    attrition_section,
    failed_section,
    parameters_section,
    provenance_section,
    table1_section,
)
from clinnova_explore.report.tte_attrition import tte_attrition_table

if TYPE_CHECKING:
    from clinnova_explore.analysis.survival.tte import TimeToEventSpec
    from clinnova_explore.cohort import CohortDefinition

__all__ = [
    "build_survival_report",
    "resolve_comparison",
    "survival_report",
    "write_survival_report",
]

T = TypeVar("T")
ADJUSTMENT_NAMES = {
    "naive": "unadjusted",
    "iptw": "stabilized IPTW",
    "match": "1:1 propensity-score matching",
    "regression": "Cox regression on treatment and covariates",
}


def resolve_comparison(
    comparison: str | dict[str, Any], *, source: Path | str = "report config"
) -> TimeToEventSpec:
    """The time-to-event spec a config's ``comparison`` names or spells out.

    Raises
    ------
    ReportConfigError
        Naming the file and key ``comparison`` when the preset is unknown, the inline spec is
        invalid, or the spec has no comparator.
    """
    from clinnova_explore.analysis.survival.presets import comparison as preset
    from clinnova_explore.analysis.survival.presets import comparison_names
    from clinnova_explore.analysis.survival.tte import TimeToEventError, TimeToEventSpec

    if isinstance(comparison, str):
        names = comparison_names()
        if comparison not in names:
            raise ReportConfigError(
                f"{source}: key `comparison`: no preset {comparison!r}; known presets: "
                f"{', '.join(names)} (or give an inline time-to-event spec)"
            )
        spec = preset(comparison)
    else:
        try:
            spec = TimeToEventSpec.from_dict(comparison, source=f"{source}: key `comparison`")
        except TimeToEventError as exc:
            raise ReportConfigError(str(exc)) from None
    if spec.comparator is None:
        raise ReportConfigError(
            f"{source}: key `comparison`: the spec has no `comparator`; a survival report "
            "compares two arms"
        )
    return spec


def _definition(ref: CohortDefinition | str) -> CohortDefinition:
    from clinnova_explore.cohort import builtin_definition

    return builtin_definition(ref) if isinstance(ref, str) else ref


def _attempt(fn: Callable[[], T]) -> tuple[T | None, Exception | None]:
    """Run one analysis; a user-facing error (ValueError, LookupError) is returned, not raised."""
    try:
        return fn(), None
    except (ValueError, LookupError) as exc:
        return None, exc


def build_survival_report(config_path: str | Path) -> str:
    """The survival report a config file describes, as a self-contained HTML page.

    Parameters
    ----------
    config_path
        The YAML config (see :class:`~clinnova_explore.report.config.SurvivalReportConfig`).

    Returns
    -------
    str
        HTML that opens offline (BokehJS inline, no external references).

    Raises
    ------
    ReportConfigError
        If the config is invalid (the message names the file and key).

    Examples
    --------
    >>> page = build_survival_report("reports/ms_survival.yaml")  # doctest: +SKIP
    >>> Path("ms.html").write_text(page, encoding="utf-8")  # doctest: +SKIP
    """
    path = Path(config_path)
    return survival_report(load_report_config(path), config_path=path)


def write_survival_report(config_path: str | Path, out: str | Path) -> Path:
    """Build the report of ``config_path`` and write it to ``out`` (UTF-8); return the path."""
    page = build_survival_report(config_path)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


def survival_report(config: SurvivalReportConfig, *, config_path: Path | None = None) -> str:
    """Run the analyses of a validated config and render the report page.

    Parameters
    ----------
    config
        The report settings (``catalog`` should be absolute; see
        :func:`~clinnova_explore.report.config.load_report_config`).
    config_path
        The config file, for messages and the run-parameters section.
    """
    source = config_path or "report config"
    spec = resolve_comparison(config.comparison, source=source)
    catalog = Catalog.load(config.catalog)
    try:
        return _report(config, spec, catalog, config_path)
    finally:
        catalog.close()


def _report(
    config: SurvivalReportConfig,
    spec: TimeToEventSpec,
    catalog: Catalog,
    config_path: Path | None,
) -> str:
    from clinnova_explore.analysis import characterize, count_cohort
    from clinnova_explore.analysis.survival.tte import spec_hash
    from clinnova_explore.report.effects import effect_sections

    assert spec.comparator is not None
    target, comparator = _definition(spec.target), _definition(spec.comparator)
    outcome = _definition(spec.outcome)
    labels = {1: target.name, 0: comparator.name}
    title = config.title or spec.name or f"{target.name} vs {comparator.name}"
    provenances: dict[str, Provenance] = {}
    sections: list[Section] = []

    hashes = {
        "target": target.definition_hash,
        "comparator": comparator.definition_hash,
        "outcome": outcome.definition_hash,
        "time-to-event spec": spec_hash(spec),
    }
    sections.append(
        parameters_section(
            [
                ("Config file", str(config_path.resolve()) if config_path else "(in memory)"),
                ("Catalog", str(config.catalog)),
                ("Comparison", spec.name or "(inline spec)"),
                ("Target (treatment = 1)", target.name),
                ("Comparator (treatment = 0)", comparator.name),
                ("Outcome", outcome.name),
                ("Follow-up", _follow_up(spec)),
                ("Adjustment", ADJUSTMENT_NAMES[config.adjustment]),
                ("Mode", config.mode),
                ("Times (days)", ", ".join(str(t) for t in config.times)),
            ]
        )
    )

    cohorts = {}
    for role, defn in (("target", target), ("comparator", comparator)):
        counted = count_cohort(defn, catalog, mode=config.mode)
        cohorts[f"{role}: {defn.name}"] = counted
        provenances[f"cohort counts ({role})"] = counted.provenance
    tte, tte_error = _attempt(lambda: tte_attrition_table(catalog, spec, mode=config.mode))
    if tte is not None:
        provenances["time-to-event attrition"] = tte.provenance
    sections.append(attrition_section(cohorts, tte.summary if tte else None, tte_error=tte_error))

    table1, t1_error = _attempt(
        lambda: characterize(target, catalog, comparator=comparator, mode=config.mode)
    )
    if table1 is not None:
        provenances["Table 1"] = table1.provenance
        sections.append(table1_section(table1))
    else:
        assert t1_error is not None
        sections.append(failed_section("table1", "Baseline characteristics (Table 1)", t1_error))

    effect_parts, effect_provenance = effect_sections(config, spec, catalog, labels)
    sections += effect_parts
    provenances.update(effect_provenance)

    sites = list(dict.fromkeys(s for p in provenances.values() for s in p.sites))
    sections.append(
        provenance_section(
            [
                ("Catalog", str(config.catalog)),
                *((f"Definition hash ({k})", v) for k, v in hashes.items()),
                ("Library", f"clinnova_explore {library_version()}"),
                ("Sites", ", ".join(sites) or catalog.name),
                ("Mode", config.mode),
                ("Created", utc_now()),
            ],
            provenances,
        )
    )
    subtitle = f"{ADJUSTMENT_NAMES[config.adjustment]}, {config.mode} over {len(catalog)} sites"
    return render_page(title, sections, subtitle=subtitle)


def _follow_up(spec: TimeToEventSpec) -> str:
    end = "end of observation (intention to treat)"
    if spec.end == "cohort_end":
        end = "end of treatment era (on treatment)"
    text = f"from index + {spec.start_offset} d to {end}"
    if spec.end_offset:
        text += f" + {spec.end_offset} d"
    if spec.max_days:
        text += f", at most {spec.max_days} d"
    competing = spec.competing
    if competing is not None:
        name = competing if isinstance(competing, str) else competing.name
        text += f"; competing event: {name}"
    return text
