"""A process that writes to a SQLite store until it is SIGKILLed (for the fault tests).

Usage: python -m tests.stores.sqlite_worker PATH MODE EXECUTION_ID SENDER_ID
MODE ``append``: one append of 20,000 messages; ``transaction``: a transaction that appends,
adds an agent type, then waits. Prints ``ready`` just before the write it is killed in.
"""

from __future__ import annotations

import asyncio
import sys
from uuid import UUID

from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.domain import AgentType, MessageCreate, MessageType


def _drafts(sender: UUID, n: int) -> list[MessageCreate]:
    return [
        MessageCreate(
            sender_id=sender, message_type=MessageType.BROADCAST, content={"k": k, "pad": "x" * 200}
        )
        for k in range(n)
    ]


async def main(path: str, mode: str, execution: UUID, sender: UUID) -> None:
    async with SqlStore(f"sqlite:///{path}") as store:
        if mode == "append":
            drafts = _drafts(sender, 20_000)
            print("ready", flush=True)
            await store.messages.append(execution, drafts)
            print("done", flush=True)
            await asyncio.sleep(60)
        else:
            async with store.transaction():
                await store.messages.append(execution, _drafts(sender, 50))
                await store.agent_types.add(AgentType(name="doomed", description="d", role="planner"))
                await store.messages.append(execution, _drafts(sender, 50))
                print("ready", flush=True)
                await asyncio.sleep(60)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], UUID(sys.argv[3]), UUID(sys.argv[4])))
