"""OpenTelemetry traces of runs and store calls (extra ``[otel]``: ``opentelemetry-api`` only).

    from qmcp_agents.adapters.otel import OtelTracer, traced_store
    store = traced_store(store)                        # a span per repository call
    engine = Engine(store, agents, tracer=OtelTracer())

Spans: ``execute_topology {name}`` per run (or resume) -> ``round N`` / ``stage N`` ->
``invoke_agent {agent type}`` per attempt of an agent call, with the GenAI semantic
conventions (``gen_ai.operation.name``, ``gen_ai.agent.name``, ``gen_ai.request.model``,
``gen_ai.request.temperature``, ``gen_ai.request.max_tokens``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``, ``error.type``) and ``qmcp.*`` attributes for the run.
Store calls are ``qmcp.store {repository}.{verb}`` spans with ``db.system.name`` and
``db.operation.name``. Nothing is emitted unless the application configures an SDK (the
API's default tracer provider does nothing).
"""

from .store import TracedStore, traced_store
from .tracer import OtelTracer

__all__ = ["OtelTracer", "TracedStore", "traced_store"]
