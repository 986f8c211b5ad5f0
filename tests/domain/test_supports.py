"""``ports.supports``: the optional one-step capabilities, decided once per store class."""

from __future__ import annotations

from typing import Any

from qmcp_agents.adapters.memory import MemoryStore
from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.domain.ports import CallRecorder, FencedUpdater, TopologyReader, supports


class _Recorder:
    async def record_call(self, *args: Any) -> None:
        return None


class _Plain:
    pass


def test_supports_answers_as_isinstance_does() -> None:
    sql = SqlStore("sqlite+aiosqlite:///:memory:")
    memory = MemoryStore()
    for store in (sql, memory, _Recorder(), _Plain()):
        for capability in (CallRecorder, FencedUpdater, TopologyReader):
            assert supports(store, capability) is isinstance(store, capability)
    assert supports(sql, CallRecorder)  # type: ignore[type-abstract]
    assert not supports(memory, CallRecorder)  # type: ignore[type-abstract]


def test_supports_is_decided_by_the_class_not_the_instance() -> None:
    """A method set on one instance does not make its class capable (nor the next
    instance): capabilities are a store class's own methods."""
    plain = _Plain()
    assert not supports(plain, CallRecorder)  # type: ignore[type-abstract]
    plain.record_call = _Recorder().record_call  # type: ignore[attr-defined]
    assert not supports(plain, CallRecorder)  # type: ignore[type-abstract]
    assert not supports(_Plain(), CallRecorder)  # type: ignore[type-abstract]
    assert supports(_Recorder(), CallRecorder)  # type: ignore[type-abstract]
