"""The use cases of :mod:`qmcp_agents.domain.services` as plain functions.

Each runs the async use case itself on the store's loop (so it keeps its one transaction),
inside the caller's ``with store.transaction():`` if one is open. A test checks that every
use case has its counterpart here with the same signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from qmcp_agents.domain import services as _async
from qmcp_agents.domain.agent import AgentTypeCreate, AgentTypeRead, AgentTypeUpdate
from qmcp_agents.domain.execution import Execution, ExecutionCreate, ExecutionRead
from qmcp_agents.domain.message import MessageCreate, MessageRead, Result
from qmcp_agents.domain.topology import TopologyCreate, TopologyRead, TopologyUpdate

from .store import SyncStore


def register_agent_type(store: SyncStore, data: AgentTypeCreate) -> AgentTypeRead:
    """Store a new agent type (AlreadyExists if the name is taken)."""
    return store.run(lambda s: _async.register_agent_type(s, data))


def update_agent_type(store: SyncStore, name: str, data: AgentTypeUpdate) -> AgentTypeRead:
    """Apply ``data`` to the agent type ``name`` (ConcurrencyError if it changed meanwhile)."""
    return store.run(lambda s: _async.update_agent_type(s, name, data))


def create_topology(store: SyncStore, data: TopologyCreate) -> TopologyRead:
    """Store a topology with members resolved from ``agent_names`` (rules checked on save)."""
    return store.run(lambda s: _async.create_topology(s, data))


def update_topology(store: SyncStore, name: str, data: TopologyUpdate) -> TopologyRead:
    return store.run(lambda s: _async.update_topology(s, name, data))


def start_execution(store: SyncStore, data: ExecutionCreate) -> Execution:
    """Create a running execution of the topology named in ``data``."""
    return store.run(lambda s: _async.start_execution(s, data))


def append_messages(
    store: SyncStore, execution_id: UUID, messages: Sequence[MessageCreate]
) -> list[MessageRead]:
    return store.run(lambda s: _async.append_messages(s, execution_id, messages))


def record_result(store: SyncStore, result: Result) -> Result:
    return store.run(lambda s: _async.record_result(s, result))


def finish_execution(store: SyncStore, execution_id: UUID, output: dict[str, Any]) -> ExecutionRead:
    """running -> completed with ``output``."""
    return store.run(lambda s: _async.finish_execution(s, execution_id, output))


def fail_execution(
    store: SyncStore, execution_id: UUID, error: str, details: dict[str, Any] | None = None
) -> ExecutionRead:
    """pending | running | paused -> failed, with the error and its details."""
    return store.run(lambda s: _async.fail_execution(s, execution_id, error, details))


def get_agent_type(store: SyncStore, name: str) -> AgentTypeRead:
    return store.run(lambda s: _async.get_agent_type(s, name))


def get_topology(store: SyncStore, name: str) -> TopologyRead:
    return store.run(lambda s: _async.get_topology(s, name))


def get_execution(store: SyncStore, execution_id: UUID) -> ExecutionRead:
    return store.run(lambda s: _async.get_execution(s, execution_id))


def list_messages(store: SyncStore, execution_id: UUID, limit: int = 1000) -> list[MessageRead]:
    """Every message of an execution, in sequence order (follows the pages)."""
    return store.run(lambda s: _async.list_messages(s, execution_id, limit))


__all__ = [
    "append_messages",
    "create_topology",
    "fail_execution",
    "finish_execution",
    "get_agent_type",
    "get_execution",
    "get_topology",
    "list_messages",
    "record_result",
    "register_agent_type",
    "start_execution",
    "update_agent_type",
    "update_topology",
]
