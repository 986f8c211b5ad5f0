"""The ``memory`` capability: remember, recall and forget, kept in the store.

Where memory lives: in the ``state`` of one *unbound* agent instance per agent type (no
``execution_id``, id derived from the agent type's id, ``metadata.memory_of`` naming it),
written through the store after every answer. So it survives a pause, a resume by another
process and a restart, and the next execution of any topology with that agent type recalls
it. (Instances bound to an execution are deleted with it; memory must outlive runs.)
Deleting the agent type needs that instance deleted first, as for any instance.

Recall ranks by relevance to the query (shared words) times importance times decay
(``0.5 ** (age_hours / decay_half_life_hours)`` when ``memory_decay``). Past
``max_memories`` the lowest-ranked memories are dropped; at ``summary_threshold`` (with
``auto_summarize``) the oldest half is folded into one summary memory. Both are
deterministic, so a run replayed from the store sees the same memory.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid5

from qmcp_agents.domain.agent import AgentInstance
from qmcp_agents.domain.clock import utc_now
from qmcp_agents.domain.errors import AlreadyExists, ConcurrencyError

from .configs import MemoryConfig
from .hooks import CapabilityHooks, HookContext

if TYPE_CHECKING:
    from qmcp_agents.domain.engine.agents import AgentContext, AgentReply

MEMORY_NAMESPACE = UUID("5f0d3c1e-8f7a-4b8e-9a51-6d1c2b7e4a90")
STATE_KEY = "memories"
SUMMARY_LIMIT = 4000
_WORD = re.compile(r"\w+")


def memory_instance_id(agent_type_id: int) -> UUID:
    """The id of the instance holding an agent type's memory (the same in every process)."""
    return uuid5(MEMORY_NAMESPACE, f"qmcp-agents/memory/{agent_type_id}")


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def decay(memory: dict[str, Any], now: datetime, config: MemoryConfig) -> float:
    """``importance`` weighed by age: halves every ``decay_half_life_hours`` when decaying."""
    importance = float(memory.get("importance", 0.5))
    if not config.memory_decay:
        return importance
    age_hours = max(0.0, (now - datetime.fromisoformat(memory["created_at"])).total_seconds() / 3600)
    return float(importance * 0.5 ** (age_hours / float(config.decay_half_life_hours)))


def rank(
    memories: list[dict[str, Any]], query: str, tags: list[str], now: datetime, config: MemoryConfig
) -> list[tuple[float, dict[str, Any]]]:
    wanted = _words(query)
    out = []
    for memory in memories:
        if tags and not set(tags) & set(memory.get("tags", [])):
            continue
        if wanted:
            relevance = len(wanted & _words(memory["text"] + " " + " ".join(memory.get("tags", [])))) / len(
                wanted
            )
        else:
            relevance = 1.0
        score = relevance * decay(memory, now, config)
        if score > 0:
            out.append((score, memory))
    out.sort(key=lambda pair: (-pair[0], pair[1]["id"]))
    return out


def apply(state: dict[str, Any], op: dict[str, Any], config: MemoryConfig) -> dict[str, Any]:
    """One remember / forget applied to a memory state, then the limits: a pure function,
    so concurrent writers merge by re-applying their operations to the newest state."""
    memories: list[dict[str, Any]] = [dict(m) for m in state.get("items", [])]
    next_id = int(state.get("next_id", 1))
    now = datetime.fromisoformat(op["at"])
    if op["op"] == "remember":
        memories.append(
            {
                "id": f"m{next_id}",
                "text": op["text"],
                "tags": sorted(set(op.get("tags", []))),
                "importance": op.get("importance", 0.5),
                "created_at": op["at"],
                "kind": "memory",
            }
        )
        next_id += 1
    elif op["op"] == "forget":
        memories = [m for m in memories if m["id"] not in op["ids"]]
    if config.auto_summarize and len(memories) >= config.summary_threshold:
        plain = [m for m in memories if m["kind"] == "memory"]
        fold = plain[: max(2, len(plain) // 2)] if len(plain) >= 2 else []
        if fold:
            folded = {m["id"] for m in fold}
            summary = {
                "id": f"m{next_id}",
                "text": ("summary: " + "; ".join(m["text"] for m in fold))[:SUMMARY_LIMIT],
                "tags": sorted({t for m in fold for t in m.get("tags", [])}),
                "importance": max(float(m.get("importance", 0.5)) for m in fold),
                "created_at": max(m["created_at"] for m in fold),
                "kind": "summary",
            }
            next_id += 1
            memories = [summary, *(m for m in memories if m["id"] not in folded)]
    while len(memories) > config.max_memories:
        weakest = min(memories, key=lambda m: (decay(m, now, config), m["created_at"], m["id"]))
        memories.remove(weakest)
    return {"items": memories, "next_id": next_id}


@dataclass
class MemoryBank:
    """An agent's memory during one call: read it, change it; :class:`MemoryHooks` saves."""

    config: MemoryConfig
    state: dict[str, Any]
    pending: list[dict[str, Any]] = field(default_factory=list)

    @property
    def items(self) -> list[dict[str, Any]]:
        return list(self.state.get("items", []))

    def remember(self, text: str, tags: list[str] | None = None, importance: float = 0.5) -> str:
        """Store ``text``; returns its id. ``importance`` in [0, 1]."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"memory text must be a non-empty string, got {text!r}")
        if not 0.0 <= float(importance) <= 1.0:
            raise ValueError(f"memory importance must be in [0, 1], got {importance!r}")
        op = {
            "op": "remember",
            "text": text,
            "tags": list(tags or []),
            "importance": float(importance),
            "at": utc_now().isoformat(),
        }
        self.pending.append(op)
        self.state = apply(self.state, op, self.config)
        return f"m{int(self.state['next_id']) - 1}"

    def recall(self, query: str = "", tags: list[str] | None = None, limit: int = 5) -> list[dict[str, Any]]:
        """The best ``limit`` memories for ``query`` (and any of ``tags``), best first."""
        return [m for _, m in rank(self.items, query, list(tags or []), utc_now(), self.config)[:limit]]

    def forget(self, ids: list[str]) -> int:
        """Drop the memories with these ids; returns how many there were."""
        present = {m["id"] for m in self.items} & set(ids)
        if present:
            op = {"op": "forget", "ids": sorted(present), "at": utc_now().isoformat()}
            self.pending.append(op)
            self.state = apply(self.state, op, self.config)
        return len(present)


class MemoryHooks(CapabilityHooks):
    """Loads the agent type's memory, offers it to each call, saves what the call changed."""

    config: MemoryConfig

    async def _holder(self, ctx: HookContext) -> AgentInstance:
        assert ctx.agent_type.id is not None
        holder_id = memory_instance_id(ctx.agent_type.id)
        found = await ctx.store.agent_instances.find(holder_id)
        if found is not None:
            return found
        try:
            return await ctx.store.agent_instances.add(
                AgentInstance(
                    id=holder_id,
                    agent_type_id=ctx.agent_type.id,
                    metadata={"memory_of": ctx.agent_type.name},
                    state={STATE_KEY: {"items": [], "next_id": 1}},
                )
            )
        except AlreadyExists:  # another run made it first
            return await ctx.store.agent_instances.get(holder_id)

    async def on_invoke(self, ctx: HookContext, request: AgentContext) -> AgentContext:
        holder = await self._holder(ctx)
        bank = MemoryBank(self.config, dict(holder.state.get(STATE_KEY, {})))
        ctx.data["memory"] = bank
        query = json.dumps(request.task, sort_keys=True, default=str)
        recalled = bank.recall(query) or bank.recall()
        extras = {**request.capabilities, "memory": {"bank": bank, "recalled": recalled}}
        return replace(request, capabilities=extras)

    async def on_response(self, ctx: HookContext, request: AgentContext, reply: AgentReply) -> AgentReply:
        bank: MemoryBank | None = ctx.data.pop("memory", None)
        if bank is not None and bank.pending:
            await self._save(ctx, bank.pending)
        return reply

    async def on_error(self, ctx: HookContext, error: BaseException) -> None:
        ctx.data.pop("memory", None)  # a failed call's memories are not kept

    async def _save(self, ctx: HookContext, ops: list[dict[str, Any]]) -> None:
        for attempt in range(8):
            holder = await self._holder(ctx)
            state = dict(holder.state.get(STATE_KEY, {}))
            for op in ops:
                state = apply(state, op, self.config)
            holder.update_state({STATE_KEY: state})
            try:
                await ctx.store.agent_instances.update(holder)
                return
            except ConcurrencyError:  # another run wrote memory meanwhile: re-apply on top
                await asyncio.sleep(0.005 * (attempt + 1))
        raise ConcurrencyError(f"memory of agent type {ctx.agent_type.name!r} kept changing; not saved")


__all__ = ["MemoryBank", "MemoryHooks", "apply", "decay", "memory_instance_id", "rank"]
