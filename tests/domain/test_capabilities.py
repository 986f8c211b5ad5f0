"""The capability registry's laws: dependency order, cycles, definitions, built-in configs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from qmcp_agents.domain import AgentType
from qmcp_agents.domain.agent import AgentCapability
from qmcp_agents.domain.capabilities import (
    BUILTINS,
    CapabilityConfig,
    CapabilityDefinition,
    CapabilityError,
    CapabilityRegistry,
    DependencyCycle,
    builtin_config,
    check_capabilities,
    has_skill,
    registry,
)


@st.composite
def acyclic_graphs(draw: st.DrawFn) -> dict[str, list[str]]:
    """Names c0..cn with edges only towards lower indices (so acyclic), names shuffled."""
    n = draw(st.integers(min_value=1, max_value=12))
    names = draw(st.permutations([f"c{i}" for i in range(n)]))
    graph: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        graph[name] = sorted(draw(st.sets(st.sampled_from(names[:i]), max_size=i)) if i else set())
    return graph


def _registry(graph: dict[str, list[str]]) -> CapabilityRegistry:
    return CapabilityRegistry.of(
        CapabilityDefinition(name, "1.0.0", CapabilityConfig, tuple(deps)) for name, deps in graph.items()
    )


@given(acyclic_graphs())
def test_resolution_orders_every_capability_after_its_dependencies(graph: dict[str, list[str]]) -> None:
    order = _registry(graph).resolve()
    assert sorted(order) == sorted(graph)
    position = {name: i for i, name in enumerate(order)}
    for name, deps in graph.items():
        assert all(position[d] < position[name] for d in deps)


@given(acyclic_graphs(), st.data())
def test_resolution_of_a_subset_includes_its_dependencies_first(
    graph: dict[str, list[str]], data: st.DataObject
) -> None:
    wanted = data.draw(st.sets(st.sampled_from(sorted(graph)), min_size=1))
    order = _registry(graph).resolve(wanted)
    assert wanted <= set(order)
    position = {name: i for i, name in enumerate(order)}
    for name in order:
        assert all(d in position and position[d] < position[name] for d in graph[name])


@given(acyclic_graphs(), st.data())
def test_every_cyclic_registry_is_refused(graph: dict[str, list[str]], data: st.DataObject) -> None:
    names = sorted(graph)
    # Close a cycle: pick a path a -> ... -> b (b reachable from a, possibly a itself via a new
    # edge), then make b depend on a.
    low = data.draw(st.sampled_from(names))
    reachable = {low}
    frontier = [low]
    while frontier:
        node = frontier.pop()
        for other, deps in graph.items():
            if node in deps and other not in reachable:
                reachable.add(other)
                frontier.append(other)
    high = data.draw(st.sampled_from(sorted(reachable - {low}))) if len(reachable) > 1 else None
    if high is None:  # a single node: a two-node cycle with a fresh name
        graph = {**graph, low: [*graph[low], "zz"], "zz": [low]}
    else:
        graph = {**graph, low: sorted({*graph[low], high})}
    with pytest.raises(DependencyCycle, match="cycle"):
        _registry(graph).resolve()


def test_definitions_are_checked() -> None:
    with pytest.raises(CapabilityError, match="name 'Bad Name'"):
        CapabilityDefinition("Bad Name", "1.0.0", CapabilityConfig)
    with pytest.raises(CapabilityError, match=r"version '1\.0'"):
        CapabilityDefinition("x", "1.0", CapabilityConfig)
    with pytest.raises(DependencyCycle, match="itself"):
        CapabilityDefinition("x", "1.0.0", CapabilityConfig, ("x",))
    with pytest.raises(CapabilityError, match="Pydantic model class"):
        CapabilityDefinition("x", "1.0.0", dict)  # type: ignore[arg-type]
    reg = CapabilityRegistry.of([CapabilityDefinition("x", "1.0.0", CapabilityConfig, ("y",))])
    with pytest.raises(CapabilityError, match="already registered"):
        reg.register(CapabilityDefinition("x", "2.0.0", CapabilityConfig))
    with pytest.raises(CapabilityError, match="unknown capability 'y'; registered capabilities: x"):
        reg.resolve()
    reg.register(CapabilityDefinition("x", "2.0.0", CapabilityConfig), replace=True)
    assert reg.get("x").version == "2.0.0"
    assert reg.resolve() == ["x"]


def test_builtin_configs_have_the_documented_defaults() -> None:
    assert {d.name for d in BUILTINS} <= set(registry.names())
    assert builtin_config("tool_use") == {
        "allowed_tools": [],
        "denied_tools": [],
        "require_confirmation": False,
        "max_tool_calls_per_turn": 5,
        "tool_call_timeout_seconds": 60,
    }
    assert builtin_config("human_in_loop") == {
        "require_approval_for": [],
        "approval_timeout_seconds": 3600,
        "allow_modification": True,
        "escalation_on_timeout": "abort",
    }
    assert builtin_config("memory") == {
        "max_memories": 100,
        "memory_decay": True,
        "decay_half_life_hours": 24.0,
        "auto_summarize": True,
        "summary_threshold": 50,
    }
    assert builtin_config("structured_output", output_schema={"type": "object"}) == {
        "output_schema": {"type": "object"},
        "strict_validation": True,
        "auto_repair": True,
        "max_repair_attempts": 3,
    }
    assert builtin_config("reasoning") == {
        "reasoning_style": "step_by_step",
        "show_reasoning": True,
        "max_reasoning_steps": 10,
        "require_conclusion": True,
    }
    assert registry.get("human_in_loop").depends_on == ("tool_use",)


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("tool_use", {"allowed_tools": ["a"], "denied_tools": ["a"]}, "both allowed and denied"),
        ("tool_use", {"max_tool_calls_per_turn": 0}, "greater than or equal to 1"),
        ("tool_use", {"tool_call_timeout_seconds": -1}, "greater than 0"),
        ("human_in_loop", {"escalation_on_timeout": "panic"}, "'abort', 'continue' or 'default'"),
        ("memory", {"summary_threshold": 200}, "exceeds max_memories"),
        ("memory", {"memory_decay": "yes"}, "valid boolean"),
        ("structured_output", {}, "output_schema"),
        ("structured_output", {"output_schema": {"type": 3}}, "output_schema.type"),
        ("reasoning", {"reasoning_style": "vibes"}, "step_by_step"),
    ],
)
def test_builtin_configs_refuse_bad_values(name: str, config: dict[str, Any], message: str) -> None:
    caps = [AgentCapability(name="tool_use"), AgentCapability(name=name, config=config)]
    if name == "tool_use":
        caps = caps[1:]
    with pytest.raises(ValidationError, match=message):
        check_capabilities(caps, registry)


def test_skills_route_by_tag_and_disabled_capabilities_do_not_count() -> None:
    t = AgentType(
        name="dba",
        description="d",
        role="specialist",
        config={
            "capabilities": [
                {"name": "skills", "config": {"tags": ["sql", "Postgres"]}},
                {"name": "memory", "enabled": False},
            ]
        },
    )
    assert has_skill(t, "sql")
    assert has_skill(t, "postgres")
    assert has_skill(t, "skills")
    assert not has_skill(t, "python")
    assert not has_skill(t, "memory")
