"""Pages of messages validated in one pydantic-core call (issue 15).

The driver's rows of ``SELECT qmcp_messages.*`` (SQLite: ids, the enum and the timestamp
as text, the payload as JSON text) go to pydantic-core as they are, and one call builds
the page's ``Message`` objects: it parses the payload's JSON and the ids, and checks every
field whose rules need no Python with ``Message``'s own field schemas (the enum, the
``Int32`` bounds). The timestamp is parsed as the row-by-row decoding parses it
(``datetime.fromisoformat``, as SQLAlchemy's SQLite type does), read as UTC and truncated
to milliseconds (``to_utc_ms``; the stored form already is). The payload rules
(``check_json_object``) are proven on the page's text where they can be (:func:`_proven`)
and run on the parsed payloads otherwise; the size limit is measured for long payloads;
the model's after-validators (a broadcast has no recipient) run on every message.

A page this cannot vouch for (a row of another schema version, a value any rule refuses,
a timestamp not in the stored form) is answered ``None``: the caller then decodes it row
by row as before (``rows.message_from``), which upcasts old rows and raises the validation
error it always raised. So the messages that come out are the ones
``Message.model_validate`` makes of the same rows (docs/decisions.md, issue 15).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import SchemaValidator, core_schema

from qmcp_agents.domain import Message
from qmcp_agents.domain.clock import to_utc_ms
from qmcp_agents.domain.json_payload import (
    MAX_DEPTH,
    MAX_MESSAGE_BYTES,
    check_json_object,
    check_message_size,
)
from qmcp_agents.domain.upcasting import CURRENT_SCHEMA_VERSION

from . import schema

_IN_PYTHON: dict[str, Any] = {
    "content": core_schema.json_schema(core_schema.dict_schema(core_schema.str_schema())),
    "created_at": core_schema.is_instance_schema(datetime),
}
"""The fields whose Python validators :func:`messages` runs: pydantic-core only parses the
payload's JSON text and takes the timestamp :func:`messages` made. Every other field is
validated by its own annotation, validators included."""

_SHORT = MAX_MESSAGE_BYTES // 20
"""A payload whose stored text has at most this many characters (52,428) is under the size
limit, so it is not measured again (docs/decisions.md, issue 15): compact JSON of a parsed
payload is at most 4.5 times as long as the text it was parsed from (only a float written
with an exponent grows: ``9e15`` -> ``9000000000000000.0``; every other token stays as long
or gets shorter) and a character is at most 4 bytes."""

COLUMNS = tuple(c.name for c in schema.messages.columns)
_CONTENT = COLUMNS.index("content")
_VERSION = COLUMNS.index("schema_version")
_CREATED = COLUMNS.index("created_at")
_UTC = "+00:00"
"""Appended to the stored timestamp (naive UTC text): ``fromisoformat`` then gives the
value in ``datetime.UTC`` (its zero offset is that object) in one C call, and refuses a
text that carries a zone already (such a page goes row by row)."""


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
        raise TypeError("Message has validators pages.messages does not run; update adapters/sql/pages.py")
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
    if {row[_VERSION] for row in found} - {CURRENT_SCHEMA_VERSION}:
        return None
    texts = [row[_CONTENT] for row in found]
    page = [dict(zip(COLUMNS, row, strict=True)) for row in found]
    try:
        stamps = [datetime.fromisoformat(row[_CREATED] + _UTC) for row in found]
        for values, created in zip(page, stamps, strict=True):
            if created.tzinfo is not UTC:  # "2026-01-02+00:00" parses, naive
                return None
            # to_utc_ms of a UTC value with whole milliseconds is that value
            values["created_at"] = to_utc_ms(created) if created.microsecond % 1000 else created
        out: list[Message] = _PAGE.validate_python(page)
        proven = _proven(texts)  # then every text is a str
        if not proven:
            for message in out:
                values = message.__dict__
                values["content"] = check_json_object(values["content"])
        if not proven or max(map(len, texts), default=0) > _SHORT:
            for message, text in zip(out, texts, strict=True):
                if type(text) is not str or len(text) > _SHORT:
                    check_message_size(message.content)
        for check in _AFTER:
            for message in out:
                check(message)
    except (ValidationError, ValueError, TypeError):  # the rules raise ValueErrors (JsonPayloadError, ...)
        return None
    return out


_ESCAPES = ("\\u0000", "\\ud", "\\uD")
_NUMBERS = bytes.maketrans(b"0123456789E", b"0000000000e")
_SIGNS = b"+-"
_RUN = b"0" * 19
_FLAT = 2 * (MAX_DEPTH + 2) - 1
"""A text this short (131 characters) cannot nest deeper than ``MAX_DEPTH``: the payload is
refused from 66 nested containers on (depths 0 to 65), two characters each at least."""


def _proven(texts: list[Any]) -> bool:
    """Whether every payload text is one that, once parsed as a JSON object (by the page's
    validator), passes ``check_json_object``: proven on the text, page-wide, with a few
    scans in C instead of a walk of every parsed payload in Python (docs/decisions.md,
    issue 15). ``False`` means "not proven" (the payloads are then walked as before):

    - every text is ASCII with no NUL, no ``\\u0000`` and no ``\\ud``/``\\uD`` escape:
      no string or key can hold a NUL or a lone surrogate (an ASCII text is all code
      points below 128, and escapes are the only other way to write a character);
    - no ``NaN``, ``Infinity``, no 19 digits in a row and no exponent of three digits: every
      integer has at most 18 digits (inside the signed 64-bit range) and every float is
      finite (a float overflows only from about ``1e308``, which needs 19 or more digits or
      a three-digit exponent);
    - a text longer than :data:`_FLAT` has at most ``MAX_DEPTH`` opening brackets.

    Every test over-approximates (a string holding ``"NaN"`` or 19 digits is walked too),
    so a payload the rules refuse is never taken as proven."""
    try:
        joined = "\n".join(texts)  # a separator, so no tell spans two texts
    except TypeError:  # a payload that is not text
        return False
    if not joined.isascii() or "\x00" in joined or "NaN" in joined or "Infinity" in joined:
        return False
    if "\\" in joined:  # escapes (memchr: the usual page has none, and skips these)
        for escape in _ESCAPES:
            if escape in joined:
                return False
    # digits as 0, E as e, signs dropped: "1E+400" -> "0e000"; dropping a sign only joins
    # digit runs, so the test over-approximates
    numbers = joined.encode("ascii").translate(_NUMBERS, _SIGNS)
    if _RUN in numbers or b"e000" in numbers:
        return False
    if max(map(len, texts), default=0) <= _FLAT:
        return True
    return all(len(text) <= _FLAT or text.count("{") + text.count("[") <= MAX_DEPTH for text in texts)


__all__ = ["COLUMNS", "messages"]
