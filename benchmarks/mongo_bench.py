"""MongoDB benchmark: client-process CPU per message, store append versus raw insert_many.

The test server runs in another process and dominates wall time, so the figure that says
something about the adapter is the CPU this process spends per document
(``time.process_time``): validation, escaping, BSON encoding and the driver's own work.
The baseline inserts equivalent documents (one per message, same fields, payload as a
native sub-document) with PyMongo's ``insert_many`` in the same run, against the same server.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pymongo import AsyncMongoClient

from qmcp_agents.adapters.mongo import MongoStore
from qmcp_agents.adapters.mongo.store import INDEXES
from qmcp_agents.domain import MessageCreate, MessageType, utc_now, uuid7
from qmcp_agents.testing.builders import World

from .sql_bench import Figure, payload


async def raw_insert_many(url: str, total: int, batch: int) -> float:
    """CPU seconds per document for PyMongo's insert_many of plain message documents."""
    name = f"qmcp_bench_raw_{uuid.uuid4().hex[:8]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        url, tz_aware=True, uuidRepresentation="standard"
    )
    try:
        collection = client[name]["messages"]
        execution_id, sender_id = uuid7(), uuid7()
        start = time.process_time()
        for offset in range(0, total, batch):
            now = utc_now()
            await collection.insert_many(
                [
                    {
                        "_id": uuid7(),
                        "execution_id": execution_id,
                        "sender_id": sender_id,
                        "recipient_id": None,
                        "message_type": "broadcast",
                        "content": payload(i),
                        "round_number": 0,
                        "sequence_number": i + 1,
                        "created_at": now,
                    }
                    for i in range(offset, offset + batch)
                ]
            )
        return (time.process_time() - start) / total
    finally:
        await client.drop_database(name)
        await client.close()


async def store_append(url: str, total: int, batch: int) -> float:
    """CPU seconds per message for ``store.messages.append`` (drafts as dicts, validated by the store)."""
    store = MongoStore.from_url(url, database=f"qmcp_bench_{uuid.uuid4().hex[:8]}")
    try:
        await store.create_schema()
        world = await World(store).build()
        start = time.process_time()
        for offset in range(0, total, batch):
            drafts: list[Any] = [
                {"sender_id": world.instance.id, "message_type": "broadcast", "content": payload(i)}
                for i in range(offset, offset + batch)
            ]
            await store.messages.append(world.execution.id, drafts)
        return (time.process_time() - start) / total
    finally:
        await store.drop_schema()
        await store.client.drop_database(store.database.name)
        await store.close()


async def bench_mongo(url: str, total: int, batch: int, rounds: int = 3) -> list[Figure]:
    """Alternate baseline and store ``rounds`` times and keep each side's best, so that a
    burst of load on the shared machine does not land on one side only."""
    raws, ours_all = [], []
    for _ in range(rounds):
        raws.append(await raw_insert_many(url, total, batch))
        ours_all.append(await store_append(url, total, batch))
    raw, ours = min(raws), min(ours_all)
    name = f"append {total:,} messages in batches of {batch}, client CPU per message"
    return [Figure("mongodb", name, ours * 1e6, raw * 1e6, "raw PyMongo insert_many", "µs")]


async def raw_insert_one(url: str, total: int, indexed: bool = False) -> float:
    """CPU seconds per call for PyMongo's ``insert_one`` of one message document; with
    ``indexed``, into a collection with the adapter's message indexes (on the test server
    the client's CPU per call grows with the server's time per insert, which they lengthen)."""
    name = f"qmcp_bench_raw_{uuid.uuid4().hex[:8]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        url, tz_aware=True, uuidRepresentation="standard"
    )
    try:
        collection = client[name]["messages"]
        if indexed:
            await collection.create_indexes(INDEXES["messages"])
        execution_id, sender_id = uuid7(), uuid7()
        await collection.insert_one({"_id": uuid7(), "items": [{"id": uuid7()}]})  # connect outside
        start = time.process_time()
        for i in range(total):
            document: dict[str, Any] = {
                "_id": uuid7(),
                "execution_id": execution_id,
                "sender_id": sender_id,
                "recipient_id": None,
                "message_type": "broadcast",
                "content": payload(i),
                "round_number": 0,
                "sequence_number": i + 1,
                "created_at": utc_now(),
            }
            if indexed:  # what the unique indexes need: a position and an item id
                document.update(first=i + 1, items=[{"id": document["_id"]}])
            await collection.insert_one(document)
        return (time.process_time() - start) / total
    finally:
        await client.drop_database(name)
        await client.close()


async def store_append_one(url: str, total: int) -> float:
    """CPU seconds per ``store.messages.append`` of one message (a ``MessageCreate``)."""
    store = MongoStore.from_url(url, database=f"qmcp_bench_{uuid.uuid4().hex[:8]}")
    try:
        await store.create_schema()
        world = await World(store).build()
        start = time.process_time()
        for i in range(total):
            draft = MessageCreate(
                sender_id=world.instance.id, message_type=MessageType.BROADCAST, content=payload(i)
            )
            await store.messages.append(world.execution.id, [draft])
        return (time.process_time() - start) / total
    finally:
        await store.drop_schema()
        await store.client.drop_database(store.database.name)
        await store.close()


async def bench_mongo_single(url: str, total: int, rounds: int = 3) -> list[Figure]:
    raws, indexed_all, ours_all = [], [], []
    for _ in range(rounds):
        raws.append(await raw_insert_one(url, total))
        indexed_all.append(await raw_insert_one(url, total, indexed=True))
        ours_all.append(await store_append_one(url, total))
    raw, indexed, ours = min(raws), min(indexed_all), min(ours_all)
    name = f"append one message ({total:,} calls), client CPU per call"
    return [
        Figure("mongodb", name, ours * 1e6, raw * 1e6, "raw PyMongo insert_one", "µs"),
        Figure("mongodb", name, ours * 1e6, indexed * 1e6, "raw insert_one, the adapter's indexes", "µs"),
    ]
