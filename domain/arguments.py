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

import functools
from collections.abc import Callable, Sequence
from typing import Any, get_args
from uuid import UUID

from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from .base import INT32_MAX, NAME_PATTERN
from .message import Message


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


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def entity(value: Any, model: type[BaseModel], field: str) -> Any:
    """An entity argument (``add``, ``update``): an instance of its model, not a dict or
    anything else that would fail deep inside an adapter with a raw ``AttributeError``."""
    if not isinstance(value, model):
        raise invalid_argument(
            field, value, f"{field} must be a {model.__name__}, got {type(value).__name__} {_shown(value)}"
        )
    return value


def sequence(value: Any, field: str) -> Sequence[Any]:
    """A list or tuple argument (``add_many``, ``append``...): a string, a mapping or a
    single entity is refused rather than iterated."""
    if not isinstance(value, (list, tuple)):
        raise invalid_argument(
            field, value, f"{field} must be a list or tuple, got {type(value).__name__} {_shown(value)}"
        )
    return value


def _checked(method: Callable[..., Any], check: Callable[[Any], Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def run(self: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        check(value)
        return await method(self, value, *args, **kwargs)

    return run


def _holds_int(annotation: Any) -> bool:
    return annotation is int or any(_holds_int(arg) for arg in get_args(annotation))


def check_entity_arguments(repository: type, model: type[BaseModel], field: str) -> None:
    """Make ``add``/``update`` and ``add_many``/``restore_many`` of ``repository`` refuse an
    argument that is not ``model`` (or a list or tuple of them) with a ``ValidationError``
    naming ``field``, before any I/O: one rule for every backend, applied to each adapter's
    classes (ids, names and filters are checked by the other functions of this module);
    ``delete`` refuses an id of the wrong type the same way."""

    def one(value: Any) -> None:
        entity(value, model, field)

    def many(values: Any) -> None:
        for item in sequence(values, f"{field}s"):
            entity(item, model, f"{field}s[]")

    int_keyed = _holds_int(model.model_fields["id"].annotation)  # Optional[Annotated[int, ...]]

    def key(value: Any) -> None:  # delete(None) is a wrong argument, not an unknown id
        (int_id if int_keyed else uuid_id)(value, "id")

    for verb, check in (
        ("add", one),
        ("update", one),
        ("add_many", many),
        ("restore_many", many),
        ("delete", key),
    ):
        method = getattr(repository, verb, None)
        if method is not None:
            setattr(repository, verb, _checked(method, check))


def check_message_arguments(repository: type) -> None:
    """The message repository's ``append(execution_id, messages)`` takes a list or tuple of
    drafts (each validated by ``MessageCreate``) and ``restore_many`` a list of ``Message``."""
    append = repository.append  # type: ignore[attr-defined]

    @functools.wraps(append)
    async def checked_append(self: Any, execution_id: Any, messages: Any, *args: Any, **kwargs: Any) -> Any:
        uuid_id(execution_id, "execution_id")
        sequence(messages, "messages")
        return await append(self, execution_id, messages, *args, **kwargs)

    repository.append = checked_append  # type: ignore[attr-defined]
    check_entity_arguments(repository, Message, "message")


__all__ = [
    "check_entity_arguments",
    "check_message_arguments",
    "entity",
    "int_id",
    "invalid_argument",
    "name_key",
    "optional_uuid",
    "sequence",
    "uuid_id",
]
