"""A separate process that appends messages to one execution (for the multi-process tests).

Usage: python -m tests.stores.append_worker URL SCHEMA|- EXECUTION_ID SENDER_ID BATCHES SIZE
Prints the sequence numbers it was given, one JSON list.
"""

from __future__ import annotations

import asyncio
import json
import sys
from uuid import UUID

from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.domain import MessageCreate, MessageType


async def main(url: str, schema: str, execution: str, sender: str, batches: int, size: int) -> None:
    numbers: list[int] = []
    async with SqlStore(url, schema=None if schema == "-" else schema) as store:
        for batch in range(batches):
            drafts = [
                MessageCreate(
                    sender_id=UUID(sender),
                    message_type=MessageType.BROADCAST,
                    content={"pid": sys.argv[0], "batch": batch, "k": k},
                )
                for k in range(size)
            ]
            numbers.extend(m.sequence_number for m in await store.messages.append(UUID(execution), drafts))
    print(json.dumps(numbers))


if __name__ == "__main__":
    url, schema, execution, sender, batches, size = sys.argv[1:7]
    asyncio.run(main(url, schema, execution, sender, int(batches), int(size)))
