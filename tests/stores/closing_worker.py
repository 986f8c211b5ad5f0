"""A separate process that appends to one MongoDB execution until it is final or gone (for
the multi-process test of the closing entries).

Usage: python -m tests.stores.closing_worker URL EXECUTION_ID SENDER_ID SEED

It appends one message first (so that its store remembers the chain's top, and every
later append is the one-command write), writes ``ready`` on stderr, then keeps appending
batches of 1 to 3 messages at random moments. It prints one JSON object: the numbers of
each append that returned, and the name of the error that stopped it.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from uuid import UUID

from qmcp_agents.adapters.mongo import MongoStore
from qmcp_agents.domain import InvalidTransition, MessageCreate, MessageType, NotFound


async def main(url: str, execution: str, sender: str, seed: int) -> None:
    rng = random.Random(seed)
    blocks: list[list[int]] = []
    stopped = "none"

    def drafts(n: int) -> list[MessageCreate]:
        return [
            MessageCreate(sender_id=UUID(sender), message_type=MessageType.BROADCAST, content={"seed": seed})
            for _ in range(n)
        ]

    async with MongoStore.from_url(url) as store:
        blocks.append([m.sequence_number for m in await store.messages.append(UUID(execution), drafts(1))])
        print("ready", file=sys.stderr, flush=True)
        for _ in range(2000):
            await asyncio.sleep(rng.uniform(0, 0.003))
            try:
                appended = await store.messages.append(UUID(execution), drafts(rng.randint(1, 3)))
            except (InvalidTransition, NotFound) as error:
                stopped = type(error).__name__
                break
            blocks.append([m.sequence_number for m in appended])
    print(json.dumps({"blocks": blocks, "stopped": stopped}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
