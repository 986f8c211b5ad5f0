"""The topology engine: run a topology with agents and record it through the ports."""

from .agents import Agent, AgentContext, AgentRefused, AgentReply, ScriptedAgent, reply
from .engine import Engine
from .run import AgentFailed, HumanInputNeeded, TopologyFailed

__all__ = [
    "Agent",
    "AgentContext",
    "AgentFailed",
    "AgentRefused",
    "AgentReply",
    "Engine",
    "HumanInputNeeded",
    "ScriptedAgent",
    "TopologyFailed",
    "reply",
]
