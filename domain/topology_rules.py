"""Rules a topology must satisfy with its members, checked by every store on save.

They need data beyond the topology itself (agent type names, other topologies), so the
store passes what it knows; the rules themselves live here, once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from .errors import IntegrityError
from .topology import Topology
from .topology_configs import (
    CompoundConfig,
    CrossCheckConfig,
    DebateConfig,
    DelegationConfig,
    PipelineConfig,
)

SubTopologies = Callable[[str], Awaitable[list[str] | None]]
"""Given a topology name, its compound ``sub_topologies`` ([] if not compound), or None if absent."""


async def check_topology_rules(
    topology: Topology, member_names: Mapping[int, str], sub_topologies_of: SubTopologies
) -> None:
    """Raise :class:`IntegrityError` naming the field and value if a rule is broken.

    ``member_names`` maps every existing agent type id used by the memberships to its name;
    an id missing from it is a dangling reference.
    """
    missing = sorted({m.agent_type_id for m in topology.memberships} - set(member_names))
    if missing:
        raise IntegrityError(f"topology {topology.name!r}: agent type ids {missing} do not exist")
    members = {member_names[m.agent_type_id] for m in topology.memberships}
    config = topology.get_typed_config()
    where = f"topology {topology.name!r} ({topology.topology_type.value})"

    if isinstance(config, DebateConfig) and config.mediator_agent_name is not None:
        _require_member(where, "mediator_agent_name", config.mediator_agent_name, members)
    elif isinstance(config, DelegationConfig) and config.fallback_agent_name is not None:
        _require_member(where, "fallback_agent_name", config.fallback_agent_name, members)
    elif isinstance(config, CrossCheckConfig) and len(topology.memberships) < config.num_checkers:
        raise IntegrityError(
            f"{where}: num_checkers is {config.num_checkers} but it has {len(topology.memberships)} member(s)"
        )
    elif isinstance(config, PipelineConfig) and config.stages:
        slots = {m.slot_name for m in topology.memberships}
        absent = [stage for stage in config.stages if stage not in slots]
        if absent:
            raise IntegrityError(f"{where}: stages {absent} have no member (slot_name = stage name)")
    elif isinstance(config, CompoundConfig):
        await _check_compound(topology.name, config.sub_topologies, sub_topologies_of, where)


def _require_member(where: str, field: str, name: str, members: set[str]) -> None:
    if name not in members:
        raise IntegrityError(
            f"{where}: {field} {name!r} is not a member (members: {sorted(members) or 'none'})"
        )


async def _check_compound(root: str, subs: list[str], sub_topologies_of: SubTopologies, where: str) -> None:
    """Every sub-topology exists and the nesting never leads back to ``root``."""
    stack: list[tuple[str, tuple[str, ...]]] = [(sub, (root, sub)) for sub in subs]
    seen: set[str] = set()
    while stack:
        name, path = stack.pop()
        if name == root:
            raise IntegrityError(f"{where}: sub_topologies form a cycle: {' -> '.join(path)}")
        if name in seen:
            continue
        seen.add(name)
        children = await sub_topologies_of(name)
        if children is None:
            if len(path) == 2:
                raise IntegrityError(f"{where}: sub_topologies names {name!r}, which does not exist")
            continue  # a deeper topology lost its child: reported when that one is saved
        stack.extend((child, (*path, child)) for child in children)


__all__ = ["SubTopologies", "check_topology_rules"]
