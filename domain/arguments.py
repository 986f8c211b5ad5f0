"""Checks on the plain arguments of repository calls (ids, names), before any I/O.

Entities are validated by their models; the ids and names passed to ``get``, ``find``,
``delete``, ``find_by_name`` and the like are not, and each backend used to react to a
wrong one in its own way (a string UUID found on PostgreSQL, ``NotFound`` on memory, a raw
``StatementError`` on SQLite; ``{"$gt": 1}`` reaching MongoDB as an operator). Every
adapter calls these first, so a wrong argument is the same named ``ValidationError`` on
every backend and never reaches a driver. They are type checks, cheap enough for every
call.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from .base import INT32_MAX, NAME_PATTERN


def invalid_argument(field: str, value: Any, problem: str) -> ValidationError:
    """A ``ValidationError`` naming the argument ``field`` and its value."""
    detail: InitErrorDetails = {
        "type": PydanticCustomError("invalid_argument", "{problem}", {"problem": problem}),
        "loc": (field,),
        "input": value,
    }
    return ValidationError.from_exception_data("arguments", [detail])


def int_id(value: Any, field: str = "id") -> int:
    """An id of an agent type, topology or membership: an ``int`` from 1 to 2**31 - 1."""
    if type(value) is not int:
        raise invalid_argument(field, value, f"{field} must be an int, got {type(value).__name__} {value!r}")
    if not 1 <= value <= INT32_MAX:
        raise invalid_argument(field, value, f"{field} must be from 1 to {INT32_MAX}, got {value}")
    return value


def uuid_id(value: Any, field: str = "id") -> UUID:
    """An id of an instance, execution, message or result: a ``uuid.UUID`` (not its string)."""
    if not isinstance(value, UUID):
        raise invalid_argument(field, value, f"{field} must be a UUID, got {type(value).__name__} {value!r}")
    return value


def optional_uuid(value: Any, field: str) -> UUID | None:
    return None if value is None else uuid_id(value, field)


def name_key(value: Any) -> str | None:
    """The stored form of a name looked up, or ``None`` if no stored name can equal it.

    Names are ASCII (``"\\u212aELVIN".lower()`` is ``"kelvin"``, but the Kelvin sign is not
    the letter K), so a string that is not a valid name matches nothing, on every backend,
    without a query. A value that is not a string is a ``ValidationError``.
    """
    if type(value) is not str:
        raise invalid_argument("name", value, f"name must be a str, got {type(value).__name__} {value!r}")
    if not value.isascii():
        return None
    lowered = value.lower()
    return lowered if NAME_PATTERN.fullmatch(lowered) else None


__all__ = ["int_id", "invalid_argument", "name_key", "optional_uuid", "uuid_id"]
