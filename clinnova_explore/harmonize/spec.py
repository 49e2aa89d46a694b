"""Site export specifications: the declarative description of each hospital's native export.

One YAML file per site (``harmonize/sites/<site>.yaml``) says how that site writes its data:
file names, column names, code systems, date format, decimal mark, delimiter, encoding, value
labels and unit strings. The synthetic generator writes exports *from* a spec and harmonization
reads them *with* the same spec, so the two can never drift apart.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "LOGICAL_FIELDS",
    "FhirSpec",
    "SiteSpec",
    "SpecError",
    "TableSpec",
    "load_site_spec",
    "load_site_specs",
]

SPEC_DIR = Path(__file__).parent / "sites"

#: Logical table kinds and the logical fields each native file must provide.
LOGICAL_FIELDS: dict[str, tuple[str, ...]] = {
    "patients": ("patient_id", "birth_date", "sex", "death_date"),
    "visits": ("visit_id", "patient_id", "visit_type", "start_date", "end_date"),
    "diagnoses": ("patient_id", "visit_id", "code", "label", "date"),
    "medications": ("patient_id", "code", "label", "start_date", "end_date"),
    "labs": ("patient_id", "visit_id", "code", "label", "date", "value", "unit"),
    "procedures": ("patient_id", "visit_id", "code", "label", "date"),
    "events": ("patient_id", "visit_id", "code", "label", "date"),
}

#: Which CDM table each logical table feeds.
CDM_TARGET: dict[str, str] = {
    "patients": "person",
    "visits": "visit_occurrence",
    "diagnoses": "condition_occurrence",
    "medications": "drug_exposure",
    "labs": "measurement",
    "procedures": "procedure_occurrence",
    "events": "observation",
}
__all__ += ["CDM_TARGET"]


class SpecError(ValueError):
    """A site specification file is invalid; the message names the file and field."""


class TableSpec(BaseModel):
    """How one logical table is written in a site's native export."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    columns: dict[str, str] = Field(description="logical field -> native column name")
    vocabulary: tuple[str, ...] = Field(default=(), description="source vocabularies, in order")
    code_format: Literal["dotted", "undotted"] = "dotted"
    values: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("vocabulary", mode="before")
    @classmethod
    def _as_tuple(cls, v: object) -> object:
        return (v,) if isinstance(v, str) else v

    def native(self, field: str) -> str:
        """Native column name of a logical field."""
        return self.columns[field]


class _SpecBase(BaseModel):
    """Fields every site export shares: who the site is and how its bytes are encoded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: str
    name: str
    country: str
    region: str = ""
    share: float = Field(gt=0, le=1, description="Fraction of the demo persons at this site.")
    encoding: str = "utf-8"


class SiteSpec(_SpecBase):
    """A delimited-text (CSV/TSV) site export."""

    format: Literal["csv"]
    delimiter: str = ","
    decimal: Literal[".", ","] = "."
    date_format: str = "%Y-%m-%d"
    null_values: tuple[str, ...] = ("",)
    tables: dict[str, TableSpec]
    units: dict[str, str] = Field(default_factory=dict, description="native unit -> UCUM")

    @field_validator("tables")
    @classmethod
    def _complete(cls, tables: dict[str, TableSpec]) -> dict[str, TableSpec]:
        for kind, fields in LOGICAL_FIELDS.items():
            if kind not in tables:
                raise ValueError(f"table {kind!r} is missing")
            missing = [f for f in fields if f not in tables[kind].columns]
            if missing:
                raise ValueError(f"table {kind!r} lacks columns for {missing}")
        unknown = sorted(set(tables) - set(LOGICAL_FIELDS))
        if unknown:
            raise ValueError(f"unknown table kinds {unknown}; known: {sorted(LOGICAL_FIELDS)}")
        return tables


class FhirSpec(_SpecBase):
    """A FHIR R4 NDJSON bulk export (one file per resource type)."""

    format: Literal["fhir-ndjson"]
    files: dict[str, str] = Field(description="resource type -> file name")
    systems: dict[str, str] = Field(description="coding system URI -> source vocabulary id")
    units_system: str = "http://unitsofmeasure.org"
    values: dict[str, dict[str, str]] = Field(default_factory=dict)

    def system_for(self, vocabulary_id: str) -> str:
        """The coding system URI this site uses for a source vocabulary."""
        for uri, vocab in self.systems.items():
            if vocab == vocabulary_id:
                return uri
        raise KeyError(f"site {self.site!r} has no coding system for {vocabulary_id!r}")


AnySpec = SiteSpec | FhirSpec
__all__ += ["AnySpec"]


def load_site_spec(path: str | Path) -> AnySpec:
    """Read and validate one site specification.

    Parameters
    ----------
    path
        A YAML file as in ``harmonize/sites/``.

    Returns
    -------
    SiteSpec or FhirSpec

    Raises
    ------
    SpecError
        Naming the file and the offending field.
    """
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{p}: cannot read site spec: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{p}: a site spec must be a YAML mapping (site, name, format, ...)")
    model = FhirSpec if raw.get("format") == "fhir-ndjson" else SiteSpec
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise SpecError(f"{p}: field `{where}`: {err['msg']}") from None


@cache
def load_site_specs(directory: str | None = None) -> dict[str, AnySpec]:
    """All site specifications, keyed by site id, in a fixed order.

    Parameters
    ----------
    directory
        Folder of ``*.yaml`` specs; default: the ones shipped with the package.
    """
    d = Path(directory) if directory else SPEC_DIR
    order = ["luxembourg", "strasbourg", "basel", "freiburg", "homburg"]
    specs = {s.site: s for s in (load_site_spec(f) for f in sorted(d.glob("*.yaml")))}
    ordered = {k: specs[k] for k in order if k in specs}
    ordered.update({k: v for k, v in specs.items() if k not in ordered})
    total = sum(s.share for s in ordered.values())
    if abs(total - 1.0) > 1e-9:
        raise SpecError(f"{d}: site shares sum to {total}, expected 1")
    return ordered
