"""The sync API keeps the async one's signatures: every port verb, every use case and the
engine's entry points, compared by introspection so a new one cannot be forgotten."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol

import pytest

from qmcp_agents.domain import ports
from qmcp_agents.domain import services as async_services
from qmcp_agents.domain.engine import Engine
from qmcp_agents.domain.ports import Store
from qmcp_agents.sync import SyncEngine, SyncStore
from qmcp_agents.sync import repositories as sync_repositories
from qmcp_agents.sync import services as sync_services

PAIRS = [
    (ports.AgentTypeRepository, sync_repositories.SyncAgentTypeRepository),
    (ports.TopologyRepository, sync_repositories.SyncTopologyRepository),
    (ports.AgentInstanceRepository, sync_repositories.SyncAgentInstanceRepository),
    (ports.ExecutionRepository, sync_repositories.SyncExecutionRepository),
    (ports.MessageRepository, sync_repositories.SyncMessageRepository),
    (ports.ResultRepository, sync_repositories.SyncResultRepository),
    (ports.LeaseRepository, sync_repositories.SyncLeaseRepository),
]


def verbs(port: type) -> list[str]:
    return sorted(name for name, value in vars(port).items() if callable(value) and not name.startswith("_"))


def signature(function: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(function, eval_str=True)


def differences(port: type, sync: type, replace: dict[Any, Any] | None = None) -> list[str]:
    """What ``sync`` lacks or declares differently from ``port``'s async verbs; ``replace``
    maps an annotation of the port to the one the sync side must have instead."""
    replace = replace or {}
    found = []
    for verb in verbs(port):
        async_verb = getattr(port, verb)
        sync_verb = getattr(sync, verb, None)
        if sync_verb is None:
            found.append(f"{sync.__name__}.{verb} is missing")
            continue
        if not inspect.iscoroutinefunction(async_verb):
            found.append(f"{port.__name__}.{verb} is not async")
        if inspect.iscoroutinefunction(sync_verb):
            found.append(f"{sync.__name__}.{verb} is async")
        expected = signature(async_verb)
        expected = expected.replace(
            parameters=[
                p.replace(annotation=replace.get(p.annotation, p.annotation))
                for p in expected.parameters.values()
            ],
            return_annotation=replace.get(expected.return_annotation, expected.return_annotation),
        )
        if signature(sync_verb) != expected:
            found.append(f"{sync.__name__}.{verb}{signature(sync_verb)} != {port.__name__}.{verb}{expected}")
    return found


@pytest.mark.parametrize(("port", "sync"), PAIRS, ids=[port.__name__ for port, _ in PAIRS])
def test_every_port_verb_has_its_sync_twin(port: type, sync: type) -> None:
    assert verbs(port), port
    assert differences(port, sync) == []


def test_the_comparison_notices_a_forgotten_or_changed_verb() -> None:
    class Port(Protocol):
        async def add(self, name: str) -> int: ...
        async def archive(self, id: int) -> None: ...
        async def count(self, *, role: str | None = None) -> int: ...

    class Twin:
        def add(self, name: str) -> int:
            return 0

        def count(self, *, role: str | None = None, limit: int = 5) -> int:
            return 0

    found = differences(Port, Twin)
    assert len(found) == 2
    assert "Twin.archive is missing" in found[0]
    assert "Twin.count" in found[1]


def test_the_store_has_every_repository_and_store_verb() -> None:
    for name in (
        "agent_types",
        "topologies",
        "agent_instances",
        "executions",
        "messages",
        "results",
        "leases",
    ):
        async_type = signature(getattr(Store, name).fget).return_annotation
        sync_type = signature(getattr(SyncStore, name).fget).return_annotation
        assert (async_type, sync_type) in PAIRS
    for verb in ("create_schema", "drop_schema", "close"):
        assert signature(getattr(SyncStore, verb)) == signature(getattr(Store, verb))
        assert not inspect.iscoroutinefunction(getattr(SyncStore, verb))
    assert isinstance(inspect.getattr_static(SyncStore, "capabilities"), property)
    assert {name for name in verbs(Store) if not name.startswith("__")} <= set(dir(SyncStore))
    assert hasattr(SyncStore, "__enter__")
    assert hasattr(SyncStore, "__exit__")


def test_every_use_case_has_its_sync_twin() -> None:
    assert sorted(sync_services.__all__) == sorted(async_services.__all__)
    for name in async_services.__all__:
        async_case, sync_case = getattr(async_services, name), getattr(sync_services, name)
        assert inspect.iscoroutinefunction(async_case)
        assert not inspect.iscoroutinefunction(sync_case)
        expected = signature(async_case)
        expected = expected.replace(
            parameters=[
                p.replace(annotation=SyncStore) if p.annotation is Store else p
                for p in expected.parameters.values()
            ]
        )
        assert signature(sync_case) == expected, name


def test_the_sync_engine_takes_the_engines_options_and_entry_points() -> None:
    expected = signature(Engine.__init__)
    expected = expected.replace(
        parameters=[
            p.replace(annotation=SyncStore) if p.annotation is Store else p
            for p in expected.parameters.values()
        ]
    )
    assert signature(SyncEngine.__init__) == expected
    for entry in ("run", "resume", "resume_from_checkpoint", "submit", "drive", "cancel", "answer"):
        assert signature(getattr(SyncEngine, entry)) == signature(getattr(Engine, entry)), entry
        assert not inspect.iscoroutinefunction(getattr(SyncEngine, entry))
