"""Typed spec models → the CRD's openAPI v3 schema, and the API server's JSON back into the model.

Where it sits: an operator author declares a custom resource's spec (and status) as a frozen
:mod:`dataclasses` dataclass; :mod:`shard_operator.manifests.crd` turns it into the CRD's structural
schema with :func:`openapi_schema`, and the reconciler turns the cached object's ``spec`` into the typed
model with :func:`load`. Plain dataclasses need no dependency beyond the standard library; the validation
the API server enforces is declared in each field's metadata with :func:`openapi`::

    @dataclass(frozen=True)
    class WebsiteSpec:
        replicas: int = field(default=1, metadata=openapi(minimum=0, maximum=10, description="nginx pods"))
        title: str = field(metadata=openapi(min_length=1, max_length=200))

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``list[T]``, ``dict[str, T]``, ``Literal``
strings (an ``enum``), nested dataclasses, and ``T | None`` (optional, not required). A field without a
default is required. :func:`load` trusts what the schema already checked (the API server rejected the rest)
and raises :class:`SpecError` only for what a schema cannot describe, such as a missing required field of
an object written before the schema existed.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

__all__ = ["SpecError", "load", "openapi", "openapi_schema"]

T = TypeVar("T")
_SCHEMA_KEY = "openapi"
_KEYWORDS = {"minimum": "minimum", "maximum": "maximum", "min_length": "minLength", "max_length": "maxLength",
             "pattern": "pattern", "min_items": "minItems", "max_items": "maxItems", "description": "description",
             "format": "format"}


class SpecError(ValueError):
    """An object's spec does not fit its model in a way the CRD schema could not reject."""


def openapi(**keywords: Any) -> dict[str, Any]:
    """A dataclass field's ``metadata`` with openAPI validation: ``minimum``, ``maximum``, ``min_length``,
    ``max_length``, ``pattern``, ``min_items``, ``max_items``, ``format`` and a ``description``."""
    unknown = set(keywords) - set(_KEYWORDS)
    if unknown:
        raise TypeError(f"unknown schema keywords: {sorted(unknown)}")
    return {_SCHEMA_KEY: {_KEYWORDS[k]: v for k, v in keywords.items()}}


def _optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1 and len(get_args(annotation)) == 2:
            return members[0], True
        raise TypeError(f"unions other than T | None cannot be a CRD schema: {annotation!r}")
    return annotation, False


def _type_schema(annotation: Any) -> dict[str, Any]:
    annotation, _ = _optional(annotation)
    origin = get_origin(annotation)
    if annotation is str:
        return {"type": "string"}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer"}
    if annotation is float:
        return {"type": "number"}
    if origin is Literal:
        values = list(get_args(annotation))
        if not all(isinstance(v, str) for v in values):
            raise TypeError(f"only string Literals become an enum: {annotation!r}")
        return {"type": "string", "enum": values}
    if origin is list:
        (item,) = get_args(annotation)
        return {"type": "array", "items": _type_schema(item)}
    if origin is dict:
        key, value = get_args(annotation)
        if key is not str:
            raise TypeError(f"object keys must be str: {annotation!r}")
        return {"type": "object", "additionalProperties": _type_schema(value)}
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return openapi_schema(annotation)
    raise TypeError(f"{annotation!r} has no openAPI schema")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def openapi_schema(model: type) -> dict[str, Any]:
    """The structural openAPI v3 schema of the dataclass ``model`` (field names in camelCase)."""
    hints = get_type_hints(model)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in dataclasses.fields(model):
        schema = {**_type_schema(hints[field.name]), **field.metadata.get(_SCHEMA_KEY, {})}
        _, optional = _optional(hints[field.name])
        has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
        if not has_default and not optional:
            required.append(_camel(field.name))
        if field.default is not dataclasses.MISSING and field.default is not None:
            schema["default"] = field.default
        properties[_camel(field.name)] = schema
    result: dict[str, Any] = {"type": "object", "properties": properties}
    if model.__doc__ and not model.__doc__.startswith(f"{model.__name__}("):
        result["description"] = " ".join(model.__doc__.split("\n\n")[0].split())
    if required:
        result["required"] = required
    return result


def _load_value(annotation: Any, value: Any, where: str) -> Any:
    annotation, optional = _optional(annotation)
    if value is None:
        if optional:
            return None
        raise SpecError(f"{where} is required")
    origin = get_origin(annotation)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return load(annotation, value, where=where)
    if origin is list:
        (item,) = get_args(annotation)
        if not isinstance(value, list):
            raise SpecError(f"{where} must be a list")
        return [_load_value(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = get_args(annotation)
        if not isinstance(value, Mapping):
            raise SpecError(f"{where} must be an object")
        return {k: _load_value(item, v, f"{where}.{k}") for k, v in value.items()}
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = str if origin is Literal else annotation
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise SpecError(f"{where} must be {getattr(expected, '__name__', expected)}, got {type(value).__name__}")
    return value


def load(model: type[T], data: Any, *, where: str = "spec") -> T:
    """``data`` (the object's ``spec`` as JSON) as an instance of the dataclass ``model``.

    Unknown fields are ignored (the API server prunes them); defaults fill absent fields. Raises
    :class:`SpecError` naming the first field that does not fit.
    """
    if not isinstance(data, Mapping):
        raise SpecError(f"{where} must be an object")
    hints = get_type_hints(model)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(model):  # type: ignore[arg-type]  # model is a dataclass type
        name = _camel(field.name)
        if name in data:
            values[field.name] = _load_value(hints[field.name], data[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            if _optional(hints[field.name])[1]:
                values[field.name] = None
            else:
                raise SpecError(f"{where}.{name} is required")
    return model(**values)

