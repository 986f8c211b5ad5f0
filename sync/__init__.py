"""Synchronous API: the repositories, the use cases and the engine for code that is not
async (Flask, Django, scripts, notebooks)::

    from qmcp_agents.sync import open_store_sync, services

    with open_store_sync("sqlite:///agents.db") as store:
        store.create_schema()
        with store.transaction():
            services.register_agent_type(store, AgentTypeCreate(name="planner", ...))
        print(store.agent_types.count())

A thin layer over the async ports (API.md §9): each store runs its async store on a private
event loop in a thread of its own, so it also works where an event loop is already running
(a notebook cell). See ``docs/sync.md``.
"""

from . import services
from .engine import SyncEngine
from .loop import StoreClosedError
from .repositories import (
    SyncAgentInstanceRepository,
    SyncAgentTypeRepository,
    SyncExecutionRepository,
    SyncMessageRepository,
    SyncResultRepository,
    SyncTopologyRepository,
)
from .store import SyncStore, open_store_sync
from .transaction import SyncTransaction

__all__ = [
    "StoreClosedError",
    "SyncAgentInstanceRepository",
    "SyncAgentTypeRepository",
    "SyncEngine",
    "SyncExecutionRepository",
    "SyncMessageRepository",
    "SyncResultRepository",
    "SyncStore",
    "SyncTopologyRepository",
    "SyncTransaction",
    "open_store_sync",
    "services",
]
