"""The engine for synchronous code: ``run`` and ``resume`` that return when the run does.

The async :class:`~qmcp_agents.domain.engine.Engine` runs on the store's loop, so agents
(async callables, as for the async engine), hooks and the ``observer`` are called on the
store's thread, not the caller's. They must not call the synchronous store (that would wait
for the loop they are blocking): the engine hands them what they need, and
``sync_store.async_store`` is there for anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

from qmcp_agents.domain.aggregation import Synthesizer
from qmcp_agents.domain.engine import Engine
from qmcp_agents.domain.engine.engine import AgentLookup
from qmcp_agents.domain.engine.tracing import Tracer
from qmcp_agents.domain.execution import ExecutionRead

from .store import SyncStore


class SyncEngine:
    """:class:`~qmcp_agents.domain.engine.Engine` over a :class:`SyncStore`; the options are
    the async engine's. A run made inside ``with store.transaction():`` belongs to it."""

    def __init__(
        self,
        store: SyncStore,
        agents: AgentLookup,
        *,
        synthesizer: Synthesizer | None = None,
        weights: Mapping[str, float] | None = None,
        timeout_scale: float = 1.0,
        observer: Callable[[dict[str, Any]], None] | None = None,
        token_budget: int | None = None,
        time_limit_seconds: float | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.store = store
        self.engine = Engine(
            store.async_store,
            agents,
            synthesizer=synthesizer,
            weights=weights,
            timeout_scale=timeout_scale,
            observer=observer,
            token_budget=token_budget,
            time_limit_seconds=time_limit_seconds,
            tracer=tracer,
        )

    def run(
        self,
        topology_name: str,
        input_data: dict[str, Any],
        *,
        correlation_id: str | None = None,
        parent_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        token_budget: int | None = None,
        time_limit_seconds: float | None = None,
    ) -> ExecutionRead:
        """Start and drive an execution of ``topology_name`` to completion, failure or a pause."""
        return self.store.run(
            lambda _: self.engine.run(
                topology_name,
                input_data,
                correlation_id=correlation_id,
                parent_id=parent_id,
                metadata=metadata,
                token_budget=token_budget,
                time_limit_seconds=time_limit_seconds,
            )
        )

    def resume(self, execution_id: UUID, human_input: Any) -> ExecutionRead:
        """Give a paused execution the answer a person wrote, and drive it on."""
        return self.store.run(lambda _: self.engine.resume(execution_id, human_input))

    def resume_from_checkpoint(self, execution_id: UUID) -> ExecutionRead:
        """Run a failed pipeline again from its last checkpoint, as a new execution."""
        return self.store.run(lambda _: self.engine.resume_from_checkpoint(execution_id))

    def submit(
        self,
        topology_name: str,
        input_data: Any,
        *,
        correlation_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        token_budget: int | None = None,
        time_limit_seconds: float | None = None,
    ) -> UUID:
        """Store a pending execution for workers to run, and return its id."""
        return self.store.run(
            lambda _: self.engine.submit(
                topology_name,
                input_data,
                correlation_id=correlation_id,
                metadata=metadata,
                token_budget=token_budget,
                time_limit_seconds=time_limit_seconds,
            )
        )

    def drive(
        self, execution_id: UUID, *, owner: str | None = None, attempt: int | None = None
    ) -> ExecutionRead:
        """Drive a submitted execution until it ends or pauses (see the async engine)."""
        return self.store.run(lambda _: self.engine.drive(execution_id, owner=owner, attempt=attempt))

    def cancel(self, execution_id: UUID) -> ExecutionRead:
        """Cancel an execution; a worker running it stops at its next step."""
        return self.store.run(lambda _: self.engine.cancel(execution_id))

    def answer(self, execution_id: UUID, human_input: Any) -> None:
        """Give a paused submitted execution its answer, for any worker to resume."""
        return self.store.run(lambda _: self.engine.answer(execution_id, human_input))


__all__ = ["SyncEngine"]
