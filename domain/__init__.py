"""qmcp-agents' domain: pure Pydantic models, rules and ports (no I/O, no drivers)."""

from .agent import (
    AgentCapability,
    AgentConfig,
    AgentInstance,
    AgentType,
    AgentTypeBase,
    AgentTypeCreate,
    AgentTypeRead,
    AgentTypeUpdate,
)
from .clock import to_utc_ms, utc_now
from .enums import (
    FINAL_STATUSES,
    AgentRole,
    AggregationMethod,
    ConsensusMethod,
    ExecutionStatus,
    MessageType,
    TopologyType,
)
from .errors import (
    AlreadyExists,
    ConcurrencyError,
    IntegrityError,
    InvalidTransition,
    NotFound,
    QmcpError,
    StoreUnavailable,
)
from .execution import Execution, ExecutionCreate, ExecutionRead
from .ids import uuid7
from .message import Message, MessageCreate, MessageRead, Result
from .topology import (
    Topology,
    TopologyBase,
    TopologyCreate,
    TopologyMembership,
    TopologyRead,
    TopologyUpdate,
)
from .topology_configs import (
    ChainOfCommandConfig,
    CompoundConfig,
    CrossCheckConfig,
    DebateConfig,
    DelegationConfig,
    EnsembleConfig,
    PipelineConfig,
)

__all__ = [
    "FINAL_STATUSES",
    "AgentCapability",
    "AgentConfig",
    "AgentInstance",
    "AgentRole",
    "AgentType",
    "AgentTypeBase",
    "AgentTypeCreate",
    "AgentTypeRead",
    "AgentTypeUpdate",
    "AggregationMethod",
    "AlreadyExists",
    "ChainOfCommandConfig",
    "CompoundConfig",
    "ConcurrencyError",
    "ConsensusMethod",
    "CrossCheckConfig",
    "DebateConfig",
    "DelegationConfig",
    "EnsembleConfig",
    "Execution",
    "ExecutionCreate",
    "ExecutionRead",
    "ExecutionStatus",
    "IntegrityError",
    "InvalidTransition",
    "Message",
    "MessageCreate",
    "MessageRead",
    "MessageType",
    "NotFound",
    "PipelineConfig",
    "QmcpError",
    "Result",
    "StoreUnavailable",
    "Topology",
    "TopologyBase",
    "TopologyCreate",
    "TopologyMembership",
    "TopologyRead",
    "TopologyType",
    "TopologyUpdate",
    "to_utc_ms",
    "utc_now",
    "uuid7",
]
