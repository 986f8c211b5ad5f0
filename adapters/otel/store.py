"""A store wrapper that makes a span of every repository call."""

from __future__ import annotations

import functools
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode, Tracer

from qmcp_agents.domain.ports import Capabilities, Store

from .tracer import SCOPE

REPOSITORIES = (
    "agent_types",
    "topologies",
    "agent_instances",
    "executions",
    "messages",
    "results",
    "leases",
)


class _TracedRepository:
    def __init__(self, inner: Any, name: str, system: str, tracer: Tracer) -> None:
        self._inner = inner
        self._name = name
        self._system = system
        self._tracer = tracer

    def __getattr__(self, verb: str) -> Any:
        target = getattr(self._inner, verb)
        if not callable(target) or verb.startswith("_"):
            return target

        @functools.wraps(target)
        async def call(*args: Any, **kwargs: Any) -> Any:
            attributes = {"db.system.name": self._system, "db.operation.name": f"{self._name}.{verb}"}
            with self._tracer.start_as_current_span(
                f"qmcp.store {self._name}.{verb}", attributes=attributes
            ) as span:
                try:
                    return await target(*args, **kwargs)
                except BaseException as error:
                    span.set_attribute("error.type", type(error).__name__)
                    span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
                    raise

        return call


class TracedStore:
    """``store`` with a span around every repository call; everything else passes through."""

    def __init__(self, store: Store, tracer: Tracer | None = None) -> None:
        self.inner = store
        tracer = tracer or trace.get_tracer(SCOPE)
        system = store.capabilities.backend
        for name in REPOSITORIES:
            setattr(self, f"_{name}", _TracedRepository(getattr(store, name), name, system, tracer))

    agent_types = property(lambda self: self._agent_types)
    topologies = property(lambda self: self._topologies)
    agent_instances = property(lambda self: self._agent_instances)
    executions = property(lambda self: self._executions)
    messages = property(lambda self: self._messages)
    results = property(lambda self: self._results)
    leases = property(lambda self: self._leases)

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def transaction(self) -> AbstractAsyncContextManager[None]:
        return self.inner.transaction()

    async def create_schema(self) -> None:
        await self.inner.create_schema()

    async def drop_schema(self) -> None:
        await self.inner.drop_schema()

    async def close(self) -> None:
        await self.inner.close()

    async def __aenter__(self) -> Self:
        await self.inner.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.inner.__aexit__(exc_type, exc, tb)


def traced_store(store: Store, tracer: Tracer | None = None) -> Store:
    wrapped: Store = TracedStore(store, tracer)
    return wrapped


__all__ = ["TracedStore", "traced_store"]
