"""The engine's :class:`~qmcp_agents.domain.engine.tracing.Tracer` on OpenTelemetry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from qmcp_agents.domain.agent import AgentConfig, AgentType
from qmcp_agents.domain.enums import TopologyType
from qmcp_agents.domain.execution import Execution
from qmcp_agents.domain.topology import Topology

SCOPE = "qmcp_agents"


class _CallTrace:
    def __init__(self, span: Span) -> None:
        self.span = span

    def answered(self, reply: Any) -> None:
        usage = getattr(reply, "token_usage", None) or {}
        if "input" in usage:
            self.span.set_attribute("gen_ai.usage.input_tokens", int(usage["input"]))
        if "output" in usage:
            self.span.set_attribute("gen_ai.usage.output_tokens", int(usage["output"]))
        confidence = getattr(reply, "confidence", None)
        if confidence is not None:
            self.span.set_attribute("qmcp.confidence", float(confidence))
        if getattr(reply, "needs_human", None):
            self.span.set_attribute("qmcp.needs_human", True)


class OtelTracer:
    """Spans for runs, their rounds or stages, and agent calls. Round spans are opened at a
    round's first call and closed when the run's drive ends."""

    def __init__(self, tracer: Tracer | None = None) -> None:
        self.tracer = tracer or trace.get_tracer(SCOPE)
        self._runs: dict[UUID, Span] = {}
        self._rounds: dict[tuple[UUID, int], Span] = {}

    @contextmanager
    def execution(self, execution: Execution, topology: Topology) -> Iterator[None]:
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "execute_topology",
            "qmcp.execution.id": str(execution.id),
            "qmcp.topology.name": topology.name,
            "qmcp.topology.type": topology.topology_type.value,
        }
        if execution.parent_id is not None:
            attributes["qmcp.execution.parent_id"] = str(execution.parent_id)
        with self.tracer.start_as_current_span(
            f"execute_topology {topology.name}", attributes=attributes
        ) as span:
            self._runs[execution.id] = span
            try:
                yield
            except BaseException as error:
                span.set_attribute("error.type", type(error).__name__)
                raise
            finally:
                for key in [k for k in self._rounds if k[0] == execution.id]:
                    self._rounds.pop(key).end()
                self._runs.pop(execution.id, None)

    def _round(self, execution: Execution, topology: Topology, round_number: int) -> Span | None:
        parent = self._runs.get(execution.id)
        if parent is None:
            return None
        key = (execution.id, round_number)
        span = self._rounds.get(key)
        if span is None:
            kind = "stage" if topology.topology_type is TopologyType.PIPELINE else "round"
            span = self.tracer.start_span(
                f"{kind} {round_number}",
                context=trace.set_span_in_context(parent),
                attributes={f"qmcp.{kind}": round_number, "qmcp.execution.id": str(execution.id)},
            )
            self._rounds[key] = span
        return span

    @contextmanager
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
    ) -> Iterator[_CallTrace]:
        parent = self._round(execution, topology, round_number)
        context = trace.set_span_in_context(parent) if parent is not None else None
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent_type.name,
            "gen_ai.request.model": config.model,
            "gen_ai.request.temperature": config.temperature,
            "gen_ai.request.max_tokens": config.max_tokens,
            "qmcp.slot": slot,
            "qmcp.call": call,
            "qmcp.round": round_number,
            "qmcp.attempt": attempt,
            "qmcp.execution.id": str(execution.id),
        }
        span = self.tracer.start_span(
            f"invoke_agent {agent_type.name}", context=context, attributes=attributes
        )
        with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
            try:
                yield _CallTrace(span)
            except BaseException as error:
                span.set_attribute("error.type", type(error).__name__)
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
                raise


__all__ = ["OtelTracer"]
