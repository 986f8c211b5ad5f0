"""The in-memory store hands out messages that share no mutable object with what it holds.

It copies a message's content along a plan of where its containers are, made when the
message is written (adapters/memory/store.py). White-box: for any JSON content, no dict
or list of a message handed out (by append, last, list or get) is one the store holds, and
emptying every one of them leaves the store unchanged. The conformance suite checks the
same from the outside on every backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings

from qmcp_agents.adapters.memory import MemoryStore
from qmcp_agents.domain import Message
from qmcp_agents.testing.builders import World, message
from qmcp_agents.testing.strategies import json_objects


def containers(value: Any) -> Iterator[Any]:
    """Every dict and list in a JSON value, ``value`` included."""
    if isinstance(value, dict | list):
        yield value
        for item in value.values() if isinstance(value, dict) else value:
            yield from containers(item)


async def check_copies(content: dict[str, Any]) -> None:
    store = MemoryStore()
    world = await World(store).build()
    execution_id = world.execution.id
    (sent,) = await store.messages.append(execution_id, [message(world.instance.id, content)])
    held, _ = store._state.messages[sent.id]
    held_ids = {id(c) for c in containers(held.content)} | {id(held.model_fields_set)}
    reads: list[Message] = [
        sent,
        (await store.messages.last(execution_id, 50))[0],
        (await store.messages.list(execution_id)).items[0],
        await store.messages.get(sent.id),
    ]
    for read in reads:
        assert read == held
        assert read is not held
        assert read.content == content
        own = [*containers(read.content), read.model_fields_set]
        assert not {id(c) for c in own} & held_ids
        for container in own:
            container.clear()
    assert (await store.messages.get(sent.id)).content == content


@settings(max_examples=200, deadline=None)
@given(content=json_objects)
def test_messages_handed_out_share_no_container_with_the_store(content: dict[str, Any]) -> None:
    asyncio.run(check_copies(content))


def test_deep_and_wide_contents_are_copied_whole() -> None:
    deep: dict[str, Any] = {"leaf": [1]}
    for depth in range(60):
        deep = {"level": depth, "next": deep, "siblings": [[], {}, [{"x": [depth]}]]}
    wide = {"items": [{"i": i, "tags": ["t"] * 3} for i in range(500)], "flat": list(range(1000))}
    for content in (deep, wide, {}, {"only": "scalars", "n": 1, "f": 1.5, "b": None}):
        asyncio.run(check_copies(content))
