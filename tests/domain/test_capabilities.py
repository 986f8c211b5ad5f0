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


# --- memory -------------------------------------------------------------------------------

from datetime import UTC, datetime, timedelta  # noqa: E402

from qmcp_agents.domain.capabilities import MemoryConfig  # noqa: E402
from qmcp_agents.domain.capabilities.memory import apply, decay, rank  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)

ops = st.lists(
    st.one_of(
        st.builds(
            lambda text, tags, importance, minutes: {
                "op": "remember",
                "text": text,
                "tags": tags,
                "importance": importance,
                "at": (T0 + timedelta(minutes=minutes)).isoformat(),
            },
            st.text(alphabet="abc xyz", min_size=1, max_size=12),
            st.lists(st.sampled_from(["red", "blue"]), max_size=2),
            st.floats(0, 1),
            st.integers(0, 10_000),
        ),
        st.builds(
            lambda ids: {"op": "forget", "ids": ids, "at": T0.isoformat()},
            st.lists(st.sampled_from([f"m{i}" for i in range(1, 30)]), max_size=3),
        ),
    ),
    max_size=40,
)


@given(ops, st.integers(1, 8), st.integers(1, 8), st.booleans())
def test_memory_stays_within_its_limits_and_ids_stay_unique(
    operations: list[dict[str, Any]], max_memories: int, threshold: int, summarize: bool
) -> None:
    if summarize and threshold > max_memories:
        threshold = max_memories
    config = MemoryConfig(max_memories=max_memories, summary_threshold=threshold, auto_summarize=summarize)
    state: dict[str, Any] = {}
    for op in operations:
        state = apply(state, op, config)
        items = state["items"]
        assert len(items) <= max_memories
        ids = [m["id"] for m in items]
        assert len(ids) == len(set(ids))
        if summarize and threshold >= 2:
            assert len(items) < threshold or len([m for m in items if m["kind"] == "memory"]) < 2


def test_memory_decays_by_half_life_and_ranks_by_relevance_times_importance() -> None:
    config = MemoryConfig(decay_half_life_hours=10)
    old = {
        "id": "m1",
        "text": "paris is in france",
        "tags": ["geo"],
        "importance": 0.8,
        "created_at": T0.isoformat(),
        "kind": "memory",
    }
    new = {
        "id": "m2",
        "text": "rome is in italy",
        "tags": ["geo"],
        "importance": 0.8,
        "created_at": (T0 + timedelta(hours=10)).isoformat(),
        "kind": "memory",
    }
    now = T0 + timedelta(hours=10)
    assert decay(old, now, config) == pytest.approx(0.4)
    assert decay(new, now, config) == pytest.approx(0.8)
    assert decay(old, now, MemoryConfig(memory_decay=False)) == 0.8
    assert [m["id"] for _, m in rank([old, new], "paris france", [], now, config)] == ["m1"]
    assert [m["id"] for _, m in rank([old, new], "", ["geo"], now, config)] == ["m2", "m1"]
    assert rank([old, new], "", ["food"], now, config) == []


def test_memory_eviction_drops_the_weakest_and_summaries_fold_the_oldest() -> None:
    config = MemoryConfig(max_memories=2, auto_summarize=False)
    state: dict[str, Any] = {}
    for text, importance in [("a", 0.9), ("b", 0.1), ("c", 0.5)]:
        state = apply(
            state, {"op": "remember", "text": text, "importance": importance, "at": T0.isoformat()}, config
        )
    assert [m["text"] for m in state["items"]] == ["a", "c"]
    config = MemoryConfig(max_memories=10, summary_threshold=4)
    state = {}
    for text in "wxyz":
        state = apply(state, {"op": "remember", "text": text, "at": T0.isoformat()}, config)
    assert [m["text"] for m in state["items"]] == ["summary: w; x", "y", "z"]
    assert state["items"][0]["kind"] == "summary"
