"""What an LLM agent is told: instructions from its config and part, a prompt from the call.

Instructions say who the agent is (the agent type's ``system_prompt``, then its name, role,
slot and topology) and how to answer; the prompt carries the call itself (task, round, the
transcript the engine lets it read, and a person's answer on resume). They are plain text
so any model reads them, and deterministic so a scripted test model can match on them.
"""

from __future__ import annotations

import json
from typing import Any

from qmcp_agents.domain.engine import AgentContext
from qmcp_agents.domain.enums import TopologyType

PARTS: dict[TopologyType, str] = {
    TopologyType.DEBATE: (
        "Agents debate over rounds: argue your position, and weigh the earlier rounds' answers in the"
        " transcript. A mediator may be asked for the verdict."
    ),
    TopologyType.CHAIN_OF_COMMAND: (
        "Orders pass down a chain of command: turn a task into a directive for the level below, carry"
        " out the directive you are given, or settle an answer escalated to you."
    ),
    TopologyType.DELEGATION: "Tasks are routed to the agent best able to do them: do the task you are given.",
    TopologyType.CROSS_CHECK: (
        "Several checkers answer the same input independently, and approval needs them to agree: check"
        " it carefully, from your specialization when one is given."
    ),
    TopologyType.ENSEMBLE: "Several agents answer the same input independently; their answers are combined.",
    TopologyType.PIPELINE: (
        "You are one stage of a pipeline: turn the input (the previous stage's output) into what your"
        " stage produces for the next."
    ),
    TopologyType.COMPOUND: "Your topology is one part of a larger composition.",
}

JSON_FORMAT = "json"


def answer_format(output_format: str | None) -> str:
    if output_format == JSON_FORMAT:
        return (
            "Put your answer in `output` as a JSON object, with the value the others vote on or average"
            " under its key `answer`."
        )
    written = f", written as {output_format}" if output_format else ""
    return (
        f"Put your answer in `text`{written}, and its short form (a word, a label or a number) that"
        " the others can vote on or average in `answer`."
    )


def instructions(context: AgentContext, can_ask_human: bool) -> str:
    agent = context.agent_type
    config = context.config
    lines = [config.system_prompt.strip()] if config.system_prompt and config.system_prompt.strip() else []
    lines.append(
        f"You are the agent type {agent.name!r} ({agent.role.value}: {agent.description}), in slot"
        f" {context.slot_name!r} of the {context.topology_type.value} topology {context.topology!r}."
    )
    lines.append(PARTS[context.topology_type])
    lines.append(
        f"{answer_format(config.output_format)} Give your confidence in the answer as a number from"
        " 0 to 1 in `confidence`, and your reasoning in a sentence or two in `reasoning`."
    )
    if can_ask_human:
        lines.append(
            "If only a person can give you something you need, call ask_human with one short question;"
            " you will be asked again with their answer."
        )
    return "\n\n".join(lines)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def prompt(context: AgentContext) -> str:
    transcript = _json(list(context.transcript)) if context.transcript else "nothing yet"
    sections = [
        f"Call: {context.call} (round {context.round_number})",
        f"Task:\n{_json(context.task)}",
        f"The conversation so far:\n{transcript}",
    ]
    if context.human_input is not None:
        sections.append(f"You asked a person a question. Their answer:\n{_json(context.human_input)}")
    memory = context.capabilities.get("memory")
    if memory is not None and memory["recalled"]:
        remembered = "\n".join(
            f"- {m['text']}" + (f" [{', '.join(m['tags'])}]" if m.get("tags") else "")
            for m in memory["recalled"]
        )
        sections.append(f"What you remember (most relevant first):\n{remembered}")
    structured = context.capabilities.get("structured_output")
    if structured is not None:
        schema = _json(structured["schema"])
        sections.append(f"Your `output` must be valid against this JSON Schema:\n{schema}")
    return "\n\n".join(sections)


def repair_prompt(problems: list[str]) -> str:
    """Sent back with the conversation when an answer's output fails its JSON Schema."""
    listed = "\n".join(f"- {p}" for p in problems)
    return f"Your `output` does not match the JSON Schema:\n{listed}\nAnswer again with `output` fixed."


__all__ = ["JSON_FORMAT", "PARTS", "answer_format", "instructions", "prompt", "repair_prompt"]
