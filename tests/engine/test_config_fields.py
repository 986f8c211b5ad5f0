"""Every typed-config and AgentConfig field the engine reads changes what a run does; each
test here fails if its field is ignored (the refusals of meaningless combinations are in
the conformance suite, testing/conformance_parts.py)."""

from __future__ import annotations

from typing import Any

import pytest

from qmcp_agents.domain import (
    AgentRole,
    ExecutionStatus,
    IntegrityError,
    MessageType,
    Topology,
    TopologyCreate,
    TopologyMembership,
    TopologyType,
    services,
)
from qmcp_agents.domain.engine import AgentContext, Engine, ScriptedAgent, reply
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import all_pages
from qmcp_agents.domain.votes import Answer
from qmcp_agents.testing.builders import agent_type

from .conftest import build

pytestmark = pytest.mark.asyncio


def says(answer: Any, confidence: float | None = 0.9, tokens: int = 0) -> ScriptedAgent:
    usage = {"input": tokens, "output": 0} if tokens else None
    return ScriptedAgent([reply({"answer": answer}, confidence, token_usage=usage)])


# --- ensemble diversity_weight ----------------------------------------------------------------


@pytest.mark.parametrize(("diversity", "winner"), [(0.0, "x"), (0.5, "y")])
async def test_diversity_weight_in_best_of(store: Store, diversity: float, winner: str) -> None:
    await build(
        store,
        "e",
        "ensemble",
        ["a", "b", "c"],
        {"aggregation_method": "best_of", "diversity_weight": diversity},
    )
    agents = {"a": says("x", 0.9), "b": says("x", 0.9), "c": says("y", 0.7)}  # 0.7 * 1.5 > 0.9
    result = await Engine(store, agents).run("e", {})
    assert result.output_data is not None
    assert result.output_data["result"] == winner


@pytest.mark.parametrize(("diversity", "winner"), [(0.0, "x"), (0.3, "y")])
async def test_diversity_weight_in_weighted(store: Store, diversity: float, winner: str) -> None:
    await build(
        store,
        "e",
        "ensemble",
        ["a", "b", "c"],
        {"aggregation_method": "weighted", "diversity_weight": diversity},
    )
    agents = {"a": says("x"), "b": says("x"), "c": says("y")}
    weights = {"a": 1.0, "b": 1.0, "c": 1.6}  # 2 beats 1.6, but not 1.6 * 1.3
    result = await Engine(store, agents, weights=weights).run("e", {})
    assert result.output_data is not None
    assert result.output_data["result"] == winner


async def test_diversity_weight_reaches_the_synthesizer(store: Store) -> None:
    await build(
        store,
        "e",
        "ensemble",
        ["a", "b", "c", "synthesizer"],
        {"aggregation_method": "synthesis", "diversity_weight": 0.5},
    )
    member = ScriptedAgent([lambda c: reply({"answer": [a["weight"] for a in c.task["answers"]]})])
    agents = {"a": says("x", None), "b": says("x", None), "c": says("y", None), "synthesizer": member}
    by_member = await Engine(store, agents).run("e", {})
    assert by_member.output_data is not None
    assert by_member.output_data["result"] == [1.0, 1.0, 1.5]
    assert member.calls[0].task["diversity_weight"] == 0.5
    await build(
        store, "f", "ensemble", ["a", "b", "c"], {"aggregation_method": "synthesis", "diversity_weight": 0.5}
    )

    def weights(answers: list[Answer]) -> Any:
        return [a.weight for a in answers]

    by_function = await Engine(store, agents, synthesizer=weights).run("f", {})
    assert by_function.output_data is not None
    assert by_function.output_data["result"] == [1.0, 1.0, 1.5]


# --- delegation: load_balance under each routing strategy ----------------------------------------


@pytest.mark.parametrize(
    ("strategy", "balance", "slots"),
    [
        ("round_robin", False, ["a", "b", "c", "a", "b"]),  # strictly in turn
        ("round_robin", True, ["a", "b", "c", "b", "c"]),  # a spent the most tokens
        ("capability_match", True, ["a", "b", "c", "b", "c"]),
        ("capability_match", False, ["a", "a", "a", "a", "a"]),  # first capable member
    ],
)
async def test_load_balance(store: Store, strategy: str, balance: bool, slots: list[str]) -> None:
    await build(
        store,
        "g",
        "delegation",
        ["a", "b", "c"],
        {"routing_strategy": strategy, "load_balance": balance},
        capabilities={"a": ["sql"], "b": ["sql"], "c": ["sql"]},
    )
    agents = {"a": says(1, tokens=100), "b": says(2, tokens=10), "c": says(3, tokens=10)}
    tasks = [{"capability": "sql", "n": n} for n in range(5)]
    result = await Engine(store, agents).run("g", {"tasks": tasks})
    assert result.output_data is not None
    assert [a["slot"] for a in result.output_data["assignments"]] == slots


async def test_round_robin_ignores_capabilities_but_capability_match_does_not(store: Store) -> None:
    await build(
        store, "g", "delegation", ["a", "b"], {"routing_strategy": "round_robin"}, capabilities={"b": ["sql"]}
    )
    result = await Engine(store, {"a": says(1), "b": says(2)}).run("g", {"tasks": [{"capability": "sql"}]})
    assert result.output_data is not None
    assert result.output_data["assignments"][0]["slot"] == "a"


# --- chain of command: authority_levels ---------------------------------------------------------


async def test_create_topology_seats_a_chain_on_its_authority_levels(store: Store) -> None:
    levels = {"authority_levels": ["general", "captain", "private"]}
    await build(store, "c", "chain", ["alice", "bob", "carol"], levels)
    stored = await store.topologies.get_by_name("c")
    assert [m.slot_name for m in stored.memberships] == ["general", "captain", "private"]
    carol = says("done")
    result = await Engine(store, {"alice": says("plan"), "bob": says("orders"), "carol": carol}).run("c", {})
    assert result.output_data is not None
    assert result.output_data["answered_by"] == "private"
    assert carol.calls[0].task["directive"] == {"answer": "orders"}
    with pytest.raises(
        IntegrityError, match=r"authority_levels \['general', 'captain', 'private'\] seat one"
    ):
        await services.create_topology(
            store,
            TopologyCreate(
                name="big",
                description="d",
                topology_type="chain",
                config=levels,
                agent_names=["alice", "bob", "carol", "alice"],
            ),
        )
    assert await store.topologies.count() == 1


async def test_authority_levels_rank_members_whatever_their_positions(store: Store) -> None:
    a, b, c = await store.agent_types.add_many(
        [agent_type(n, role=AgentRole.EXECUTOR, config={"max_retries": 0}) for n in ("a", "b", "c")]
    )
    slots = ["private", "general", "captain"]  # positions 0, 1, 2: not the order of command
    await store.topologies.add(
        Topology(
            name="c",
            description="d",
            topology_type=TopologyType.CHAIN_OF_COMMAND,
            config={"authority_levels": ["general", "captain", "private"]},
            memberships=[
                TopologyMembership(agent_type_id=t.id, slot_name=s, position=i)
                for i, (t, s) in enumerate(zip((a, b, c), slots, strict=True))
            ],
        )
    )
    general, private = says("plan"), says("done")
    result = await Engine(store, {"general": general, "captain": says("orders"), "private": private}).run(
        "c", {}
    )
    assert result.output_data is not None
    assert result.output_data["answered_by"] == "private"
    assert [c.call for c in general.calls] == ["direct/general"]
    assert [c.call for c in private.calls] == ["execute/private"]


# --- cross-check without a mediator: require_unanimous_for_approval keeps the method -------------


async def test_unanimity_is_needed_for_approval_but_the_method_still_decides(store: Store) -> None:
    config = {"num_checkers": 3, "consensus_method": "majority", "require_unanimous_for_approval": True}
    await build(store, "x", "crosscheck", ["c1", "c2", "c3"], config)
    result = await Engine(store, {"c1": says("ok"), "c2": says("ok"), "c3": says("bad")}).run("x", {})
    assert result.output_data is not None
    assert (result.output_data["answer"], result.output_data["approved"]) == ("ok", False)
    assert result.output_data["method"] == "majority"


# --- AgentConfig.max_tool_calls ------------------------------------------------------------------


async def test_a_reply_over_max_tool_calls_fails_the_attempt(store: Store) -> None:
    await build(
        store,
        "e",
        "ensemble",
        ["tooly"],
        {"aggregation_method": "concat"},
        agent_config={"tooly": {"max_tool_calls": 2, "max_retries": 1}},
    )

    def tools(n: int) -> Any:
        return reply({"answer": f"{n} tools"}, token_usage={"input": 1, "output": 1, "tool_calls": n})

    tooly = ScriptedAgent([tools(5), tools(2)])
    result = await Engine(store, {"tooly": tooly}).run("e", {})
    assert result.status is ExecutionStatus.COMPLETED, result.error
    assert result.output_data is not None
    assert result.output_data["result"] == "2 tools"
    messages = await all_pages(lambda a: store.messages.list(result.id, limit=100, after=a))
    assert [m.content["error"] for m in messages if m.message_type is MessageType.SYSTEM] == [
        "made 5 tool calls, more than max_tool_calls 2"
    ]
    # Both attempts were paid for.
    assert result.metadata["token_usage"]["tool_calls"] == 7


async def test_the_effective_config_reaches_the_agent(store: Store) -> None:
    await build(
        store,
        "e",
        "ensemble",
        ["a"],
        {"aggregation_method": "concat"},
        agent_config={"a": {"model": "test", "temperature": 0.1, "system_prompt": "be brief"}},
    )
    seen: list[AgentContext] = []

    def remember(context: AgentContext) -> Any:
        seen.append(context)
        return reply({"answer": "ok"})

    await Engine(store, {"a": ScriptedAgent([remember])}).run("e", {})
    config = seen[0].config
    assert (config.model, config.temperature, config.system_prompt) == ("test", 0.1, "be brief")
