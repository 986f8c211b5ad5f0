"""Who plays the parts a topology's config does not name: mediator, synthesizer, levels.

One rule, used both when a topology is saved (so a debate that cannot be decided is
refused) and when it runs (so the engine asks the member the save-time check found).

* **Mediator** (debate and cross-check with ``consensus_method`` mediator): the member of
  the agent type ``mediator_agent_name`` when the config names one; else the member in
  slot ``mediator``; else the member whose agent type's role is ``coordinator``; else the
  one whose role is ``synthesizer``. Ties go to the lowest position.
* **Synthesizer** (ensemble with ``aggregation_method`` synthesis): the member in slot
  ``synthesizer``, else the member whose role is ``synthesizer`` (lowest position).
* **Chain levels**: ``services.create_topology`` seats the i-th agent of a chain of
  command on the i-th authority level (slot = level name).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .enums import AgentRole

MEDIATOR_SLOT = "mediator"
SYNTHESIZER_SLOT = "synthesizer"
MEDIATOR_ROLES = (AgentRole.COORDINATOR.value, AgentRole.SYNTHESIZER.value)


@dataclass(frozen=True, slots=True)
class Seat:
    """A member as the seating rules see it."""

    slot: str
    agent_type: str
    role: str
    position: int


def _ordered(seats: Iterable[Seat]) -> list[Seat]:
    return sorted(seats, key=lambda s: (s.position, s.slot))


def mediator_seat(seats: Iterable[Seat], mediator_agent_name: str | None = None) -> Seat | None:
    """The member that mediates, or None (see the module's rule)."""
    ordered = _ordered(seats)
    if mediator_agent_name is not None:
        return next((s for s in ordered if s.agent_type == mediator_agent_name), None)
    by_slot = next((s for s in ordered if s.slot == MEDIATOR_SLOT), None)
    if by_slot is not None:
        return by_slot
    for role in MEDIATOR_ROLES:
        by_role = next((s for s in ordered if s.role == role), None)
        if by_role is not None:
            return by_role
    return None


def synthesizer_seat(seats: Iterable[Seat]) -> Seat | None:
    """The member that synthesizes an ensemble's answers, or None."""
    ordered = _ordered(seats)
    by_slot = next((s for s in ordered if s.slot == SYNTHESIZER_SLOT), None)
    if by_slot is not None:
        return by_slot
    return next((s for s in ordered if s.role == AgentRole.SYNTHESIZER.value), None)


def chain_slots(levels: Sequence[str], agent_names: Sequence[str]) -> list[str]:
    """Slots for a chain of command's agents: one level each, from the top down.

    Raises ``ValueError`` when there are more agents than levels (a level seats one agent;
    an agent in a slot that names no level would be ranked by position alone).
    """
    if len(agent_names) > len(levels):
        raise ValueError(
            f"authority_levels {list(levels)} seat one agent each, from the top down, "
            f"but agent_names lists {len(agent_names)}: {list(agent_names)}"
        )
    return list(levels[: len(agent_names)])


__all__ = [
    "MEDIATOR_ROLES",
    "MEDIATOR_SLOT",
    "SYNTHESIZER_SLOT",
    "Seat",
    "chain_slots",
    "mediator_seat",
    "synthesizer_seat",
]
