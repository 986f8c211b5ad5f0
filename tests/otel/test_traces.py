"""OpenTelemetry spans of one debate run, checked with the SDK's in-memory exporter."""

from __future__ import annotations

from collections import Counter

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.cli import demo
from qmcp_agents.adapters.otel import OtelTracer, traced_store
from qmcp_agents.domain import ExecutionStatus
from qmcp_agents.domain.engine import Engine, ScriptedAgent, reply


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


@pytest.mark.asyncio
async def test_a_debate_run_makes_the_documented_span_tree() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    async with open_store("memory://") as plain:
        store = traced_store(plain, tracer)
        prepared = dict(await demo.prepare(store))
        exporter.clear()
        run = await Engine(store, prepared["proposal-debate"], tracer=OtelTracer(tracer)).run(
            "proposal-debate", demo.INPUTS["proposal-debate"]
        )
    assert run.status is ExecutionStatus.COMPLETED
    spans = list(exporter.get_finished_spans())
    (root,) = [s for s in spans if s.name == "execute_topology proposal-debate"]
    assert root.parent is None
    assert root.attributes is not None
    assert root.attributes["qmcp.execution.id"] == str(run.id)
    assert root.attributes["qmcp.topology.type"] == "debate"
    rounds = sorted(s.name for s in _children(spans, root) if s.name.startswith("round"))
    assert rounds == ["round 1", "round 2"]
    calls = [s for s in spans if s.name.startswith("invoke_agent")]
    assert Counter(s.name for s in calls) == Counter(
        {"invoke_agent optimist": 2, "invoke_agent skeptic": 2, "invoke_agent judge": 1}
    )
    round_ids = {s.context.span_id for s in spans if s.name.startswith("round") and s.context is not None}
    assert all(s.parent is not None and s.parent.span_id in round_ids for s in calls)
    optimist = next(s for s in calls if s.name == "invoke_agent optimist")
    assert optimist.attributes is not None
    assert optimist.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert optimist.attributes["gen_ai.agent.name"] == "optimist"
    assert optimist.attributes["gen_ai.request.model"] == "claude-sonnet-4-20250514"
    assert optimist.attributes["gen_ai.usage.input_tokens"] == demo.USAGE["input"]
    assert optimist.attributes["gen_ai.usage.output_tokens"] == demo.USAGE["output"]
    store_spans = [s for s in spans if s.name.startswith("qmcp.store ")]
    assert any(s.name == "qmcp.store messages.append" for s in store_spans)
    append = next(s for s in store_spans if s.name == "qmcp.store messages.append")
    assert append.attributes is not None
    assert append.attributes["db.system.name"] == "memory"
    # the transcript's writes happen inside the run, and nest under it
    appends = [s for s in store_spans if s.name == "qmcp.store messages.append"]
    assert len(appends) == 5
    assert all(
        s.parent is not None and s.context is not None and s.context.trace_id == root.context.trace_id
        for s in appends
    )


@pytest.mark.asyncio
async def test_a_failing_agent_call_is_an_error_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    from qmcp_agents.testing.builders import register_topology

    async with open_store("memory://") as store:
        await register_topology(store, "solo", "ensemble", ["flaky"], {})
        agent = ScriptedAgent([RuntimeError("model down"), reply({"answer": 1}, 0.5)])
        tracer = OtelTracer(provider.get_tracer("test"))
        run = await Engine(store, {"flaky": agent}, tracer=tracer).run("solo", {})
    assert run.status is ExecutionStatus.FAILED  # max_retries 0 in the builder: one attempt
    (call,) = [s for s in exporter.get_finished_spans() if s.name == "invoke_agent flaky"]
    assert call.attributes is not None
    assert call.attributes["error.type"] == "RuntimeError"
    assert call.status.status_code.name == "ERROR"
    assert call.events
    assert call.events[0].name == "exception"


def test_nothing_is_emitted_without_an_sdk() -> None:
    from opentelemetry import trace

    span = trace.get_tracer("x").start_span("y")
    assert not span.is_recording()
