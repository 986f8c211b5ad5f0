"""The demo: three topologies (a debate, a pipeline, an ensemble) with scripted agents.

``qmcp-agents demo`` (and ``make demo``) registers what is missing, runs each topology on
the store and prints the transcripts. Rerunning it adds three more executions.
"""

from __future__ import annotations

from typing import Any

from qmcp_agents.domain import AgentTypeCreate, TopologyCreate, services
from qmcp_agents.domain.engine import AgentContext, AgentReply, ScriptedAgent, reply
from qmcp_agents.domain.ports import Store

AGENT_TYPES = [
    ("optimist", "specialist", "Argues for the proposal."),
    ("skeptic", "critic", "Argues against the proposal."),
    ("judge", "reviewer", "Weighs both sides and decides."),
    ("researcher", "executor", "Gathers the facts."),
    ("writer", "synthesizer", "Turns facts into prose."),
    ("editor", "reviewer", "Tightens the prose."),
    ("forecaster", "specialist", "Estimates a number."),
]

TOPOLOGIES = [
    TopologyCreate(
        name="proposal-debate",
        description="Two debaters and a judge",
        topology_type="debate",
        config={"max_rounds": 2, "mediator_agent_name": "judge", "convergence_threshold": 1.0},
        agent_names=["optimist", "skeptic", "judge"],
    ),
    TopologyCreate(
        name="article-pipeline",
        description="Research, write, edit",
        topology_type="pipeline",
        config={"stages": ["research", "write", "edit"], "checkpoint_after": ["research"]},
        agent_names=["researcher", "writer", "editor"],
    ),
    TopologyCreate(
        name="forecast-ensemble",
        description="Three forecasters averaged",
        topology_type="ensemble",
        config={"aggregation_method": "average"},
        agent_names=["forecaster", "forecaster", "forecaster"],
    ),
]

INPUTS: dict[str, dict[str, Any]] = {
    "proposal-debate": {"proposal": "Use time-ordered UUIDv7 keys"},
    "article-pipeline": {"topic": "barn owls"},
    "forecast-ensemble": {"question": "Owls seen this winter?"},
}

USAGE = {"input": 220, "output": 40}


def _stage(text: str) -> Any:
    def step(context: AgentContext) -> AgentReply:
        previous = context.task.get("input", {})
        return reply(
            {"text": text.format(**{**previous, **INPUTS["article-pipeline"]})}, 0.9, token_usage=USAGE
        )

    return step


def agents() -> dict[str, dict[str, ScriptedAgent]]:
    """Fresh scripted agents for each demo topology (they count their calls)."""
    return {
        "proposal-debate": {
            "optimist": ScriptedAgent(
                [reply({"answer": "adopt", "why": "indexes stay compact"}, 0.8, token_usage=USAGE)]
            ),
            "skeptic": ScriptedAgent(
                [
                    reply({"answer": "reject", "why": "ids leak creation time"}, 0.6, token_usage=USAGE),
                    reply({"answer": "adopt", "why": "the times are public anyway"}, 0.7, token_usage=USAGE),
                ]
            ),
            "judge": ScriptedAgent(
                [reply({"answer": "adopt", "why": "both sides agree"}, 0.9, token_usage=USAGE)]
            ),
        },
        "article-pipeline": {
            "research": ScriptedAgent([_stage("Facts about {topic}: silent flight, heart-shaped face.")]),
            "write": ScriptedAgent([_stage("{text} They hunt at night.")]),
            "edit": ScriptedAgent([_stage("{text} (edited)")]),
        },
        "forecast-ensemble": {
            "forecaster": ScriptedAgent([reply({"answer": 12}, 0.7, token_usage=USAGE)]),
            "forecaster-2": ScriptedAgent([reply({"answer": 15}, 0.6, token_usage=USAGE)]),
            "forecaster-3": ScriptedAgent([reply({"answer": 9}, 0.8, token_usage=USAGE)]),
        },
    }


async def prepare(store: Store) -> list[tuple[str, dict[str, ScriptedAgent]]]:
    """Register the demo's agent types and topologies where missing."""
    for name, role, description in AGENT_TYPES:
        if await store.agent_types.find_by_name(name) is None:
            await services.register_agent_type(
                store,
                AgentTypeCreate(
                    name=name, description=description, role=role, config={"system_prompt": description}
                ),
            )
    for topology in TOPOLOGIES:
        if await store.topologies.find_by_name(topology.name) is None:
            await services.create_topology(store, topology)
    scripts = agents()
    return [(topology.name, scripts[topology.name]) for topology in TOPOLOGIES]
