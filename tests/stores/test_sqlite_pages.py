"""SQLite message pages validated in one pydantic-core call (issue 15) give exactly what
decoding row by row gives: the same messages, field order and types for every payload the
domain accepts, and for rows the rules refuse (or of another schema version) the same
outcome, because such a page is decoded row by row."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from qmcp_agents.adapters.sql import SqlStore, driver, pages, rows, schema
from qmcp_agents.domain import Message, MessageCreate, MessageType
from qmcp_agents.domain.json_payload import MAX_MESSAGE_BYTES, check_json_object, json_size
from qmcp_agents.testing.builders import World
from qmcp_agents.testing.strategies import json_objects

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = SqlStore(f"sqlite:///{tmp_path / 'pages.db'}")
    await store.create_schema()
    try:
        yield await World(store).build()
    finally:
        await store.close()


async def _rows(store: SqlStore, execution_id: UUID, n: int) -> list[Any]:
    statement = driver.newest_messages(store.engine.dialect)
    async with store.driver() as raw:
        found = await driver.fetch(raw, statement, {"execution_id": execution_id, "n": n})
    found.reverse()
    return found


def _row_by_row(store: SqlStore, found: list[Any]) -> list[Message]:
    decode = driver.decoder(schema.messages, store.engine.dialect)
    return [rows.message_from(decode(row)) for row in found]


def _same(fast: list[Message], slow: list[Message]) -> None:
    assert fast == slow
    assert [repr(m) for m in fast] == [repr(m) for m in slow]  # field order and value types
    for one, other in zip(fast, slow, strict=True):
        assert [type(v) for v in one.__dict__.values()] == [type(v) for v in other.__dict__.values()]
        assert one.created_at.tzinfo is UTC
        assert one.model_fields_set == other.model_fields_set


def _set(store: SqlStore, sequence_number: int, assignment: str, **values: Any) -> None:
    """Tamper with a stored row, as another tool could (foreign keys off)."""
    database = store.url.database
    assert database is not None
    with closing(sqlite3.connect(database)) as conn, conn:
        conn.execute(
            f"UPDATE qmcp_messages SET {assignment} WHERE sequence_number = :n",
            {"n": sequence_number, **values},
        )


async def _three_with_one_tampered(
    world: World, assignment: str, values: dict[str, Any]
) -> tuple[SqlStore, list[Any]]:
    """Three messages appended, the second one tampered with; the driver's rows of them."""
    store = world.store
    assert isinstance(store, SqlStore)
    for i in range(3):
        await store.messages.append(world.execution.id, [_draft(world, i)])
    _set(store, 2, assignment, **values)
    return store, await _rows(store, world.execution.id, 50)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payloads=st.lists(json_objects, min_size=1, max_size=8), directed=st.lists(st.booleans(), min_size=8))
async def test_a_page_is_the_row_by_row_decoding(
    world: World, payloads: list[dict[str, Any]], directed: list[bool]
) -> None:
    store = world.store
    assert isinstance(store, SqlStore)
    execution = await world.new_execution()
    instance = await world.new_instance(execution.id)
    drafts = [
        MessageCreate(
            sender_id=instance.id,
            recipient_id=instance.id if to_one else None,
            message_type=MessageType.REQUEST if to_one else MessageType.BROADCAST,
            content=payload,
            round_number=i,
        )
        for i, (payload, to_one) in enumerate(zip(payloads, directed, strict=False))
    ]
    written = await store.messages.append(execution.id, drafts)
    found = await _rows(store, execution.id, 100)
    fast = pages.messages(found)
    assert fast is not None
    _same(fast, _row_by_row(store, found))
    _same(await store.messages.last(execution.id, 100), fast)
    assert fast == written


async def test_an_empty_page(world: World) -> None:
    execution = await world.new_execution()
    assert pages.messages([]) == []
    assert await world.store.messages.last(execution.id, 50) == []


@pytest.mark.parametrize(
    ("assignment", "values"),
    [
        ("content = :v", {"v": "not json"}),
        ("content = :v", {"v": '{"a": NaN}'}),
        ("content = :v", {"v": '{"a": 1e400}'}),
        ("content = :v", {"v": '{"a": 123456789012345678901234567890}'}),
        ("content = :v", {"v": '{"a": "\\u0000"}'}),
        ("content = :v", {"v": '{"a": "\\ud800"}'}),
        ("content = :v", {"v": "[1, 2]"}),
        ("content = :v", {"v": "[" * 70 + "]" * 70}),
        # caught by the payload rules, not by the parse: the page's proof must see them
        ("content = :v", {"v": '{"a": ' + "[" * 70 + "]" * 70 + "}"}),
        ("content = :v", {"v": '{"a": -9223372036854775809}'}),
        ("content = :v", {"v": '{"a": -Infinity}'}),
        ("content = :v", {"v": '{"a": 1E+400}'}),
        ("content = :v", {"v": '{"a\\u0000": 1}'}),
        ("message_type = :v", {"v": "shout"}),
        ("round_number = :v", {"v": -1}),
        ("round_number = :v", {"v": 1.5}),
        ("sender_id = :v", {"v": "not a uuid"}),
        ("recipient_id = sender_id", {}),  # a broadcast with a recipient
        ("created_at = :v", {"v": "yesterday"}),
    ],
)
async def test_a_refused_row_fails_as_row_by_row(
    world: World, assignment: str, values: dict[str, Any]
) -> None:
    store, found = await _three_with_one_tampered(world, assignment, values)
    assert pages.messages(found) is None
    with pytest.raises((ValidationError, ValueError)) as slow:
        _row_by_row(store, found)
    with pytest.raises(type(slow.value)):
        await store.messages.last(world.execution.id, 50)


@pytest.mark.parametrize(
    ("assignment", "values"),
    [
        ("schema_version = 0", {}),  # an old row: upcast row by row
        ("created_at = :v", {"v": "2026-01-02 03:04:05.678999"}),  # truncated to milliseconds
        ("content = :v", {"v": '{"b": 1, "a": [1e5, -0, 1E-7], "b": "\\u00e9\\n"}'}),
        ("content = :v", {"v": '{"big": "' + "x" * (MAX_MESSAGE_BYTES // 20) + '"}'}),  # measured
        # not proven on the text (walked), and valid
        ("content = :v", {"v": '{"max": 9223372036854775807, "min": -9223372036854775808}'}),
        ("content = :v", {"v": '{"s": "NaN Infinity 1e400 \\ud83d\\ude00", "f": 1e-300}'}),
        ("content = :v", {"v": '{"l": [' + "[], " * 69 + "[]]}"}),
        ("content = :v", {"v": '{"d": ' + "[" * 60 + "]" * 60 + ', "pad": "' + "x" * 100 + '"}'}),
        # timestamps the stored form does not have, read as the row-by-row decoding reads them
        ("created_at = :v", {"v": "2026-01-02T03:04:05.678000"}),
        ("created_at = :v", {"v": "2026-01-02 05:04:05.678+02:00"}),
        ("created_at = :v", {"v": "2026-01-02"}),
    ],
)
async def test_unusual_rows_read_as_row_by_row(world: World, assignment: str, values: dict[str, Any]) -> None:
    store, found = await _three_with_one_tampered(world, assignment, values)
    _same(await store.messages.last(world.execution.id, 50), _row_by_row(store, found))


async def test_a_payload_over_the_size_limit_is_refused(world: World) -> None:
    store = world.store
    assert isinstance(store, SqlStore)
    await store.messages.append(world.execution.id, [_draft(world, 0)])
    _set(store, 1, "content = :v", v='{"big": "' + "x" * MAX_MESSAGE_BYTES + '"}')
    assert pages.messages(await _rows(store, world.execution.id, 50)) is None
    with pytest.raises(ValidationError):
        await store.messages.last(world.execution.id, 50)


def _draft(world: World, i: int) -> MessageCreate:
    return MessageCreate(
        sender_id=world.instance.id, message_type=MessageType.BROADCAST, content={"i": i, "f": 0.5}
    )


async def test_every_read_of_clean_rows_takes_the_page_path(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = world.store
    written = await store.messages.append(world.execution.id, [_draft(world, i) for i in range(5)])

    def refuse(row: Any) -> Message:
        raise AssertionError("decoded row by row")

    monkeypatch.setattr(rows, "message_from", refuse)
    assert await store.messages.last(world.execution.id, 3) == written[-3:]
    first = await store.messages.list(world.execution.id, limit=2)
    assert first.items == written[:2]
    assert first.next_cursor is not None
    rest = await store.messages.list(world.execution.id, after=first.next_cursor, sender_id=world.instance.id)
    assert rest.items == written[2:]
    assert (await store.messages.list(world.execution.id, round_number=1)).items == []
    assert await store.messages.get(written[1].id) == written[1]


# --- a hostile probe of the text proof (issue 15/16): texts crafted to slip past the scans --

_PIECES = (
    "a", "\\u0000", "\\\\u0000", "\\\\\\u0000", "\\ud800", "\\uDFFF", "\\uDbff", "\\ud83d\\ude00",
    "\\u00e9", "\\\\", "\\n", "\\/", "\\u005cu0000", "NaN", "Infinity", "\u00e9", "\x7f", "\U0001f600",
    "1e400", "1234567890123456789", "[", "{", "\\u", "\\u00", "\\",
)  # fmt: skip
_SPACE = st.sampled_from(["", " ", "\n", "\t", "\r\n"])


def _string() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(_PIECES), max_size=4).map(lambda parts: '"' + "".join(parts) + '"')


def _number() -> st.SearchStrategy[str]:
    digits = st.integers(1, 21).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n))
    exponent = st.one_of(
        st.just(""),
        st.tuples(
            st.sampled_from("eE"),
            st.sampled_from(["", "+", "-"]),
            st.text("0123456789", min_size=1, max_size=4),
        ).map("".join),
    )
    fraction = st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=20).map(lambda f: "." + f))
    return st.tuples(st.sampled_from(["", "-"]), digits, fraction, exponent).map("".join)


def _value(depth: int) -> st.SearchStrategy[str]:
    scalar = st.one_of(
        _string(), _number(), st.sampled_from(["true", "false", "null", "NaN", "-Infinity", "Infinity"])
    )
    nested = st.tuples(st.integers(0, 70), scalar).map(lambda d: "[" * d[0] + d[1] + "]" * d[0])
    if depth == 0:
        return st.one_of(scalar, nested)
    return st.one_of(
        scalar,
        nested,
        _object(depth - 1),
        st.lists(_value(depth - 1), max_size=3).map(lambda v: "[" + ",".join(v) + "]"),
    )


def _object(depth: int) -> st.SearchStrategy[str]:
    member = st.tuples(_SPACE, _string(), _SPACE, _value(depth), _SPACE).map(
        lambda p: f"{p[0]}{p[1]}{p[2]}:{p[3]}{p[4]}"
    )
    return st.lists(member, max_size=4).map(lambda m: "{" + ",".join(m) + "}")


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(_object(2), min_size=1, max_size=3))
async def test_a_crafted_payload_text_never_slips_past_the_proof(world: World, texts: list[str]) -> None:
    """Whatever the text, the page path answers what row by row answers, or hands over; and
    a text the scans call proven passes the payload rules once parsed."""
    store = world.store
    assert isinstance(store, SqlStore)
    if not await store.messages.count(world.execution.id):
        await store.messages.append(world.execution.id, [_draft(world, i) for i in range(3)])
    template = await _rows(store, world.execution.id, 3)
    at = pages.COLUMNS.index("content")
    found = [(*row[:at], text, *row[at + 1 :]) for row, text in zip(template, texts, strict=False)]
    fast = pages.messages(found)
    try:
        slow = _row_by_row(store, found)
    except (ValidationError, ValueError):
        assert fast is None
        slow = None
    if fast is not None:
        assert slow is not None
        _same(fast, slow)
    for text in texts:
        if pages._proven([text]):
            try:
                parsed = json.loads(text)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                check_json_object(parsed)
                assert json_size(parsed) <= 20 * len(text)
