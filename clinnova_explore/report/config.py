"""The YAML configuration of a survival report, validated with pydantic.

A config names a catalog (relative to the config file), a treatment comparison (a preset name
or an inline time-to-event specification), how to adjust for confounding, the mode and the
times shown under the Kaplan-Meier plot::

    catalog: ../demo/data_catalog.yaml
    comparison: ms_high_efficacy_vs_platform
    adjustment: iptw            # naive | iptw | match | regression
    mode: federated             # or pooled
    times: [365, 730, 1095]
    title: MS high-efficacy vs platform DMT

Unknown keys and invalid values are errors that name the key and the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["ReportConfigError", "SurvivalReportConfig", "load_report_config"]


class ReportConfigError(ValueError):
    """A report configuration file is missing or invalid; the message names file and key."""


class SurvivalReportConfig(BaseModel):
    """What a survival report shows.

    Parameters
    ----------
    catalog
        The catalog file of the sites (relative paths are relative to the config file).
    comparison
        The name of a comparison preset (see
        :func:`clinnova_explore.analysis.survival.presets.comparison_names`) or an inline
        time-to-event specification (the mapping ``TimeToEventSpec.from_dict`` reads).
    adjustment
        ``"naive"`` (unadjusted Cox only), ``"iptw"`` (stabilized inverse probability of
        treatment weights), ``"match"`` (1:1 propensity-score matching) or ``"regression"``
        (Cox model of treatment plus the covariates).
    mode
        ``"federated"`` (aggregates per site, combined) or ``"pooled"`` (one virtual site).
    times
        Days at which the number-at-risk table and survival estimates are shown.
    title
        Report title (default: the comparison's name).
    covariates
        Columns of the time-to-event table the propensity score and the adjusted Cox model
        use (default: the comparison's covariates, ``age`` and ``female``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    catalog: Path
    comparison: str | dict[str, Any]
    adjustment: Literal["naive", "iptw", "match", "regression"] = "iptw"
    mode: Literal["federated", "pooled"] = "federated"
    times: tuple[int, ...] = Field((365, 730, 1095), min_length=1)
    title: str = ""
    covariates: tuple[str, ...] | None = None

    @field_validator("times")
    @classmethod
    def _increasing_days(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(t <= 0 for t in value) or list(value) != sorted(set(value)):
            raise ValueError(f"give increasing positive days, e.g. [365, 730, 1095]; got {value}")
        return value

    @field_validator("comparison")
    @classmethod
    def _named_or_inline(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(value, str) and not value.strip():
            raise ValueError("give a comparison preset name or an inline specification")
        return value

    @field_validator("covariates")
    @classmethod
    def _distinct(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"lists a covariate twice: {list(value)}")
        return value


def _describe(exc: ValidationError, path: Path) -> str:
    """One line per invalid key: ``file: key `a.b`: message``."""
    allowed = ", ".join(SurvivalReportConfig.model_fields)
    lines = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown key `{where}` (allowed keys: {allowed})")
        elif err["type"] == "missing":
            lines.append(f"{path}: key `{where}` is required")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{path}: key `{where}`: {msg}")
    return "\n".join(dict.fromkeys(lines))


def load_report_config(path: str | Path) -> SurvivalReportConfig:
    """Read and validate a survival report config; resolve its catalog path.

    Parameters
    ----------
    path
        The YAML file.

    Returns
    -------
    SurvivalReportConfig
        With ``catalog`` made absolute (relative to the config file's folder).

    Raises
    ------
    ReportConfigError
        If the file is missing, not YAML, not a mapping, has an unknown or invalid key, or its
        catalog file does not exist; the message names the file and the key.
    """
    p = Path(path)
    if not p.is_file():
        raise ReportConfigError(f"report config {p} not found")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ReportConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ReportConfigError(
            f"{p}: expected a mapping of keys (catalog, comparison, adjustment, ...), "
            f"got {type(raw).__name__}"
        )
    try:
        config = SurvivalReportConfig.model_validate(raw)
    except ValidationError as exc:
        raise ReportConfigError(_describe(exc, p)) from None
    catalog = config.catalog.expanduser()
    if not catalog.is_absolute():
        catalog = (p.resolve().parent / catalog).resolve()
    if not catalog.is_file():
        raise ReportConfigError(
            f"{p}: key `catalog`: catalog file {catalog} not found (paths are relative to the "
            "config file; run `make demo` or `clinnova-explore build` to create one)"
        )
    return config.model_copy(update={"catalog": catalog})
