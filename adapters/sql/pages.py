"""Pages of messages read as one JSON array and validated in one pydantic-core call (issue 15).

SQLite builds the page itself: one row holding a JSON array with one object per message
(``json_group_array``), the page's lowest and highest ``schema_version`` and the length of
its longest stored payload. One pydantic-core call parses that text and builds the
``Message`` objects, checking every field whose rules need no Python (ids, the enum, the
``Int32`` bounds, the timestamp's syntax) with ``Message``'s own field schemas. The rules
``Message`` runs in Python then run per message, as the same functions: the JSON payload
rules and size limit on ``content``, the UTC-millisecond rule on ``created_at`` and the
model's after-validators (a broadcast has no recipient).

A page this cannot vouch for (a row of another schema version, a value any rule refuses,
a timestamp not in the stored form) is answered ``None``: the caller reads it again row by
row (``rows.message_from``), which upcasts old rows and raises the validation error it
always raised. So the messages that come out are the ones ``Message.model_validate``
makes of the same rows (docs/decisions.md, issue 15).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import SchemaValidator, core_schema
from sqlalchemy import Dialect, Integer, LargeBinary, bindparam, func, literal_column, select

from qmcp_agents.domain import Message
from qmcp_agents.domain.clock import to_utc_ms
from qmcp_agents.domain.json_payload import MAX_MESSAGE_BYTES, check_json_object, check_message_size
from qmcp_agents.domain.upcasting import CURRENT_SCHEMA_VERSION

from . import schema
from .driver import Statement, compile_statement

_IN_PYTHON: dict[str, Any] = {"content": dict[str, Any], "created_at": datetime}
"""The fields whose Python validators :func:`_finish` runs; pydantic-core checks only their
type. Every other field is validated by its own annotation, validators included."""

_GROWTH = 5
"""How much longer a payload can get written as compact JSON than the JSON text it was
read from (docs/decisions.md, issue 15): only a float written with an exponent grows, at
most 4.5 times (``9e15`` -> ``9000000000000000.0``); every other token stays as long or
gets shorter. So no payload of a page whose longest stored payload is at most
``MAX_MESSAGE_BYTES / 5`` bytes can be over the limit, and there they are not measured."""


def _field(name: str, info: FieldInfo) -> core_schema.ModelField:
    annotation: Any = _IN_PYTHON.get(name)
    if annotation is None:
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return core_schema.model_field(TypeAdapter[Any](annotation).core_schema)


def _page_validator() -> SchemaValidator:
    decorators = Message.__pydantic_decorators__
    modes = {d.info.mode for d in decorators.model_validators.values()}
    if decorators.field_validators or modes - {"after"}:
        raise TypeError("Message has validators pages._finish does not run; update adapters/sql/pages.py")
    fields = core_schema.model_fields_schema(
        {name: _field(name, info) for name, info in Message.model_fields.items()}, extra_behavior="forbid"
    )
    model = core_schema.model_schema(Message, fields, extra_behavior="forbid")
    return SchemaValidator(core_schema.list_schema(model))


_PAGE = _page_validator()
_AFTER: tuple[Callable[[Message], Any], ...] = tuple(
    d.func for d in Message.__pydantic_decorators__.model_validators.values()
)


@cache
def newest(dialect: Dialect) -> Statement:
    """The newest ``n`` messages of an execution as one JSON array (SQLite)."""
    m = schema.messages
    rows = (
        select(m)
        .where(m.c.execution_id == bindparam("execution_id", type_=m.c.execution_id.type))
        .order_by(m.c.sequence_number.desc())
        .limit(bindparam("n", type_=Integer()))
        .subquery()
    )
    pairs: list[Any] = []
    for name in Message.model_fields:
        column: Any = rows.c[name]
        if name == "content":  # text that is not JSON becomes null, which the schema refuses
            column = func.iif(func.json_valid(column), func.json(column), None)
        pairs += [literal_column(f"'{name}'"), column]
    page = select(
        func.json_group_array(func.json_object(*pairs)),
        func.min(rows.c.schema_version),
        func.max(rows.c.schema_version),
        func.max(func.length(func.cast(rows.c.content, LargeBinary))),
    )
    return compile_statement(page, dialect)


def messages(found: Sequence[Sequence[Any]]) -> list[Message] | None:
    """The messages of a page in sequence order, or ``None`` if they must be read row by
    row (another schema version, or a value the rules refuse)."""
    text, lowest, highest, longest = found[0]
    if lowest is None:
        return []
    if lowest != CURRENT_SCHEMA_VERSION or highest != CURRENT_SCHEMA_VERSION:
        return None
    measure = longest * _GROWTH > MAX_MESSAGE_BYTES
    try:
        out: list[Message] = _PAGE.validate_json(text)
        for message in out:
            _finish(message, measure)
    except (ValidationError, ValueError):  # the rules raise ValueErrors (JsonPayloadError, ...)
        return None
    out.sort(key=_sequence)  # SQLite does not promise an aggregate's order
    return out


def _finish(message: Message, measure: bool) -> None:
    values = message.__dict__
    content = check_json_object(values["content"])
    values["content"] = check_message_size(content) if measure else content
    created = values["created_at"]
    if created.tzinfo is not None:  # not the stored form (naive UTC text)
        raise ValueError("created_at carries a zone")
    # to_utc_ms of a naive value with whole milliseconds is that value in UTC
    whole = created.microsecond % 1000 == 0
    values["created_at"] = created.replace(tzinfo=UTC) if whole else to_utc_ms(created)
    for check in _AFTER:
        check(message)


def _sequence(message: Message) -> int:
    return message.sequence_number


__all__ = ["messages", "newest"]
