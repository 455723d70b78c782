"""Pydantic's JSON Schema, rewritten into the structural OpenAPI schema a CRD needs.

kube-apiserver accepts a subset of OpenAPI v3 ("structural"): no $ref, every node typed, no anyOf
except the int-or-string form, draft-4 style exclusive bounds, no uniqueItems, no constraints on
a map's keys. Pydantic speaks JSON Schema 2020-12. This module translates (a map's key
constraints become a CEL rule), and refuses whatever it has no faithful translation for, so that
a model change that cannot be expressed fails generation instead of the install.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from continuum.operator.api.base import PATTERN_MEANINGS

Schema = dict[str, Any]

_KEPT = frozenset(
    {
        "default",
        "description",
        "enum",
        "format",
        "maxItems",
        "maxLength",
        "maxProperties",
        "maximum",
        "minItems",
        "minLength",
        "minProperties",
        "minimum",
        "pattern",
        "required",
        "type",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-list-type",
        "x-kubernetes-map-type",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-validations",
    }
)
_DROPPED = frozenset({"title"})
_INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]
_NULL = {"type": "null"}


class SchemaTranslationError(ValueError):
    """A model uses a construct with no structural-schema equivalent."""


def structural_schema(model: type[BaseModel]) -> Schema:
    """The structural schema of `model`, inlined, as a CRD's openAPIV3Schema property."""
    generated = copy.deepcopy(model.model_json_schema(by_alias=True, mode="validation"))
    definitions = generated.pop("$defs", {})
    return copy.deepcopy(_Translator(definitions).node(generated, model.__name__))


class _Translator:
    def __init__(self, definitions: dict[str, Schema]) -> None:
        self.definitions = definitions

    def node(self, schema: Schema, path: str) -> Schema:
        schema = self._resolve(schema, path)
        if "anyOf" in schema and not schema.get("x-kubernetes-int-or-string"):
            return self.node(self._without_null(schema, path), path)
        if "patternProperties" in schema or "propertyNames" in schema:
            schema = _keys_as_rule(schema, path)
        translated: Schema = {}
        for key, value in schema.items():
            if key in _DROPPED:
                continue
            if key == "properties":
                translated[key] = {
                    name: self.node(child, f"{path}.{name}") for name, child in value.items()
                }
            elif key == "items":
                translated[key] = self.node(value, f"{path}[]")
            elif key == "additionalProperties":
                if value is True:
                    raise SchemaTranslationError(f"{path}: free-form object; annotate it FreeForm")
                if value is not False:  # False: pruning and strict field validation do the job
                    translated[key] = self.node(value, f"{path}.*")
            elif key in ("exclusiveMinimum", "exclusiveMaximum"):
                translated["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                translated[key] = True
            elif key == "const":
                translated["enum"] = [value]
            elif key == "anyOf":
                if value != _INT_OR_STRING:
                    raise SchemaTranslationError(f"{path}: anyOf other than int-or-string")
                translated[key] = value
            elif key in _KEPT:
                translated[key] = value
            else:
                raise SchemaTranslationError(f"{path}: {key!r} has no structural form")
        return _finish(translated, path)

    def _resolve(self, schema: Schema, path: str) -> Schema:
        """Inlines a $ref, the field's own keys (description, rules) winning over the target's."""
        if "$ref" not in schema:
            return schema
        name = schema["$ref"].removeprefix("#/$defs/")
        if name not in self.definitions:
            raise SchemaTranslationError(f"{path}: unresolvable {schema['$ref']}")
        target = self._resolve(self.definitions[name], path)
        own = {key: value for key, value in schema.items() if key != "$ref"}
        rules = target.get("x-kubernetes-validations", []) + own.get("x-kubernetes-validations", [])
        merged = {**target, **own}
        if rules:
            merged["x-kubernetes-validations"] = rules
        return merged

    def _without_null(self, schema: Schema, path: str) -> Schema:
        """An optional field: Kubernetes expresses it by leaving it out of required, not by null."""
        options = [option for option in schema["anyOf"] if option != _NULL]
        if len(options) != 1:
            raise SchemaTranslationError(f"{path}: a union of {len(options)} types")
        own = {key: value for key, value in schema.items() if key != "anyOf"}
        if own.get("default", ...) is None:
            del own["default"]
        option = self._resolve(options[0], path)
        rules = option.get("x-kubernetes-validations", []) + own.get("x-kubernetes-validations", [])
        merged = {**option, **own}
        if rules:
            merged["x-kubernetes-validations"] = rules
        return merged


def _keys_as_rule(schema: Schema, path: str) -> Schema:
    """A map whose keys are constrained (`dict[Key, V]` with a pattern or lengths on Key): the
    values' schema becomes additionalProperties and the keys' constraints a CEL rule on the map,
    checked with RE2 like a pattern."""
    keys: Schema = dict(schema.get("propertyNames", {}))
    translated = {
        k: v for k, v in schema.items() if k not in ("patternProperties", "propertyNames")
    }
    patterned = schema.get("patternProperties", {})
    if patterned:
        if len(patterned) != 1 or "additionalProperties" in schema:
            raise SchemaTranslationError(f"{path}: keys of more than one pattern")
        ((keys["pattern"], translated["additionalProperties"]),) = patterned.items()
    unknown = keys.keys() - {"pattern", "minLength", "maxLength"}
    if unknown:
        raise SchemaTranslationError(f"{path}: key constraints {sorted(unknown)} have no CEL form")
    checks, said = [], []
    if "minLength" in keys:
        checks.append(f"size(k) >= {keys['minLength']}")
    if "maxLength" in keys:
        checks.append(f"size(k) <= {keys['maxLength']}")
    if "pattern" in keys:
        pattern = keys["pattern"]
        if "'" in pattern:
            raise SchemaTranslationError(f"{path}: a key pattern with a quote")
        checks.append(f"k.matches(r'{pattern}')")
        said.append(PATTERN_MEANINGS.get(pattern, f"a match of '{pattern}'"))
    if "maxLength" in keys:
        said.append(f"at most {keys['maxLength']} characters long")
    rule = {
        "rule": f"self.all(k, {' && '.join(checks)})",
        "message": "every key must be " + ", ".join(said or ["non-empty"]),
    }
    translated["x-kubernetes-validations"] = [*schema.get("x-kubernetes-validations", []), rule]
    return translated


def _finish(schema: Schema, path: str) -> Schema:
    if "enum" in schema and schema.get("type") == "string":
        # CEL's cost estimator needs a bound on every string a rule compares.
        schema.setdefault("maxLength", max(len(value) for value in schema["enum"]))
    if "required" in schema:
        schema["required"] = sorted(schema["required"])
    typed = (
        "type" in schema
        or schema.get("x-kubernetes-int-or-string")
        or schema.get("x-kubernetes-preserve-unknown-fields")
    )
    if not typed:
        raise SchemaTranslationError(f"{path}: no type (an Any field?)")
    return schema
