"""The topology engine: run a topology with agents and record it through the ports."""

from .agents import Agent, AgentContext, AgentRefused, AgentReply, ScriptedAgent, reply
from .budget import LimitExceeded, Limits
from .engine import Engine
from .failures import ChildPaused
from .run import AgentFailed, HumanInputNeeded, TopologyFailed

__all__ = [
    "Agent",
    "AgentContext",
    "AgentFailed",
    "AgentRefused",
    "AgentReply",
    "ChildPaused",
    "Engine",
    "HumanInputNeeded",
    "LimitExceeded",
    "Limits",
    "ScriptedAgent",
    "TopologyFailed",
    "reply",
]
