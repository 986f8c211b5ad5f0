"""The specification's enumerations, with their exact stored values."""

from __future__ import annotations

from enum import Enum


class AgentRole(str, Enum):
    """The primary function of an agent within a topology."""

    PLANNER = "planner"
    EXECUTOR = "executor"
    REVIEWER = "reviewer"
    CRITIC = "critic"
    SYNTHESIZER = "synthesizer"
    SPECIALIST = "specialist"
    COORDINATOR = "coordinator"
    OBSERVER = "observer"


class TopologyType(str, Enum):
    """The collaboration pattern of a group of agents."""

    DEBATE = "debate"
    CHAIN_OF_COMMAND = "chain"
    DELEGATION = "delegation"
    CROSS_CHECK = "crosscheck"
    ENSEMBLE = "ensemble"
    PIPELINE = "pipeline"
    COMPOUND = "compound"


class ExecutionStatus(str, Enum):
    """Status of a topology execution; see :mod:`qmcp_agents.domain.execution`."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES: frozenset[ExecutionStatus] = frozenset(
    {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)


class MessageType(str, Enum):
    """Type of an inter-agent message."""

    REQUEST = "request"
    RESPONSE = "response"
    FEEDBACK = "feedback"
    ESCALATION = "escalation"
    BROADCAST = "broadcast"
    SYSTEM = "system"


class ConsensusMethod(str, Enum):
    """How several agents reach one answer."""

    MAJORITY_VOTE = "majority"
    UNANIMOUS = "unanimous"
    WEIGHTED_VOTE = "weighted"
    MEDIATOR_DECISION = "mediator"
    FIRST_AGREEMENT = "first_agree"


class AggregationMethod(str, Enum):
    """How an ensemble combines its members' outputs."""

    VOTE = "vote"
    AVERAGE = "average"
    WEIGHTED = "weighted"
    CONCAT = "concat"
    BEST_OF = "best_of"
    SYNTHESIS = "synthesis"


__all__ = [
    "FINAL_STATUSES",
    "AgentRole",
    "AggregationMethod",
    "ConsensusMethod",
    "ExecutionStatus",
    "MessageType",
    "TopologyType",
]
