"""How the command shows things: Rich tables on a terminal, JSON for scripts."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from qmcp_agents.domain import AgentCapability, AgentType, ExecutionRead, Message, Result, Topology
from qmcp_agents.domain.engine.budget import LIMITS_KEY, USAGE_KEY


def jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def dumps(value: Any) -> str:
    return json.dumps(jsonable(value), indent=2, sort_keys=True, default=str)


def short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


def _capability_label(capability: AgentCapability) -> str:
    """``memory``, ``memory (off)``, or the skill tags themselves (``skills: sql, python``)."""
    label = capability.name
    if capability.name == "skills":
        label = f"skills: {' '.join(map(str, capability.config.get('tags', [])))}"
    return label if capability.enabled else f"{label} (off)"


def whole_ids(table: Table, width: int = 36) -> Table:
    """Keep the first column (the id) whole however narrow the terminal: an id is there to be
    copied, so the other columns shrink instead."""
    table.columns[0].no_wrap = True
    table.columns[0].min_width = width
    table.columns[0].overflow = "ignore"
    return table


def agent_types_table(items: list[AgentType]) -> Table:
    table = Table(
        "id", "name", "role", "version", "model", "capabilities", "description", title="Agent types"
    )
    whole_ids(table, max((len(str(t.id)) for t in items), default=2))
    for t in items:
        caps = ", ".join(_capability_label(c) for c in t.config.capabilities) or "-"
        table.add_row(
            str(t.id), t.name, t.role.value, t.version, t.config.model, caps, short(t.description, 40)
        )
    return table


def topologies_table(items: list[Topology]) -> Table:
    table = Table("id", "name", "type", "members", "config", title="Topologies")
    whole_ids(table, max((len(str(t.id)) for t in items), default=2))
    for t in items:
        table.add_row(str(t.id), t.name, t.topology_type.value, str(len(t.memberships)), short(t.config, 50))
    return table


def agent_type_detail(agent_type: AgentType) -> Table:
    """One agent type as a two-column table: its fields, then its config key by key."""
    table = Table("field", "value", title=Text(f"Agent type {agent_type.name}"), show_header=False)

    def row(key: str, value: Any) -> None:  # Text: a prompt's "[...]" is not Rich markup
        table.add_row(key, Text(value if isinstance(value, str) else json.dumps(value)))

    row("id", str(agent_type.id))
    row("name", agent_type.name)
    row("role", agent_type.role.value)
    row("version", agent_type.version)
    row("description", agent_type.description)
    for key, value in agent_type.config.model_dump(mode="json").items():
        if key == "capabilities":
            value = ", ".join(_capability_label(c) for c in agent_type.config.capabilities) or "-"
        row(f"config.{key}", value)
    row("created_at", agent_type.created_at.isoformat(timespec="seconds"))
    row("updated_at", agent_type.updated_at.isoformat(timespec="seconds"))
    return table


def topology_tree(topology: Topology, type_names: dict[int, str]) -> Tree:
    tree = Tree(f"[bold]{topology.name}[/bold] ({topology.topology_type.value}) v{topology.version}")
    tree.add(f"config: {json.dumps(topology.config, sort_keys=True)}")
    members = tree.add(f"members ({len(topology.memberships)})")
    for m in sorted(topology.memberships, key=lambda m: (m.position, m.slot_name)):
        agent = type_names.get(m.agent_type_id, m.agent_type_id)
        line = f"#{m.position} slot [cyan]{m.slot_name}[/cyan] ← {agent}"
        if m.config_overrides:
            line += f"  overrides {json.dumps(m.config_overrides, sort_keys=True)}"
        members.add(line)
    return tree


NARROW = 100
"""Below this many columns the executions table folds topology and error under the id."""


def _narrow_executions_table(items: list[ExecutionRead], topology_names: dict[int, str]) -> Table:
    """Six columns beside a 36-character id leave four characters each at 80 columns
    (``topo…``, ``comp…``): so topology and error go under the id, status keeps its whole
    word and the start shows to the minute, in UTC."""
    table = Table("id / topology", "status", "started (UTC)", "duration", title="Executions", show_edge=False)
    first = table.columns[0]
    first.min_width, first.overflow = 36, "fold"  # an id is 36 characters: it never folds
    table.columns[1].no_wrap = True  # "completed", not "comp…"; the start wraps at its space
    for e in items:
        cell = Text(str(e.id))
        cell.append(f"\n{topology_names.get(e.topology_id, str(e.topology_id))}", style="dim")
        if e.error:
            cell.append(f"\nerror: {short(e.error, 80)}", style="red")
        started = e.started_at.astimezone(UTC) if e.started_at.tzinfo else e.started_at
        table.add_row(
            cell,
            e.status.value,
            started.strftime("%Y-%m-%d %H:%M"),
            f"{e.duration_ms} ms" if e.duration_ms is not None else "-",
        )
    return table


def executions_table(
    items: list[ExecutionRead], topology_names: dict[int, str], width: int | None = None
) -> Table:
    """``width``: the console's; under ``NARROW`` columns the table folds (see above)."""
    if width is not None and width < NARROW:
        return _narrow_executions_table(items, topology_names)
    table = Table("id", "topology", "status", "started", "duration", "error", title="Executions")
    whole_ids(table)
    for e in items:
        duration = f"{e.duration_ms} ms" if e.duration_ms is not None else "-"
        table.add_row(
            str(e.id),
            topology_names.get(e.topology_id, str(e.topology_id)),
            e.status.value,
            e.started_at.isoformat(timespec="seconds"),
            duration,
            short(e.error or "", 40),
        )
    return table


def transcript(
    console: Console,
    execution: ExecutionRead,
    topology: str,
    messages: list[Message],
    results: list[Result],
    names: dict[UUID, str],
) -> None:
    tokens = _token_totals(execution, results)
    duration = f"{execution.duration_ms} ms" if execution.duration_ms is not None else "running"
    console.print(
        f"[bold]{topology}[/bold] · execution {execution.id} · "
        f"[bold]{execution.status.value}[/bold] · {duration}"
    )
    console.print(f"input  {short(execution.input_data, 100)}")
    by_round: dict[int, list[Message]] = defaultdict(list)
    for message in messages:
        by_round[message.round_number].append(message)
    for round_number in sorted(by_round):
        table = Table(
            "#", "from", "to", "type", "content", "conf.", title=f"round {round_number}", title_justify="left"
        )
        for m in by_round[round_number]:
            conf = m.content.get("confidence") if m.message_type.value == "response" else None
            table.add_row(
                str(m.sequence_number),
                names.get(m.sender_id, str(m.sender_id)),
                names.get(m.recipient_id, "everyone") if m.recipient_id else "everyone",
                m.message_type.value,
                short(m.content.get("output", m.content), 70),
                f"{conf:.2f}" if isinstance(conf, float) else "-",
            )
        console.print(table)
    if results:
        summary = Table("agent", "confidence", "tokens", "output", title="results", title_justify="left")
        for r in results:
            summary.add_row(
                names.get(r.agent_instance_id, "?"),
                f"{r.confidence:.2f}" if r.confidence is not None else "-",
                str(sum(v for k, v in (r.token_usage or {}).items() if k in ("input", "output"))),
                short(r.output, 60),
            )
        console.print(summary)
    total = ", ".join(f"{k} {v}" for k, v in tokens.items()) or "none"
    console.print(
        f"tokens {total} · output {short(execution.output_data, 100) if execution.output_data else '-'}"
    )
    limits = {k: v for k, v in (execution.metadata.get(LIMITS_KEY) or {}).items() if v is not None}
    if limits:
        console.print("limits " + ", ".join(f"{k} {v:g}" for k, v in limits.items()))
    if execution.error:
        console.print(f"[red]error[/red] {execution.error}")


def _token_totals(execution: ExecutionRead, results: list[Result]) -> dict[str, int]:
    """The execution's recorded totals (the engine writes them, children and unanswered
    questions included); for executions recorded without them, the sum of its results."""
    recorded = execution.metadata.get(USAGE_KEY)
    if isinstance(recorded, dict):
        return {k: v for k, v in recorded.items() if isinstance(v, int)}
    tokens: defaultdict[str, int] = defaultdict(int)
    for result in results:
        for key, count in (result.token_usage or {}).items():
            tokens[key] += count
    return dict(sorted(tokens.items()))
