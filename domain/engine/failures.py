"""Why a run stops before its end: it failed, or it waits for a person."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID


class TopologyFailed(Exception):
    """The run cannot go on; becomes the execution's ``error`` with ``details``."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class AgentFailed(TopologyFailed):
    """An agent failed (raised or timed out) on every attempt it was allowed."""

    def __init__(self, slot: str, call: str, errors: list[str], **details: Any) -> None:
        super().__init__(
            f"agent in slot {slot!r} failed call {call!r} after {len(errors)} attempt(s): {errors[-1]}",
            {"slot": slot, "call": call, "errors": errors, **details},
        )
        self.slot = slot
        self.call = call


class HumanInputNeeded(Exception):
    """An agent asked a question only a person can answer; the execution pauses."""

    def __init__(self, slot: str, call: str, question: str) -> None:
        super().__init__(question)
        self.slot = slot
        self.call = call
        self.question = question

    def awaiting(self) -> dict[str, Any]:
        """What the paused execution records in ``metadata["awaiting_human"]``."""
        return {"slot": self.slot, "call": self.call, "question": self.question}


class ChildPaused(HumanInputNeeded):
    """A compound's child execution waits for a person, so its parent waits too.

    The parent records the child's question and the child's id; resuming the parent
    resumes the child with the answer.
    """

    def __init__(self, sub_topology: str, execution_id: UUID, awaiting: Mapping[str, Any]) -> None:
        super().__init__(str(awaiting.get("slot")), str(awaiting.get("call")), str(awaiting.get("question")))
        self.sub_topology = sub_topology
        self.execution_id = execution_id

    def awaiting(self) -> dict[str, Any]:
        return {
            **super().awaiting(),
            "sub_topology": self.sub_topology,
            "execution_id": str(self.execution_id),
        }


__all__ = ["AgentFailed", "ChildPaused", "HumanInputNeeded", "TopologyFailed"]
