"""The fast path for appending messages: rows straight to the driver, or COPY.

Everything here is about speed and nothing about rules: the drafts were validated by the
store before they get here, and each value is converted by its column type's own bind
processor, so the stored bytes are exactly what a Core ``insert`` would have stored.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from sqlalchemy import Dialect, insert

from qmcp_agents.domain import Message
from qmcp_agents.domain.upcasting import CURRENT_SCHEMA_VERSION

from . import jsonb
from .schema import messages

COPY_MIN_ROWS = 64
"""Below this many rows a plain insert beats setting up a COPY on PostgreSQL."""

COLUMNS = [
    "id",
    "execution_id",
    "sender_id",
    "recipient_id",
    "message_type",
    "content",
    "round_number",
    "sequence_number",
    "created_at",
    "revision",
    "schema_version",
]


def row_dict(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "execution_id": message.execution_id,
        "sender_id": message.sender_id,
        "recipient_id": message.recipient_id,
        "message_type": message.message_type.value,
        "content": message.content,
        "round_number": message.round_number,
        "sequence_number": message.sequence_number,
        "created_at": message.created_at,
        "revision": 1,
        "schema_version": CURRENT_SCHEMA_VERSION,
    }


@cache
def insert_sql(dialect: Dialect) -> str:
    return str(insert(messages).compile(dialect=dialect, column_keys=COLUMNS))


def _processor(dialect: Dialect, column: str) -> Callable[[Any], Any]:
    kind = messages.c[column].type.dialect_impl(dialect)
    process = kind.bind_processor(dialect)
    return process if process is not None else (lambda value: value)


def driver_rows(dialect: Dialect, batch: list[Message]) -> list[tuple[Any, ...]]:
    """Positional rows for the driver's ``executemany``, converted like Core would."""
    to_uuid = _processor(dialect, "id")
    to_json = _processor(dialect, "content")
    to_time = _processor(dialect, "created_at")
    cache: dict[Any, Any] = {None: None}

    def ref(value: Any) -> Any:
        if value not in cache:
            cache[value] = to_uuid(value)
        return cache[value]

    times: dict[Any, Any] = {}

    def when(value: Any) -> Any:  # an append shares one timestamp; a restore may not
        if value not in times:
            times[value] = to_time(value)
        return times[value]

    return [
        (
            to_uuid(m.id),
            ref(m.execution_id),
            ref(m.sender_id),
            ref(m.recipient_id),
            m.message_type.value,
            to_json(m.content),
            m.round_number,
            m.sequence_number,
            when(m.created_at),
            1,
            CURRENT_SCHEMA_VERSION,
        )
        for m in batch
    ]


def copy_records(batch: list[Message]) -> list[tuple[Any, ...]]:
    """Records for asyncpg's binary COPY (JSONB as JSON text, exact for floats)."""
    return [
        (
            m.id,
            m.execution_id,
            m.sender_id,
            m.recipient_id,
            m.message_type.value,
            jsonb.dumps(m.content),
            m.round_number,
            m.sequence_number,
            m.created_at,
            1,
            CURRENT_SCHEMA_VERSION,
        )
        for m in batch
    ]
