"""Reading what people write for the command: JSON or YAML documents, and agent scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from qmcp_agents.domain.engine import AgentContext, AgentReply, ScriptedAgent
from qmcp_agents.domain.engine.agents import Step


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{what} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None


def read_document(path: Path) -> Any:
    """A JSON or YAML file (by extension; YAML is a superset, so it is the fallback)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    if path.suffix.lower() == ".json":
        return parse_json(text, str(path))
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}") from None


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """``read_document`` of a file that must hold a mapping (of ``what``)."""
    document = read_document(path)
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a mapping of {what}")
    return document


def _step(raw: Any, where: str) -> Step:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: each reply is a mapping, got {raw!r}")
    if "error" in raw:
        return RuntimeError(str(raw["error"]))
    return AgentReply(
        output=raw.get("output", {}),
        confidence=raw.get("confidence"),
        reasoning=raw.get("reasoning"),
        token_usage=raw.get("token_usage"),
        needs_human=raw.get("ask_human"),
    )


def load_agents(path: Path) -> dict[str, ScriptedAgent]:
    """Scripted agents from a file::

    agents:
      optimist:                  # a slot name or an agent type name
        delay: 0.1               # seconds before each answer (optional)
        replies:                 # played in order; the last one repeats
          - output: {answer: adopt}
            confidence: 0.9
            token_usage: {input: 120, output: 12}
          - error: model unavailable   # this call fails
    """
    document = read_document(path)
    agents = document.get("agents", document) if isinstance(document, dict) else None
    if not isinstance(agents, dict) or not agents:
        raise ValueError(f"{path}: expected a mapping of agents (slot or agent type name -> script)")
    out = {}
    for name, script in agents.items():
        if (
            not isinstance(script, dict)
            or not isinstance(script.get("replies"), list)
            or not script["replies"]
        ):
            raise ValueError(f"{path}: agent {name!r} needs a non-empty list 'replies'")
        steps = [_step(raw, f"{path}: agent {name!r}") for raw in script["replies"]]
        out[str(name)] = ScriptedAgent(steps, delay=float(script.get("delay", 0)))
    return out


def default_agent(slot: str) -> ScriptedAgent:
    """An agent for a run without a script: it answers ``ok`` and says who it is."""

    def answer(context: AgentContext) -> AgentReply:
        return AgentReply(
            output={"answer": "ok", "by": context.slot_name},
            confidence=0.9,
            token_usage={"input": 10, "output": 3},
        )

    return ScriptedAgent([answer])


def topology_fields(file: Path | None, config: str | None) -> dict[str, Any]:
    """The topology fields of ``--file`` (YAML or JSON) with ``--config`` (JSON) over them,
    for ``topology add`` and ``topology update`` alike."""
    data = read_mapping(file, "topology fields") if file is not None else {}
    if config is not None:
        data["config"] = parse_json(config, "--config")
    return data
