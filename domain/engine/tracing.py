"""The engine's tracing hook: where a run, and each agent call in it, begins and ends.

The domain stays free of any tracing library: the engine calls a :class:`Tracer` (a no-op by
default), and ``qmcp_agents.adapters.otel`` implements it with OpenTelemetry spans
(execution -> round or stage -> agent call). The context managers are entered around the
work itself, so an agent's own instrumentation (pydantic-ai's, an HTTP client's) nests
under the agent-call span.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from qmcp_agents.domain.agent import AgentConfig, AgentType
from qmcp_agents.domain.execution import Execution
from qmcp_agents.domain.topology import Topology


class CallTrace(Protocol):
    """One agent call being traced; told the answer when there is one (errors propagate)."""

    def answered(self, reply: Any) -> None: ...


class Tracer(Protocol):
    def execution(self, execution: Execution, topology: Topology) -> Any:
        """A context manager around one drive of ``execution`` (a run, or a resume)."""

    def agent_call(
        self,
        execution: Execution,
        topology: Topology,
        *,
        slot: str,
        agent_type: AgentType,
        config: AgentConfig,
        call: str,
        round_number: int,
        attempt: int,
    ) -> Any:
        """A context manager around one attempt of one agent call, yielding a :class:`CallTrace`."""


class _Nothing:
    def answered(self, reply: Any) -> None:
        return None


class NoTracer:
    """Traces nothing, at no cost: the engine's default."""

    @contextmanager
    def execution(self, execution: Execution, topology: Topology) -> Iterator[None]:
        yield

    @contextmanager
    def agent_call(self, execution: Execution, topology: Topology, **_: Any) -> Iterator[CallTrace]:
        yield _Nothing()


NO_TRACER = NoTracer()

__all__ = ["NO_TRACER", "CallTrace", "NoTracer", "Tracer"]
