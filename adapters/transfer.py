"""Moving a whole store: export to JSON Lines, import from it, copy between two stores.

Everything goes through the ports (``list`` to read, ``restore_many`` to write), so any
two backends can exchange data, and every step can be rerun after an interruption:
``restore_many`` skips what is already there. Entities are written in dependency order
(agent types, topologies, executions parents first, instances, results, messages).

The export format is versioned: a header line, one line per entity, and a trailer with
the counts and a checksum of the content (``{"kind": ..., "data": ...}`` lines).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel

from qmcp_agents.domain import AgentInstance, AgentType, Execution, Message, Result, Topology, utc_now
from qmcp_agents.domain.errors import IntegrityError
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import MAX_LIMIT

FORMAT = "qmcp-agents-export"
VERSION = 1
KINDS: dict[str, type[BaseModel]] = {
    "agent_type": AgentType,
    "topology": Topology,
    "execution": Execution,
    "agent_instance": AgentInstance,
    "result": Result,
    "message": Message,
}
Progress = Callable[[str, int], None]
"""Called with (kind, how many more were handled)."""


@dataclass
class Summary:
    """Per kind: how many entities were read, and how many were newly written."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    checksum: str = ""


async def _pages(fetch: Callable[[str | None], Any]) -> AsyncIterator[list[Any]]:
    after: str | None = None
    while True:
        page = await fetch(after)
        if page.items:
            yield page.items
        if page.next_cursor is None:
            return
        after = page.next_cursor


def _parents_first(executions: list[Execution]) -> list[Execution]:
    by_id = {e.id: e for e in executions}
    depth: dict[Any, int] = {}

    def level(execution: Execution) -> int:
        if execution.id not in depth:
            parent = by_id.get(execution.parent_id) if execution.parent_id else None
            depth[execution.id] = 0 if parent is None else level(parent) + 1
        return depth[execution.id]

    return sorted(executions, key=lambda e: (level(e), e.id))


async def batches(store: Store, size: int = 500) -> AsyncIterator[tuple[str, list[Any]]]:
    """Everything in ``store`` as (kind, entities) batches, in dependency order."""
    size = min(size, MAX_LIMIT)
    async for page in _pages(lambda a: store.agent_types.list(limit=size, after=a)):
        yield "agent_type", page
    async for page in _pages(lambda a: store.topologies.list(limit=size, after=a)):
        yield "topology", page
    executions: list[Execution] = []
    async for page in _pages(lambda a: store.executions.list(limit=size, after=a)):
        executions.extend(page)
    ordered = _parents_first(executions)
    for start in range(0, len(ordered), size):
        yield "execution", ordered[start : start + size]
    async for page in _pages(lambda a: store.agent_instances.list(limit=size, after=a)):
        yield "agent_instance", page
    async for page in _pages(lambda a: store.results.list(limit=size, after=a)):
        yield "result", page
    for execution in ordered:
        async for page in _pages(lambda a, e=execution.id: store.messages.list(e, limit=size, after=a)):  # type: ignore[misc]
            yield "message", page


def _line(kind: str, entity: BaseModel) -> str:
    return json.dumps(
        {"kind": kind, "data": entity.model_dump(mode="json")}, sort_keys=True, separators=(",", ":")
    )


class _Digest:
    """Counts and a checksum of the content, independent of backend and of batch boundaries.

    Lines are hashed as they stream past, except executions: they come parents first, an
    order that can differ between stores, so their lines are kept and hashed sorted.
    """

    def __init__(self) -> None:
        self.counts = dict.fromkeys(KINDS, 0)
        self._hashes = {kind: hashlib.sha256() for kind in KINDS}
        self._executions: list[str] = []

    def add(self, kind: str, entities: list[Any]) -> list[str]:
        """Take a batch in; returns its lines (what an export writes)."""
        lines = [_line(kind, entity) for entity in entities]
        self.counts[kind] += len(lines)
        if kind == "execution":
            self._executions.extend(lines)
        else:
            for line in lines:
                self._hashes[kind].update(line.encode() + b"\n")
        return lines

    def hexdigest(self) -> str:
        for line in sorted(self._executions):
            self._hashes["execution"].update(line.encode() + b"\n")
        self._executions = []
        whole = hashlib.sha256()
        for kind in KINDS:
            whole.update(self._hashes[kind].digest())
        return whole.hexdigest()


async def fingerprint(store: Store) -> Summary:
    """Counts and checksum of everything in ``store``."""
    digest = _Digest()
    async for kind, entities in batches(store):
        digest.add(kind, entities)
    summary = Summary(counts=digest.counts)
    summary.checksum = digest.hexdigest()
    return summary


async def _restore(target: Store, kind: str, entities: list[Any]) -> int:
    repository = {
        "agent_type": target.agent_types,
        "topology": target.topologies,
        "execution": target.executions,
        "agent_instance": target.agent_instances,
        "result": target.results,
        "message": target.messages,
    }[kind]
    written: int = await repository.restore_many(entities)  # type: ignore[attr-defined]
    return written


async def copy_store(
    source: Store, target: Store, *, batch_size: int = 500, progress: Progress | None = None
) -> Summary:
    """Copy everything from ``source`` into ``target`` and verify counts and checksums.

    Rerunnable: what ``target`` already has is skipped. Raises ``IntegrityError`` when the
    copy does not match the source at the end.
    """
    summary = Summary()
    async for kind, entities in batches(source, batch_size):
        summary.counts[kind] += len(entities)
        summary.written[kind] += await _restore(target, kind, entities)
        if progress is not None:
            progress(kind, len(entities))
    await verify(source, target, summary)
    return summary


async def verify(source: Store, target: Store, summary: Summary | None = None) -> str:
    left, right = await fingerprint(source), await fingerprint(target)
    if left.counts != right.counts or left.checksum != right.checksum:
        counts = [
            f"{kind}: source has {left.counts.get(kind, 0)}, target has {right.counts.get(kind, 0)}"
            for kind in KINDS
            if left.counts.get(kind, 0) != right.counts.get(kind, 0)
        ]
        raise IntegrityError(
            "the copy differs from its source: "
            + ("; ".join(counts) or "same counts but different content")
            + f" (checksum: source {left.checksum[:12]}, target {right.checksum[:12]})"
        )
    if summary is not None:
        summary.checksum = left.checksum
    return left.checksum


async def export_store(
    store: Store, out: TextIO, *, batch_size: int = 500, progress: Progress | None = None
) -> Summary:
    """Write everything in ``store`` to ``out`` as JSON Lines."""
    digest = _Digest()
    out.write(json.dumps({"format": FORMAT, "version": VERSION, "exported_at": utc_now().isoformat()}) + "\n")
    async for kind, entities in batches(store, batch_size):
        for line in digest.add(kind, entities):  # checksummed as written: one read of the store
            out.write(line + "\n")
        if progress is not None:
            progress(kind, len(entities))
    summary = Summary(counts=digest.counts)
    summary.checksum = digest.hexdigest()
    out.write(json.dumps({"kind": "end", "counts": summary.counts, "checksum": summary.checksum}) + "\n")
    return summary


def _read(lines: Iterable[str]) -> Iterable[tuple[str, dict[str, Any]]]:
    header_seen = False
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValueError(f"line {number}: not JSON ({error.msg})") from None
        if not header_seen:
            if record.get("format") != FORMAT:
                raise ValueError(f"line {number}: not a {FORMAT} file")
            if record.get("version") != VERSION:
                raise ValueError(f"line {number}: export version {record.get('version')!r} is not {VERSION}")
            header_seen = True
            continue
        kind = record.get("kind")
        if kind == "end":
            yield "end", record
            return
        if kind not in KINDS:
            raise ValueError(f"line {number}: unknown kind {kind!r}")
        yield kind, record["data"]
    raise ValueError("the export ends without its trailer line: it is incomplete")


async def import_store(
    target: Store, path: Path, *, batch_size: int = 500, progress: Progress | None = None
) -> Summary:
    """Restore an export into ``target`` (rerunnable), then check counts and checksum."""
    summary = Summary()
    pending: list[Any] = []
    pending_kind = ""
    trailer: dict[str, Any] = {}

    async def flush() -> None:
        if pending:
            summary.written[pending_kind] += await _restore(target, pending_kind, list(pending))
            if progress is not None:
                progress(pending_kind, len(pending))
            pending.clear()

    with path.open(encoding="utf-8") as source:
        for kind, data in _read(source):
            if kind == "end":
                trailer = data
                break
            if kind != pending_kind or len(pending) >= batch_size:
                await flush()
                pending_kind = kind
            pending.append(KINDS[kind].model_validate(data))
            summary.counts[kind] += 1
    await flush()
    if trailer.get("counts") != summary.counts:
        raise IntegrityError(
            f"the export's counts {trailer.get('counts')} do not match its lines {summary.counts}"
        )
    after = await fingerprint(target)
    summary.checksum = after.checksum
    if after.counts == summary.counts and after.checksum != trailer.get("checksum"):
        raise IntegrityError("the imported store's checksum does not match the export's")
    return summary


__all__ = [
    "FORMAT",
    "KINDS",
    "VERSION",
    "Summary",
    "batches",
    "copy_store",
    "export_store",
    "fingerprint",
    "import_store",
    "verify",
]
