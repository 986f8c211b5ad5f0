"""Checks made before a run stores anything: every member of a topology (and of its
sub-topologies) can reach its model: a known provider, a well-formed name, a key where one
is needed. No request is sent."""

from __future__ import annotations

from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.topology_configs import CompoundConfig

from .agent import LLMAgent
from .models import ModelChoice


async def check_topology(store: Store, topology: str, agent: LLMAgent) -> dict[str, ModelChoice]:
    """Where each agent type of ``topology`` would be sent, by ``"topology/slot"``; raises
    :class:`~.models.LLMConfigError` for the first member that cannot be served."""
    found: dict[str, ModelChoice] = {}
    pending, seen = [topology], set()
    while pending:
        name = pending.pop(0)
        if name in seen:
            continue
        seen.add(name)
        entity = await store.topologies.get_by_name(name)
        for membership in sorted(entity.memberships, key=lambda m: (m.position, m.slot_name)):
            agent_type = await store.agent_types.get(membership.agent_type_id)
            config = agent_type.config.with_overrides(membership.config_overrides)
            if not isinstance(agent.model, str | None):
                continue
            found[f"{name}/{membership.slot_name}"] = agent.choice(agent_type.name, config)
        typed = entity.get_typed_config()
        if isinstance(typed, CompoundConfig):
            pending.extend(typed.sub_topologies)
    return found


__all__ = ["check_topology"]
