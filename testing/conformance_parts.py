"""Conformance: every store refuses, on save, a topology whose config the engine could not
honour (a debate decided by a mediator nobody plays, a field the rest of the config makes
meaningless), and accepts the shapes the seating rule allows (domain/seating.py)."""

from __future__ import annotations

from typing import Any

import pytest

from qmcp_agents.domain import AgentRole, IntegrityError, TopologyType
from qmcp_agents.domain.ports import Store

from .builders import agent_type, topology

T = TopologyType

REFUSED: list[tuple[TopologyType, dict[str, Any], list[str] | None, str]] = [
    (T.DEBATE, {}, None, "consensus_method is 'mediator' but no member mediates"),
    (T.DEBATE, {"max_rounds": 2}, ["pro", "con"], "set mediator_agent_name"),
    (
        T.DEBATE,
        {"consensus_method": "majority", "mediator_agent_name": "a"},
        None,
        "mediator_agent_name 'a' is set but consensus_method is 'majority'",
    ),
    (
        T.DEBATE,
        {"consensus_method": "majority", "allow_early_termination": False, "convergence_threshold": 0.5},
        None,
        "convergence_threshold is set but allow_early_termination is false",
    ),
    (T.CROSS_CHECK, {"consensus_method": "mediator", "num_checkers": 2}, None, "no member mediates"),
    (
        T.CROSS_CHECK,
        {"num_checkers": 2, "checker_specializations": ["x", "y", "z"]},
        None,
        r"checker_specializations lists 3 \['x', 'y', 'z'\] but num_checkers is 2",
    ),
    (
        T.DELEGATION,
        {"routing_strategy": "round_robin", "fallback_agent_name": "a"},
        None,
        "fallback_agent_name 'a' is set but routing_strategy is 'round_robin'",
    ),
    (
        T.ENSEMBLE,
        {"aggregation_method": "vote", "diversity_weight": 0.5},
        None,
        "diversity_weight is set but aggregation_method is 'vote'",
    ),
    (
        T.PIPELINE,
        {"retry_failed_stages": False, "max_stage_retries": 4},
        None,
        "max_stage_retries is set but retry_failed_stages is false",
    ),
    (T.COMPOUND, {}, None, "a compound topology runs its sub_topologies and has no members"),
]


class TopologyPartsConformance:
    """Mixed into :class:`~.conformance.StoreConformance`; uses its ``store`` fixture."""

    async def test_configs_the_engine_cannot_honour_are_refused_on_save(self, store: Store) -> None:
        a, b = await store.agent_types.add_many([agent_type("a"), agent_type("b")])
        for kind, config, slots, match in REFUSED:
            with pytest.raises(IntegrityError, match=match):
                await store.topologies.add(topology("t", [a, b], kind, config, slots=slots))
            assert await store.topologies.count() == 0, (kind, config)

    async def test_an_update_that_loses_the_mediator_is_refused(self, store: Store) -> None:
        a, lead = await store.agent_types.add_many(
            [agent_type("a"), agent_type("lead", role=AgentRole.COORDINATOR)]
        )
        saved = await store.topologies.add(topology("d", [a, lead], T.DEBATE, {}))
        saved.memberships = saved.memberships[:1]
        with pytest.raises(IntegrityError, match="consensus_method is 'mediator' but no member mediates"):
            await store.topologies.update(saved)
        stored = await store.topologies.get_by_name("d")
        assert (len(stored.memberships), stored.revision) == (2, 1)

    async def test_the_seating_rule_finds_a_mediator_by_slot_or_role(self, store: Store) -> None:
        a, b, lead, writer = await store.agent_types.add_many(
            [
                agent_type("a"),
                agent_type("b"),
                agent_type("lead", role=AgentRole.COORDINATOR),
                agent_type("writer", role=AgentRole.SYNTHESIZER),
            ]
        )
        await store.topologies.add(topology("by-slot", [a, b], T.DEBATE, {}, slots=["pro", "mediator"]))
        await store.topologies.add(topology("by-coordinator", [a, b, lead], T.DEBATE, {}))
        await store.topologies.add(topology("by-synthesizer", [a, writer], T.DEBATE, {}))
        await store.topologies.add(
            topology(
                "checked", [a, b, lead], T.CROSS_CHECK, {"consensus_method": "mediator", "num_checkers": 2}
            )
        )
        with pytest.raises(IntegrityError, match="num_checkers is 3 but it has 2 member"):
            await store.topologies.add(
                topology(
                    "short", [a, b, lead], T.CROSS_CHECK, {"consensus_method": "mediator", "num_checkers": 3}
                )
            )
        assert await store.topologies.count() == 4


__all__ = ["REFUSED", "TopologyPartsConformance"]
