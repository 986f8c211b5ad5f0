"""What the pages show, read through the ports only (the view never writes).

Each function returns plain data for a template or for ``/api/...``: the same reads serve
both, so the HTML and the JSON never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from qmcp_agents.domain import FINAL_STATUSES, ExecutionStatus, MessageType, NotFound, utc_now
from qmcp_agents.domain.execution import Execution, ExecutionRead
from qmcp_agents.domain.message import Message, Result
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import MAX_LIMIT

PAGE = 50
TRANSCRIPT_PAGE = 200
LIVE_LIMIT = 500
_DURATION = re.compile(r"^(\d+)(min|h|d)$")


class BadRequest(ValueError):
    """A malformed query parameter or path part: the page answers 400 with this message."""


def parse_uuid(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise BadRequest(f"{text!r} is not an execution id (a UUID)") from None


def parse_since(text: str | None) -> datetime | None:
    """``since``: an ISO date or datetime (UTC when no offset), or an age like 30min, 12h, 7d."""
    if not text:
        return None
    found = _DURATION.match(text)
    if found:
        amount, unit = int(found.group(1)), found.group(2)
        delta = {"min": timedelta(minutes=amount), "h": timedelta(hours=amount), "d": timedelta(days=amount)}[
            unit
        ]
        return utc_now() - delta
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"since={text!r}: use an ISO date or datetime, or an age such as 30min, 12h, 7d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.now().astimezone().tzinfo).astimezone()


def parse_status(text: str | None) -> ExecutionStatus | None:
    if not text:
        return None
    try:
        return ExecutionStatus(text)
    except ValueError:
        allowed = ", ".join(s.value for s in ExecutionStatus)
        raise BadRequest(f"status={text!r}: use one of {allowed}") from None


def tokens_of(execution: ExecutionRead | Execution, results: list[Result] | None = None) -> dict[str, int]:
    """Token totals: the engine's recorded totals when present, else the results' sum."""
    recorded = execution.metadata.get("token_usage")
    if isinstance(recorded, dict):
        return {k: v for k, v in recorded.items() if isinstance(v, int)}
    total: dict[str, int] = {}
    for result in results or []:
        for key, value in (result.token_usage or {}).items():
            total[key] = total.get(key, 0) + value
    return total


@dataclass
class ExecutionsPage:
    items: list[dict[str, Any]]
    next_cursor: str | None
    filters: dict[str, str]
    topologies: list[str]


async def executions_page(
    store: Store, *, status: str | None, topology: str | None, since: str | None, after: str | None
) -> ExecutionsPage:
    wanted_status = parse_status(status)
    started_after = parse_since(since)
    topology_id = None
    if topology:
        found = await store.topologies.find_by_name(topology)
        if found is None:
            raise BadRequest(f"topology={topology!r}: no topology has that name")
        topology_id = found.id
    try:
        page = await store.executions.list(
            status=wanted_status,
            topology_id=topology_id,
            started_after=started_after,
            limit=PAGE,
            after=after,
        )
    except ValueError as error:  # a tampered cursor
        raise BadRequest(
            f"after={after!r} is not a cursor this list gave ({error.__class__.__name__})"
        ) from None
    names = await topology_names(store)
    items = [
        {
            **ExecutionRead.from_entity(e).model_dump(mode="json"),
            "topology": names.get(e.topology_id, str(e.topology_id)),
            "tokens": tokens_of(e),
        }
        for e in page.items
    ]
    filters = {k: v for k, v in {"status": status, "topology": topology, "since": since}.items() if v}
    return ExecutionsPage(items, page.next_cursor, filters, sorted(names.values()))


async def topology_names(store: Store) -> dict[int, str]:
    out: dict[int, str] = {}
    after = None
    while True:
        page = await store.topologies.list(limit=MAX_LIMIT, after=after)
        out.update({t.id: t.name for t in page.items if t.id is not None})
        if page.next_cursor is None:
            return out
        after = page.next_cursor


def message_json(message: Message, names: dict[UUID, str]) -> dict[str, Any]:
    data = message.model_dump(mode="json", exclude={"revision"})
    data["sender"] = names.get(message.sender_id, str(message.sender_id)[:8])
    data["recipient"] = names.get(message.recipient_id, "") if message.recipient_id else "all"
    data["confidence"] = message.content.get("confidence") if isinstance(message.content, dict) else None
    data["tool_call"] = message.content.get("tool_call")
    return data


@dataclass
class ExecutionView:
    execution: dict[str, Any]
    topology: str
    topology_type: str
    messages: list[dict[str, Any]]
    next_cursor: str | None
    message_count: int
    results: list[dict[str, Any]]
    children: list[dict[str, Any]]
    tokens: dict[str, int]
    chart: dict[str, Any]
    timeline: list[dict[str, str]]
    final: bool
    awaiting: dict[str, Any] | None
    checkpoint: dict[str, Any] | None
    names: dict[str, str] = field(default_factory=dict)


async def instance_names(store: Store, execution_id: UUID) -> dict[UUID, str]:
    page = await store.agent_instances.list(execution_id=execution_id, limit=MAX_LIMIT)
    return {i.id: str(i.metadata.get("slot") or str(i.id)[:8]) for i in page.items}


async def execution_view(store: Store, execution_id: UUID, after: str | None = None) -> ExecutionView:
    entity = await store.executions.get(execution_id)  # NotFound -> 404
    execution = ExecutionRead.from_entity(entity)
    topology = await store.topologies.find(entity.topology_id)
    names = await instance_names(store, execution_id)
    try:
        page = await store.messages.list(execution_id, limit=TRANSCRIPT_PAGE, after=after)
    except ValueError:
        raise BadRequest(f"after={after!r} is not a cursor this transcript gave") from None
    results = (await store.results.list(execution_id=execution_id, limit=MAX_LIMIT)).items
    children = (await store.executions.list(parent_id=execution_id, limit=MAX_LIMIT)).items
    timeline = [{"at": execution.started_at.isoformat(), "what": "started"}]
    awaiting = execution.metadata.get("awaiting_human")
    if execution.status is ExecutionStatus.PAUSED:
        timeline.append({"at": "", "what": "paused: waiting for a person"})
    if execution.completed_at is not None:
        timeline.append({"at": execution.completed_at.isoformat(), "what": execution.status.value})
    return ExecutionView(
        execution=execution.model_dump(mode="json"),
        topology=topology.name if topology else str(entity.topology_id),
        topology_type=topology.topology_type.value if topology else "",
        messages=[message_json(m, names) for m in page.items],
        next_cursor=page.next_cursor,
        message_count=await store.messages.count(execution_id),
        results=[
            {**r.model_dump(mode="json", exclude={"revision"}), "agent": names.get(r.agent_instance_id, "")}
            for r in results
        ],
        children=[ExecutionRead.from_entity(c).model_dump(mode="json") for c in children],
        tokens=tokens_of(entity, results),
        chart={},
        timeline=timeline,
        final=execution.status in FINAL_STATUSES,
        awaiting=awaiting if isinstance(awaiting, dict) else None,
        checkpoint=execution.metadata.get("checkpoint"),
        names={str(k): v for k, v in names.items()},
    )


CHART_PAGES = 5


async def chart_messages(store: Store, execution_id: UUID) -> tuple[list[Message], bool]:
    """The messages the chart is drawn from: the first ``CHART_PAGES`` pages (5,000 messages),
    and whether that was all of them."""
    out: list[Message] = []
    after = None
    for _ in range(CHART_PAGES):
        page = await store.messages.list(execution_id, limit=MAX_LIMIT, after=after)
        out.extend(page.items)
        if page.next_cursor is None:
            return out, True
        after = page.next_cursor
    return out, False


async def chart(store: Store, execution_id: UUID) -> dict[str, Any]:
    """The confidence chart of an execution (served on its own, so a long transcript never
    slows the execution page down)."""
    await store.executions.get(execution_id)
    names = await instance_names(store, execution_id)
    messages, complete = await chart_messages(store, execution_id)
    return {**confidence_chart(messages, names), "complete": complete}


async def messages_since(store: Store, execution_id: UUID, since: int) -> dict[str, Any]:
    """Messages numbered above ``since`` (at most :data:`LIVE_LIMIT`), and the status: what
    a live page polls for."""
    if since < 0:
        raise BadRequest(f"since={since} must be a sequence number >= 0")
    execution = await store.executions.get(execution_id)
    total = await store.messages.count(execution_id)
    fresh: list[Message] = []
    if total > since:
        fresh = list(await store.messages.last(execution_id, min(total - since, LIVE_LIMIT)))
        fresh = [m for m in fresh if m.sequence_number > since]
    names = await instance_names(store, execution_id) if fresh else {}
    return {
        "status": execution.status.value,
        "final": execution.status in FINAL_STATUSES,
        "messages": [message_json(m, names) for m in fresh],
    }


# --- the chart ------------------------------------------------------------------------------

WIDTH, HEIGHT, PAD = 640, 240, 36
COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"]


def confidence_chart(messages: list[Message], names: dict[UUID, str]) -> dict[str, Any]:
    """Confidence of each agent's answers per round, as SVG coordinates: how a debate
    converged, or how an ensemble's answers spread."""
    series: dict[str, list[tuple[int, float]]] = {}
    for message in messages:
        confidence = (
            message.content.get("confidence") if message.message_type is MessageType.RESPONSE else None
        )
        if isinstance(confidence, int | float) and not isinstance(confidence, bool):
            agent = names.get(message.sender_id, str(message.sender_id)[:8])
            series.setdefault(agent, []).append((message.round_number, float(confidence)))
    if not series:
        return {"series": [], "rounds": [], "width": WIDTH, "height": HEIGHT}
    rounds = sorted({r for points in series.values() for r, _ in points})
    span = max(rounds[-1] - rounds[0], 1)

    def x(round_number: int) -> float:
        return PAD + (round_number - rounds[0]) / span * (WIDTH - 2 * PAD) if len(rounds) > 1 else WIDTH / 2

    def y(value: float) -> float:
        return HEIGHT - PAD - value * (HEIGHT - 2 * PAD)

    out = []
    for index, (agent, points) in enumerate(sorted(series.items())):
        spread = (index - (len(series) - 1) / 2) * 6 if len(rounds) == 1 else 0  # keep one round's dots apart
        coords = [(round(x(r) + spread, 1), round(y(c), 1), r, c) for r, c in points]
        out.append(
            {
                "agent": agent,
                "colour": COLOURS[index % len(COLOURS)],
                "points": coords,
                "path": " ".join(f"{px},{py}" for px, py, _, _ in coords),
            }
        )
    ticks = [{"x": round(x(r), 1), "label": str(r)} for r in rounds]
    grid = [{"y": round(y(v), 1), "label": f"{v:g}"} for v in (0.0, 0.25, 0.5, 0.75, 1.0)]
    return {"series": out, "rounds": ticks, "grid": grid, "width": WIDTH, "height": HEIGHT, "pad": PAD}


# --- topologies and agent types ------------------------------------------------------------


async def topologies(store: Store) -> list[dict[str, Any]]:
    types = {t.id: t.name for t in await _all_agent_types(store)}
    out = []
    after = None
    while True:
        page = await store.topologies.list(limit=MAX_LIMIT, after=after)
        for t in page.items:
            out.append(
                {
                    "name": t.name,
                    "description": t.description,
                    "topology_type": t.topology_type.value,
                    "config": t.get_typed_config().model_dump(mode="json"),
                    "members": [
                        {
                            "slot": m.slot_name,
                            "position": m.position,
                            "agent_type": types.get(m.agent_type_id, str(m.agent_type_id)),
                            "config_overrides": m.config_overrides,
                        }
                        for m in sorted(t.memberships, key=lambda m: (m.position, m.slot_name))
                    ],
                }
            )
        if page.next_cursor is None:
            return out
        after = page.next_cursor


async def _all_agent_types(store: Store) -> list[Any]:
    out: list[Any] = []
    after = None
    while True:
        page = await store.agent_types.list(limit=MAX_LIMIT, after=after)
        out.extend(page.items)
        if page.next_cursor is None:
            return out
        after = page.next_cursor


async def agent_types(store: Store) -> list[dict[str, Any]]:
    return [t.model_dump(mode="json", exclude={"revision"}) for t in await _all_agent_types(store)]


__all__ = [
    "BadRequest",
    "ExecutionView",
    "NotFound",
    "agent_types",
    "execution_view",
    "executions_page",
    "messages_since",
    "parse_uuid",
    "topologies",
]
