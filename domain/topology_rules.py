"""Rules a topology must satisfy with its members, checked by every store on save.

They need data beyond the topology itself (agent type names, other topologies), so the
store passes what it knows; the rules themselves live here, once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from .enums import AggregationMethod, ConsensusMethod
from .errors import IntegrityError
from .seating import MEDIATOR_ROLES, MEDIATOR_SLOT, Seat, mediator_seat
from .topology import Topology
from .topology_configs import (
    CompoundConfig,
    CrossCheckConfig,
    DebateConfig,
    DelegationConfig,
    EnsembleConfig,
    PipelineConfig,
)

SubTopologies = Callable[[str], Awaitable[list[str] | None]]
"""Given a topology name, its compound ``sub_topologies`` ([] if not compound), or None if absent."""


async def check_topology_rules(
    topology: Topology,
    member_names: Mapping[int, str],
    sub_topologies_of: SubTopologies,
    *,
    member_roles: Mapping[int, str],
) -> None:
    """Raise :class:`IntegrityError` naming the field and value if a rule is broken.

    ``member_names`` maps every existing agent type id used by the memberships to its name;
    an id missing from it is a dangling reference. ``member_roles`` maps the same ids to
    their agent type's role (its value), which decides who mediates when no name is given.
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
    seats = [
        Seat(
            m.slot_name, member_names[m.agent_type_id], str(member_roles.get(m.agent_type_id, "")), m.position
        )
        for m in topology.memberships
    ]
    _check_parts(topology, seats, where)


def _unused(where: str, field: str, because: str) -> IntegrityError:
    return IntegrityError(f"{where}: {field} is set but {because}, so it would be ignored; remove it")


def _no_mediator(where: str, named: str) -> IntegrityError:
    return IntegrityError(
        f"{where}: consensus_method is 'mediator' but no member mediates: {named}give a member the "
        f"slot {MEDIATOR_SLOT!r} or an agent type whose role is {' or '.join(MEDIATOR_ROLES)}"
    )


def _check_parts(topology: Topology, seats: list[Seat], where: str) -> None:
    """Every config field is used by the engine, and every part it needs has a player.

    ``topology.config`` holds only the keys a user set, so a key that the rest of the
    config makes meaningless is refused rather than silently ignored.
    """
    config = topology.get_typed_config()
    given = topology.config
    if isinstance(config, DebateConfig):
        if config.consensus_method is ConsensusMethod.MEDIATOR_DECISION:
            if mediator_seat(seats, config.mediator_agent_name) is None:
                raise _no_mediator(where, "set mediator_agent_name to a member's agent type, or ")
        elif config.mediator_agent_name is not None:
            raise _unused(
                where,
                f"mediator_agent_name {config.mediator_agent_name!r}",
                f"consensus_method is {config.consensus_method.value!r} (the mediator is asked only "
                "when it is 'mediator')",
            )
        if "convergence_threshold" in given and not config.allow_early_termination:
            raise _unused(where, "convergence_threshold", "allow_early_termination is false")
    elif isinstance(config, CrossCheckConfig):
        checkers = len(seats)
        if config.consensus_method is ConsensusMethod.MEDIATOR_DECISION:
            if mediator_seat(seats) is None:
                raise _no_mediator(where, "")
            checkers -= 1
            if checkers < config.num_checkers:
                raise IntegrityError(
                    f"{where}: num_checkers is {config.num_checkers} but it has {checkers} member(s) "
                    "besides the mediator"
                )
        if len(config.checker_specializations) > config.num_checkers:
            raise IntegrityError(
                f"{where}: checker_specializations lists {len(config.checker_specializations)} "
                f"{config.checker_specializations} but num_checkers is {config.num_checkers}"
            )
    elif isinstance(config, DelegationConfig):
        if config.routing_strategy == "round_robin" and config.fallback_agent_name is not None:
            raise _unused(
                where,
                f"fallback_agent_name {config.fallback_agent_name!r}",
                "routing_strategy is 'round_robin' (every member takes tasks in turn; only "
                "capability_match falls back)",
            )
    elif isinstance(config, EnsembleConfig):
        if "diversity_weight" in given and config.aggregation_method in _NO_DIVERSITY:
            raise _unused(
                where,
                "diversity_weight",
                f"aggregation_method is {config.aggregation_method.value!r} (only weighted, best_of "
                "and synthesis weigh diversity)",
            )
    elif isinstance(config, PipelineConfig):
        if "max_stage_retries" in given and not config.retry_failed_stages:
            raise _unused(where, "max_stage_retries", "retry_failed_stages is false")
    elif isinstance(config, CompoundConfig) and topology.memberships:
        raise IntegrityError(
            f"{where}: a compound topology runs its sub_topologies and has no members of its own, "
            f"got {len(topology.memberships)} (slots {sorted(s.slot for s in seats)})"
        )


_NO_DIVERSITY = frozenset({AggregationMethod.VOTE, AggregationMethod.AVERAGE, AggregationMethod.CONCAT})


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
