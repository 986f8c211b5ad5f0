"""Moving a whole store: export to JSON Lines, import from it, copy between two stores.

Everything goes through the ports (``list`` to read, ``restore_many`` to write), so any
two backends can exchange data. Entities are written in dependency order (agent types,
topologies, executions parents first, instances, results, messages).

An import or a copy never half-writes because of what it reads (issue 13): the whole
export (or the whole source) is checked first by :mod:`.transfer_checks`, and only then
written, inside one ``store.transaction()`` where the target has transactions. Without
them (MongoDB standalone) a failure of the target mid-write leaves the records written so
far, and rerunning completes it: what the target already has, unchanged, is skipped.

The export format is versioned: a header line, one line per entity, and a trailer with
the counts and a checksum of the content (``{"kind": ..., "data": ...}`` lines).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from qmcp_agents.domain import Execution, utc_now
from qmcp_agents.domain.errors import IntegrityError, QmcpError, SchemaMissing
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import MAX_LIMIT

from .transfer_checks import (
    FORMAT,
    KINDS,
    VERSION,
    Checker,
    Conflict,
    Digest,
    ExportFile,
    ExportRefused,
    is_empty,
    validate,
)

Progress = Callable[[str, int], None]
"""Called with (kind, how many more were handled)."""


@dataclass
class Summary:
    """Per kind: how many entities were read, and how many were newly written."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    checksum: str = ""
    atomic: bool = True
    """Whether the writes ran in one transaction (False: MongoDB without transactions, where
    a failure mid-write leaves what was written so far, and rerunning completes it)."""


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


async def fingerprint(store: Store) -> Summary:
    """Counts and checksum of everything in ``store``."""
    digest = Digest()
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


def _writing(target: Store) -> AbstractAsyncContextManager[Any]:
    """One transaction for all the writes, where the target has them."""
    return target.transaction() if target.capabilities.transactions else nullcontext()


async def _written(target: Store, atomic: bool, write: Callable[[], Any]) -> Any:
    """Run the writing pass; without a transaction, say what a failure leaves behind."""
    try:
        async with _writing(target):
            return await write()
    except QmcpError as error:
        if atomic:
            raise
        try:
            told = type(error)(
                f"{error} -- this store has no transactions: the records written before the "
                "failure stay; rerun the same command to complete it"
            )
        except TypeError:  # an error type with other arguments: report it as it is
            raise error from None
        raise told from error


async def _empty(target: Store, create_schema: bool) -> bool:
    """Whether ``target`` is empty; a schema still to be created counts as empty."""
    if not create_schema:
        return await is_empty(target)
    try:
        return await is_empty(target)
    except SchemaMissing:
        return True


async def copy_store(
    source: Store,
    target: Store,
    *,
    batch_size: int = 500,
    progress: Progress | None = None,
    create_schema: bool = False,
) -> Summary:
    """Copy everything from ``source`` into ``target`` and verify counts and checksums.

    The source is read and checked in full first (every record valid, nothing clashing with
    what the target holds, nothing in the target the source lacks); only then is the target
    written, in one transaction where it has them, and verified before that commits.
    Rerunnable: what ``target`` already has, unchanged, is skipped. Raises
    ``ExportRefused`` (an ``IntegrityError``) before any write, or ``IntegrityError`` when
    the copy does not match the source at the end. ``create_schema``: create the target's
    schema once the source passed its checks (a refused copy creates nothing).
    """
    checker = Checker(target, await _empty(target, create_schema))
    async for kind, entities in batches(source, batch_size):
        for entity in entities:
            await checker.feed(f"source {kind} {entity.id}", kind, validate(kind, entity.model_dump(), kind))
    expected = checker.finish(None)
    await _no_extras(target, checker)
    if create_schema:
        await target.create_schema()
    summary = Summary(counts=dict(checker.digest.counts), atomic=target.capabilities.transactions)

    async def write() -> None:
        async for kind, entities in batches(source, batch_size):
            summary.written[kind] += await _restore(target, kind, entities)
            if progress is not None:
                progress(kind, len(entities))
        summary.checksum = await verify(source, target)
        if summary.checksum != expected:
            raise IntegrityError("the source changed while it was being copied; run the copy again")

    await _written(target, summary.atomic, write)
    return summary


async def _no_extras(target: Store, checker: Checker) -> None:
    """A copy ends with the target equal to its source: a target holding records the source
    lacks could never match, so it is refused before the first write."""
    if checker.target_empty:
        return
    counts = await record_counts(target)
    extra = {
        kind: counts[kind] - checker.present[kind] for kind in counts if counts[kind] > checker.present[kind]
    }
    if extra:
        listed = ", ".join(f"{n} {kind}(s)" for kind, n in extra.items())
        raise ExportRefused(
            f"the target holds records the source does not have ({listed}); copy into an empty "
            "store or one an earlier copy of this source filled; nothing was written"
        )


async def record_counts(store: Store) -> dict[str, int]:
    """How many records of each kind ``store`` holds (what an export or copy reads)."""
    return {
        "agent_type": await store.agent_types.count(),
        "topology": await store.topologies.count(),
        "execution": await store.executions.count(),
        "agent_instance": await store.agent_instances.count(),
        "result": await store.results.count(),
        "message": await store.messages.count(),
    }


async def verify(source: Store, target: Store, summary: Summary | None = None) -> str:
    """The checksum both stores share; ``IntegrityError`` naming each side's counts if not."""
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
    digest = Digest()
    out.write(json.dumps({"format": FORMAT, "version": VERSION, "exported_at": utc_now().isoformat()}) + "\n")
    async for kind, entities in batches(store, batch_size):
        for text in digest.add(kind, entities):  # checksummed as written: one read of the store
            out.write(text + "\n")
        if progress is not None:
            progress(kind, len(entities))
    summary = Summary(counts=digest.counts)
    summary.checksum = digest.hexdigest()
    out.write(json.dumps({"kind": "end", "counts": summary.counts, "checksum": summary.checksum}) + "\n")
    return summary


async def check_export(
    target: Store, path: Path, *, create_schema: bool = False
) -> tuple[Checker, ExportFile]:
    """Read and check the whole export against ``target`` without writing anything.

    A conflict with the target waits for the trailer:
    an edited file is first of all an edited file, and its checksum error says so, where a
    conflict would send people looking for a difference in their store."""
    checker = Checker(target, await _empty(target, create_schema))
    export = ExportFile(path)
    refused: Conflict | None = None
    for where, kind, data in export.records():
        if kind == "end":
            checker.finish(data)  # a checksum that does not match is reported before ``refused``
        elif refused is not None:
            checker.digest.add(kind, [validate(kind, data, where)])  # only to finish the checksum
        else:
            entity = validate(kind, data, where)
            try:
                await checker.feed(where, kind, entity)
            except Conflict as error:
                refused = error
                checker.digest.add(kind, [entity])
    if refused is not None:
        raise refused
    return checker, export


async def import_store(
    target: Store,
    path: Path,
    *,
    batch_size: int = 500,
    progress: Progress | None = None,
    create_schema: bool = False,
) -> Summary:
    """Restore an export into ``target``: checked in full first, then written (in one
    transaction where the target has them). Rerunnable: records the target already has,
    unchanged, are skipped; an id or name it holds for another entity is refused.
    ``create_schema``: create the target's schema once the export passed its checks (a
    refused import creates nothing, not even a SQLite file)."""
    checker, export = await check_export(target, path, create_schema=create_schema)
    if create_schema:
        await target.create_schema()
    checked = export.sha256
    summary = Summary(counts=dict(checker.digest.counts), atomic=target.capabilities.transactions)
    pending: list[Any] = []
    pending_kind = ""

    async def flush() -> None:
        if pending:
            summary.written[pending_kind] += await _restore(target, pending_kind, list(pending))
            if progress is not None:
                progress(pending_kind, len(pending))
            pending.clear()

    async def write() -> None:
        nonlocal pending_kind
        for where, kind, data in export.records():
            if kind == "end":
                break
            if kind != pending_kind or len(pending) >= batch_size:
                await flush()
                pending_kind = kind
            pending.append(validate(kind, data, where))
        await flush()
        if export.sha256 != checked:
            raise ExportRefused(f"{path} changed while it was being imported; import it again")
        after = await fingerprint(target)
        summary.checksum = after.checksum
        if after.counts == summary.counts and after.checksum != checker.checksum:
            raise IntegrityError("the imported store's checksum does not match the export's")

    await _written(target, summary.atomic, write)
    return summary


__all__ = [
    "FORMAT",
    "KINDS",
    "ExportRefused",
    "VERSION",
    "Summary",
    "batches",
    "check_export",
    "copy_store",
    "export_store",
    "fingerprint",
    "import_store",
    "verify",
]
