"""The topology engine: run a topology with agents and record it through the ports."""

from .agents import Agent, AgentContext, AgentReply, ScriptedAgent, reply
from .engine import Engine
from .run import AgentFailed, HumanInputNeeded, TopologyFailed

__all__ = [
    "Agent",
    "AgentContext",
    "AgentFailed",
    "AgentReply",
    "Engine",
    "HumanInputNeeded",
    "ScriptedAgent",
    "TopologyFailed",
    "reply",
]
