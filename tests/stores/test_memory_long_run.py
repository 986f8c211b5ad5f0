"""A 10,000-turn run on the in-memory store: one message per turn, the newest 50 read back
each turn (what an agent loop does). Reads copy only containers, so this takes seconds; it
checks numbering and contents, not time (benchmarks measure time)."""

from __future__ import annotations

import pytest

from qmcp_agents.adapters.memory import MemoryStore
from qmcp_agents.testing.builders import World, message

pytestmark = pytest.mark.asyncio


async def test_ten_thousand_turns_number_and_read_back() -> None:
    store = MemoryStore()
    world = await World(store).build()
    execution_id, sender = world.execution.id, world.instance.id
    for turn in range(10_000):
        (sent,) = await store.messages.append(execution_id, [message(sender, {"turn": turn})])
        assert sent.sequence_number == turn + 1
        context = await store.messages.last(execution_id, 50)
        assert context[-1].id == sent.id
        assert context[0].content == {"turn": max(0, turn - 49)}
    assert await store.messages.count(execution_id) == 10_000
    page = await store.messages.list(execution_id, limit=3, after="9997")
    assert [m.content["turn"] for m in page.items] == [9997, 9998, 9999]
