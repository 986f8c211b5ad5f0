"""JSON payload rules shared by every free-form field.

A payload is accepted only if every backend can store it and hand back an *equal* value:
str keys; ``None``, ``bool``, ``int`` in the signed 64-bit range (BSON and PostgreSQL
``bigint`` stop there), finite ``float`` (JSON has no NaN or infinity), ``str``, ``list``
and ``dict``; no NUL character in any string or key (PostgreSQL JSONB refuses it) and at
most :data:`MAX_DEPTH` levels of nesting (BSON documents stop at 100 levels, and the
store wraps the payload in a few of its own). Tuples, sets, bytes, datetimes and other
Python objects are refused rather than silently converted, because they would not read
back as what was written.

Validation copies the value while walking it, so a model never shares a mutable payload
with its caller.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import PlainValidator

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_DEPTH = 64

JsonValue = Any
"""A value accepted by :func:`check_json`; typed as ``Any`` because JSON is recursive."""


class JsonPayloadError(ValueError):
    """A payload is not a JSON value; the message names the path and the value."""


def _where(path: str) -> str:
    return path or "$"


def check_json(value: Any, path: str = "", depth: int = 0) -> Any:
    """Return a fresh copy of ``value`` if it is a JSON value per the rules above."""
    if depth > MAX_DEPTH:
        raise JsonPayloadError(f"{_where(path)}: nested deeper than {MAX_DEPTH} levels")
    if value is None or value is True or value is False:
        return value
    kind = type(value)
    if kind is str:
        if "\x00" in value:
            raise JsonPayloadError(f"{_where(path)}: string contains a NUL character: {value!r}")
        return value
    if kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise JsonPayloadError(f"{_where(path)}: integer {value} is outside the signed 64-bit range")
        return value
    if kind is float:
        if not math.isfinite(value):
            raise JsonPayloadError(f"{_where(path)}: float {value!r} is not finite")
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                raise JsonPayloadError(f"{_where(path)}: key {key!r} is not a string")
            if "\x00" in key:
                raise JsonPayloadError(f"{_where(path)}: key {key!r} contains a NUL character")
            out[key] = check_json(item, f"{path}[{key!r}]" if path else f"$[{key!r}]", depth + 1)
        return out
    if kind is list:
        base = path or "$"
        return [check_json(item, f"{base}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise JsonPayloadError(
        f"{_where(path)}: {kind.__name__} value {value!r} is not a JSON value "
        "(use None, bool, int, float, str, list or dict)"
    )


def check_json_object(value: Any) -> dict[str, Any]:
    """Like :func:`check_json`, but the top level must be an object."""
    if not isinstance(value, dict):
        raise JsonPayloadError(f"$: expected a JSON object, got {type(value).__name__} {value!r}")
    result: dict[str, Any] = check_json(value)
    return result


JsonObject = Annotated[dict[str, Any], PlainValidator(check_json_object)]
"""A field holding a JSON object (the specification's ``dict[str, Any]`` payloads)."""

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_DEPTH",
    "JsonObject",
    "JsonPayloadError",
    "JsonValue",
    "check_json",
    "check_json_object",
]
