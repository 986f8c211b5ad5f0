"""Pages of messages validated in one pydantic-core call (issue 15).

The driver's rows of ``SELECT qmcp_messages.*`` (SQLite: ids, the enum and the timestamp
as text, the payload as JSON text) go to pydantic-core as they are, and one call builds
the page's ``Message`` objects: it parses the payload's JSON, the ids and the timestamp,
and checks every field whose rules need no Python with ``Message``'s own field schemas
(the enum, the ``Int32`` bounds). The rules ``Message`` runs in Python then run per
message, as the same functions: the JSON payload rules and size limit on ``content``, the
UTC-millisecond rule on ``created_at`` and the model's after-validators (a broadcast has
no recipient).

A page this cannot vouch for (a row of another schema version, a value any rule refuses,
a timestamp not in the stored form) is answered ``None``: the caller then decodes it row
by row as before (``rows.message_from``), which upcasts old rows and raises the validation
error it always raised. So the messages that come out are the ones
``Message.model_validate`` makes of the same rows (docs/decisions.md, issue 15).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import SchemaValidator, core_schema

from qmcp_agents.domain import Message
from qmcp_agents.domain.clock import to_utc_ms
from qmcp_agents.domain.json_payload import MAX_MESSAGE_BYTES, check_json_object, check_message_size
from qmcp_agents.domain.upcasting import CURRENT_SCHEMA_VERSION

from . import schema

_IN_PYTHON: dict[str, Any] = {
    "content": core_schema.json_schema(core_schema.dict_schema(core_schema.str_schema())),
    "created_at": core_schema.datetime_schema(),
}
"""The fields whose Python validators :func:`_finish` runs: pydantic-core only parses them
(the payload's JSON text, the timestamp's text). Every other field is validated by its
own annotation, validators included."""

_SHORT = MAX_MESSAGE_BYTES // 20
"""A payload whose stored text has at most this many characters (52,428) is under the size
limit, so it is not measured again (docs/decisions.md, issue 15): compact JSON of a parsed
payload is at most 4.5 times as long as the text it was parsed from (only a float written
with an exponent grows: ``9e15`` -> ``9000000000000000.0``; every other token stays as long
or gets shorter) and a character is at most 4 bytes."""

COLUMNS = tuple(c.name for c in schema.messages.columns)
_CONTENT = COLUMNS.index("content")
_VERSION = COLUMNS.index("schema_version")


def _field(name: str, info: FieldInfo) -> core_schema.ModelField:
    parse = _IN_PYTHON.get(name)
    if parse is None:
        annotation: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        parse = TypeAdapter[Any](annotation).core_schema
    return core_schema.model_field(parse)


def _page_validator() -> SchemaValidator:
    decorators = Message.__pydantic_decorators__
    modes = {d.info.mode for d in decorators.model_validators.values()}
    if decorators.field_validators or modes - {"after"}:
        raise TypeError("Message has validators pages._finish does not run; update adapters/sql/pages.py")
    if set(COLUMNS) != {*Message.model_fields, "schema_version"}:
        raise TypeError("qmcp_messages columns and Message fields differ; update adapters/sql/pages.py")
    fields = core_schema.model_fields_schema(
        {name: _field(name, info) for name, info in Message.model_fields.items()},
        extra_behavior="ignore",  # schema_version, checked by messages()
    )
    return SchemaValidator(core_schema.list_schema(core_schema.model_schema(Message, fields)))


_PAGE = _page_validator()
_AFTER: tuple[Callable[[Message], Any], ...] = tuple(
    d.func for d in Message.__pydantic_decorators__.model_validators.values()
)


def messages(found: Sequence[Sequence[Any]]) -> list[Message] | None:
    """The messages of SQLite rows of ``SELECT qmcp_messages.*``, in the rows' order, or
    ``None`` if they must be decoded row by row (another schema version, or a value the
    rules refuse)."""
    short: list[bool] = []
    for row in found:
        if row[_VERSION] != CURRENT_SCHEMA_VERSION:
            return None
        text = row[_CONTENT]
        short.append(type(text) is str and len(text) <= _SHORT)
    try:
        out: list[Message] = _PAGE.validate_python([dict(zip(COLUMNS, row, strict=True)) for row in found])
        for message, measured in zip(out, short, strict=True):
            _finish(message, measured)
    except (ValidationError, ValueError):  # the rules raise ValueErrors (JsonPayloadError, ...)
        return None
    return out


def _finish(message: Message, short: bool) -> None:
    values = message.__dict__
    content = check_json_object(values["content"])
    values["content"] = content if short else check_message_size(content)
    created = values["created_at"]
    if created.tzinfo is not None:  # not the stored form (naive UTC text)
        raise ValueError("created_at carries a zone")
    # to_utc_ms of a naive value with whole milliseconds is that value in UTC
    whole = created.microsecond % 1000 == 0
    values["created_at"] = created.replace(tzinfo=UTC) if whole else to_utc_ms(created)
    for check in _AFTER:
        check(message)


__all__ = ["COLUMNS", "messages"]
