"""JSON payload rules shared by every free-form field.

A payload is accepted only if every backend can store it and hand back an *equal* value:
str keys; ``None``, ``bool``, ``int`` in the signed 64-bit range (BSON and PostgreSQL
``bigint`` stop there), finite ``float`` (JSON has no NaN or infinity), ``str``, ``list``
and ``dict``; no NUL character in any string or key (PostgreSQL JSONB refuses it), no lone
surrogate (not Unicode text: PostgreSQL refuses it, SQLite merges a pair into one
character) and at
most :data:`MAX_DEPTH` levels of nesting (BSON documents stop at 100 levels, and the
store wraps the payload in a few of its own). Tuples, sets, bytes, datetimes and other
Python objects are refused rather than silently converted, because they would not read
back as what was written.

Validation copies the value while walking it, so a model never shares a mutable payload
with its caller.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import PlainValidator

from .base import has_lone_surrogate

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_DEPTH = 64
MAX_MESSAGE_BYTES = 1_048_576
"""The largest message ``content``: 1 MiB as compact UTF-8 JSON, on every backend.

The narrowest backend is MongoDB (16 MiB per document). BSON can take about 6.5 times the
JSON size (an array of small ints: two JSON bytes, thirteen BSON bytes per element), so a
content of at most 1 MiB of JSON always fits in one document with room to spare, and a
message the domain accepts is one every backend stores. Checked when the message is
validated, before any I/O, as a ``ValidationError`` naming ``content``."""

JsonValue = Any
"""A value accepted by :func:`check_json`; typed as ``Any`` because JSON is recursive."""


class JsonPayloadError(ValueError):
    """A payload is not a JSON value; the message names the path and the value."""


class _Bad(Exception):
    """A rule broken somewhere below; carries the path from there up to here."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem

    def under(self, step: str) -> _Bad:
        return _Bad(step + self.path, self.problem)


def _check_scalar(value: Any) -> Any:
    """``value`` itself if it is an allowed JSON scalar; raises ``_Bad`` if not allowed; returns
    ``_CONTAINER`` for lists and dicts (checked by the caller)."""
    kind = type(value)
    if kind is str:
        if "\x00" in value:
            raise _Bad("", f"string contains a NUL character: {value!r}")
        if not value.isascii() and has_lone_surrogate(value):
            raise _Bad("", f"string contains a lone surrogate: {value!r}")
        return value
    if kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise _Bad("", f"integer {value} is outside the signed 64-bit range")
        return value
    if kind is float:
        if value - value != 0.0:  # NaN and infinities
            raise _Bad("", f"float {value!r} is not finite")
        return value
    if value is None or kind is bool:
        return value
    if kind is dict or kind is list or isinstance(value, dict):
        return _CONTAINER
    allowed = "None, bool, int, float, str, list or dict"
    raise _Bad("", f"{kind.__name__} value {value!r} is not a JSON value (use {allowed})")


_CONTAINER = object()


def _check(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise _Bad("", f"nested deeper than {MAX_DEPTH} levels")
    if type(value) is list:
        items = []
        for index, item in enumerate(value):
            checked = _check_scalar(item)
            if checked is _CONTAINER:
                try:
                    checked = _check(item, depth + 1)
                except _Bad as bad:
                    raise bad.under(f"[{index}]") from None
            items.append(checked)
        return items
    out: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str:
            raise _Bad("", f"key {key!r} is not a string")
        if "\x00" in key:
            raise _Bad("", f"key {key!r} contains a NUL character")
        if not key.isascii() and has_lone_surrogate(key):
            raise _Bad("", f"key {key!r} contains a lone surrogate")
        try:
            checked = _check_scalar(item)
            if checked is _CONTAINER:
                checked = _check(item, depth + 1)
        except _Bad as bad:
            raise bad.under(f"[{key!r}]") from None
        out[key] = checked
    return out


def check_json(value: Any) -> Any:
    """Return a fresh copy of ``value`` if it is a JSON value per the rules above.

    Raises :class:`JsonPayloadError` naming the path (``$['a'][0]``) and the value.
    """
    try:
        checked = _check_scalar(value)
        return _check(value, 0) if checked is _CONTAINER else checked
    except _Bad as bad:
        raise JsonPayloadError(f"${bad.path}: {bad.problem}") from None


_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""What ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))`` uses, made once:
``dumps`` with any non-default option builds a new encoder per call (issue 15)."""


def json_size(value: Any) -> int:
    """The size in bytes of ``value`` as compact UTF-8 JSON (the measure of
    :data:`MAX_MESSAGE_BYTES`)."""
    text = _COMPACT.encode(value)
    return len(text) if text.isascii() else len(text.encode())


def check_message_size(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` if it is at most :data:`MAX_MESSAGE_BYTES` as JSON (an already checked
    JSON object, so every string is valid text)."""
    size = json_size(value)
    if size > MAX_MESSAGE_BYTES:
        raise JsonPayloadError(
            f"$: message content is {size:,} bytes as JSON; the limit is {MAX_MESSAGE_BYTES:,} "
            "(store large data elsewhere and reference it)"
        )
    return value


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
    "MAX_MESSAGE_BYTES",
    "check_json",
    "check_json_object",
    "check_message_size",
    "json_size",
]
