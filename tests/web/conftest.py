"""A store filled by the demo (plus hostile and paused executions) for the web view tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import pytest_asyncio
from starlette.testclient import TestClient

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.cli import demo
from qmcp_agents.adapters.web import create_app
from qmcp_agents.domain import AgentInstance, Execution, MessageCreate, MessageType
from qmcp_agents.domain.engine import Engine, ScriptedAgent, reply
from qmcp_agents.domain.ports import Store
from qmcp_agents.testing.builders import register_topology

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@dataclass
class Filled:
    url: str
    debate: UUID
    pipeline: UUID
    ensemble: UUID
    hostile: UUID
    paused: UUID
    running: UUID


async def fill(store: Store) -> Filled:
    await store.create_schema()
    ids: dict[str, UUID] = {}
    for name, agents in await demo.prepare(store):
        run = await Engine(store, agents).run(name, demo.INPUTS[name])
        ids[name] = run.id
    await register_topology(store, "evil", "ensemble", ["mallory"], {})
    evil = await Engine(
        store, {"mallory": ScriptedAgent([reply({"answer": HOSTILE}, 0.5, reasoning=HOSTILE)])}
    ).run("evil", {"doc": HOSTILE})
    await register_topology(store, "asks", "ensemble", ["curious"], {})
    paused = await Engine(store, {"curious": ScriptedAgent([reply({}, needs_human="Which colour?")])}).run(
        "asks", {}
    )
    topology = await store.topologies.get_by_name("asks")
    assert topology.id is not None
    running = Execution(topology_id=topology.id, input_data={"live": True})
    running.start()
    running = await store.executions.add(running)
    return Filled(
        "",
        ids["proposal-debate"],
        ids["article-pipeline"],
        ids["forecast-ensemble"],
        evil.id,
        paused.id,
        running.id,
    )


@pytest_asyncio.fixture
async def filled(tmp_path: Path) -> AsyncIterator[Filled]:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    async with open_store(url) as store:
        data = await fill(store)
    data.url = url
    yield data


@pytest.fixture
def client(filled: Filled) -> Iterator[TestClient]:
    with TestClient(create_app(url=filled.url), raise_server_exceptions=False) as test_client:
        yield test_client


async def add_running_message(url: str, execution_id: UUID, content: dict[str, Any]) -> None:
    async with open_store(url) as store:
        execution = await store.executions.get(execution_id)
        instances = (await store.agent_instances.list(execution_id=execution_id)).items
        if instances:
            sender = instances[0]
        else:
            sender = await store.agent_instances.add(
                AgentInstance(agent_type_id=1, execution_id=execution.id, metadata={"slot": "live-agent"})
            )
        await store.messages.append(
            execution_id,
            [MessageCreate(sender_id=sender.id, message_type=MessageType.RESPONSE, content=content)],
        )
