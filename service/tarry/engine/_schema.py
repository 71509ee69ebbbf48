"""Schemas are pydantic models; this module validates JSON data against them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from tarry import _json

from ._errors import FieldViolation

JSON = Any
"""A JSON value: dict, list, str, int, float, bool or None."""


def violations(exc: ValidationError, prefix: str = "") -> list[FieldViolation]:
    """Turn pydantic's errors into field violations with dotted paths."""
    out = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        field = ".".join(p for p in (prefix, path) if p)
        out.append(FieldViolation(field=field or prefix or "(root)", description=err["msg"]))
    return out


def validate(schema: type[BaseModel] | None, data: JSON) -> JSON:
    """Validate `data` and return it as plain JSON (defaults filled in).

    Strictly, as JSON: what the published JSON Schema refuses is refused (no `"yes"` or `1`
    for a boolean, no `"1.5"` for a number), while what JSON can only carry as text (dates,
    UUIDs, enum values) is read from its text as the schema describes it.
    Raises pydantic's ValidationError; callers decide which domain error it becomes.
    """
    if schema is None:
        return data
    model = schema.model_validate_json(_json.dumps(data), strict=True)
    return model.model_dump(mode="json", by_alias=True)


def to_json(value: Any) -> JSON:
    """Plain JSON from what a step returns (pydantic models are dumped)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"value of type {type(value).__name__} is not JSON")


def json_schema(schema: type[BaseModel] | None) -> dict[str, Any] | None:
    return None if schema is None else schema.model_json_schema()
