"""A separate process that appends messages to one execution (for the multi-process tests).

Usage: python -m tests.stores.append_worker URL SCHEMA|- EXECUTION_ID SENDER_ID BATCHES SIZE
       [TASKS SEED [motor]]

Without TASKS: appends BATCHES batches of SIZE messages and prints the sequence numbers it
was given, one JSON list. With TASKS: that many concurrent tasks each append BATCHES
batches of a random size from 1 to SIZE (seeded by SEED), and it prints the numbers of
each append as its own list (a JSON list of lists), so the caller can check that every
append got one contiguous block. URL may be SQL or MongoDB (``motor``: through a Motor
client instead of PyMongo's).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from qmcp_agents.adapters.mongo import MongoStore
from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.domain import MessageCreate, MessageType
from qmcp_agents.domain.ports import Store


@asynccontextmanager
async def opened(url: str, schema: str, motor: bool) -> AsyncIterator[Store]:
    if not url.startswith("mongodb"):
        async with SqlStore(url, schema=None if schema == "-" else schema) as store:
            yield store
        return
    if not motor:
        async with MongoStore.from_url(url) as mongo:
            yield mongo
        return
    from urllib.parse import urlsplit

    from motor.motor_asyncio import AsyncIOMotorClient

    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(url)
    try:
        yield MongoStore.from_database(client[urlsplit(url).path.lstrip("/")])
    finally:
        client.close()


async def append(store: Store, execution: str, sender: str, tag: str, batch: int, size: int) -> list[int]:
    drafts = [
        MessageCreate(
            sender_id=UUID(sender),
            message_type=MessageType.BROADCAST,
            content={"pid": tag, "batch": batch, "k": k},
        )
        for k in range(size)
    ]
    return [m.sequence_number for m in await store.messages.append(UUID(execution), drafts)]


async def main(argv: list[str]) -> None:
    url, schema, execution, sender, batches, size = argv[:6]
    async with opened(url, schema, argv[8:9] == ["motor"]) as store:
        if len(argv) < 8:
            numbers: list[int] = []
            for batch in range(int(batches)):
                numbers.extend(await append(store, execution, sender, sys.argv[0], batch, int(size)))
            print(json.dumps(numbers))
            return
        rng = random.Random(int(argv[7]))
        plans = [[rng.randint(1, int(size)) for _ in range(int(batches))] for _ in range(int(argv[6]))]

        async def task(number: int, sizes: list[int]) -> list[list[int]]:
            tag = f"{argv[7]}-{number}"
            return [await append(store, execution, sender, tag, b, n) for b, n in enumerate(sizes)]

        done = await asyncio.gather(*(task(i, sizes) for i, sizes in enumerate(plans)))
        print(json.dumps([block for blocks in done for block in blocks]))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
