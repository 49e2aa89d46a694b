"""Validate FHIR R4B resources with ``fhir.resources``, fast enough for bulk exports.

Full pydantic validation of a resource costs ~100 µs, too slow for a quarter of a million
resources. Bulk exports repeat a handful of *shapes* (the same elements, codes and systems,
with different ids, references, dates and numbers). So the JSON text of each resource is split
into

* a **skeleton**: the text with its volatile primitive values (``id``, ``reference`` and
  ``display`` strings, the dates listed in ``_DATETIME_KEYS``, ``birthDate`` and the number in
  ``valueQuantity.value``) replaced by a fixed placeholder valid for every one of those types
  (the string ``"2000"``: a valid id, string, date and dateTime; the number ``1``), and
* those **volatile values**, each checked with the library's own primitive type
  (``fhir_core.types``: ``IdType``, ``DateType``, ``DateTimeType``, ``DecimalType``, ...).

The split works on the text with regular expressions that only match a key (a quoted name
right after ``{`` or ``,``, which a JSON string can never contain unescaped), so it costs a
few microseconds. A skeleton is parsed and validated once with the full ``fhir.resources.R4B``
model and the verdict is cached; date and number verdicts are cached per value. A resource
passes when both pass. Whenever anything fails, or a value holds a JSON escape, the parsed
resource is validated in full by the model, so every ``invalid_resource`` message is the
library's own, naming the element path.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core import types as ft
from pydantic import TypeAdapter, ValidationError

__all__ = ["ResourceValidator", "error_path"]

_DATETIME_KEYS = (
    "deceasedDateTime",
    "effectiveDateTime",
    "onsetDateTime",
    "recordedDate",
    "performedDateTime",
    "authoredOn",
    "start",
    "end",
    "dateAsserted",
    "abatementDateTime",
)
_STRING_KIND = {"id": "id", "reference": "string", "display": "string", "birthDate": "date"}
_STRING_KIND.update(dict.fromkeys(_DATETIME_KEYS, "dateTime"))
_JSON_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
#: ``{"key":"value"`` or ``,"key":"value"`` for a volatile string key.
_STRINGS = re.compile(
    r'([{,]\s*")(' + "|".join(_STRING_KIND) + r')("\s*:\s*)(' + _JSON_STRING + ")"
)
#: The number directly in ``"valueQuantity":{...}`` (no nested object before it).
_DECIMAL = re.compile(
    r'("valueQuantity"\s*:\s*\{(?:[^{}]*?,)?\s*"value"\s*:\s*)'
    r"(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
)
_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "id": TypeAdapter(ft.IdType),
    "string": TypeAdapter(ft.StringType),
    "date": TypeAdapter(ft.DateType),
    "dateTime": TypeAdapter(ft.DateTimeType),
    "decimal": TypeAdapter(ft.DecimalType),
}
_CACHED_KINDS = frozenset({"date", "dateTime", "decimal"})


def error_path(resource_type: str, exc: ValidationError) -> str:
    """``Observation.valueQuantity.value: message`` for the first pydantic error."""
    err = exc.errors()[0]
    parts = [resource_type]
    for loc in err["loc"]:
        if isinstance(loc, int):
            parts[-1] += f"[{loc}]"
        elif not str(loc).startswith("function-") and loc not in ("json-or-python[json=any]",):
            parts.append(str(loc))
    return f"element {'.'.join(parts)}: {err['msg']}"


class ResourceValidator:
    """Validate parsed FHIR resources against R4B models, with shape caching."""

    def __init__(self) -> None:
        self._shapes: dict[str, str | None] = {}
        self._values: dict[tuple[str, Any], bool] = {}
        self.full_validations = 0

    def _value_ok(self, kind: str, value: Any) -> bool:
        cached = kind in _CACHED_KINDS
        if cached:
            ok = self._values.get((kind, value))
            if ok is not None:
                return ok
        try:
            _ADAPTERS[kind].validate_python(value)
            ok = True
        except (ValidationError, ValueError, TypeError):
            ok = False
        if cached:
            self._values[(kind, value)] = ok
        return ok

    def _values_ok(self, parts: list[str], decimal: str | None) -> bool:
        for name, token in zip(parts[2::5], parts[4::5], strict=True):
            if "\\" in token or not self._value_ok(_STRING_KIND[name], token[1:-1]):
                return False
        return decimal is None or self._value_ok("decimal", json.loads(decimal))

    def validate(self, resource: dict[str, Any], text: str) -> str | None:
        """Return None when valid, else the library's error naming the element path.

        Parameters
        ----------
        resource
            The parsed resource.
        text
            The JSON text ``resource`` was parsed from.
        """
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str):
            return "element resourceType: missing or not a string"
        parts = _STRINGS.split(text)
        tokens = parts[4::5]
        parts[4::5] = ['"2000"'] * len(tokens)
        key = "".join(parts)
        parts[4::5] = tokens
        decimal = None
        m = _DECIMAL.search(key)
        if m is not None:
            decimal = m.group(2)
            key = f"{key[: m.start(2)]}1{key[m.end(2) :]}"
        verdict = self._shapes.get(key, "")
        if verdict == "":
            verdict = self._shapes[key] = self._full(rtype, json.loads(key))
        if verdict is None and self._values_ok(parts, decimal):
            return None
        return self._full(rtype, resource)

    def _full(self, rtype: str, resource: dict[str, Any]) -> str | None:
        self.full_validations += 1
        try:
            model = get_fhir_model_class(rtype)
        except (KeyError, ValueError, AttributeError):
            return f"element resourceType: unknown FHIR R4B resource type {rtype!r}"
        try:
            model.model_validate(resource)
        except ValidationError as exc:
            return error_path(rtype, exc)
        return None
