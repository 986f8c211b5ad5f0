"""The checks an import or a copy makes before its first write (issue 13).

An export is read twice: once here, to refuse a damaged, re-ordered, tampered or clashing
file before the target is touched, and once to write it. Everything that can be known
without writing is checked in the first pass: the header and version, that every line is
JSON of a known kind in dependency order, that every record is valid against the domain,
that ids are unique and references point to something earlier in the file (or already in
the target), the trailer's counts and checksum, and that no id or name already in the
target belongs to a different entity. A copy runs its source through the same checker.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from qmcp_agents.domain import AgentInstance, AgentType, Execution, Message, Result, Topology
from qmcp_agents.domain.errors import IntegrityError
from qmcp_agents.domain.ports import Store

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
ORDER = list(KINDS)


class ExportRefused(IntegrityError, ValueError):
    """An export (or a copy's source) that cannot be written as it is; nothing was written."""


class Conflict(ExportRefused):
    """The export and the target disagree about an id or a name. An import reports it only
    once the export's own checksum holds: an edited file is not a conflict."""


def line(kind: str, entity: BaseModel) -> str:
    """The canonical text of one record: what an export writes and the checksum hashes."""
    return json.dumps(
        {"kind": kind, "data": entity.model_dump(mode="json")}, sort_keys=True, separators=(",", ":")
    )


class Digest:
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
        lines = [line(kind, entity) for entity in entities]
        self.counts[kind] += len(lines)
        if kind == "execution":
            self._executions.extend(lines)
        else:
            for text in lines:
                self._hashes[kind].update(text.encode() + b"\n")
        return lines

    def hexdigest(self) -> str:
        for text in sorted(self._executions):
            self._hashes["execution"].update(text.encode() + b"\n")
        self._executions = []
        whole = hashlib.sha256()
        for kind in KINDS:
            whole.update(self._hashes[kind].digest())
        return whole.hexdigest()


def _validation(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "value"
        parts.append(f"{where}: {item['msg']} (got {item.get('input')!r})")
        if len(parts) == 3:
            break
    return "; ".join(parts)


def validate(kind: str, data: Any, where: str) -> Any:
    """The domain entity of one record, or a one-line refusal naming the field and value."""
    try:
        return KINDS[kind].model_validate(data)
    except ValidationError as error:
        raise ExportRefused(f"{where}: invalid {kind}: {_validation(error)}") from None


class ExportFile:
    """Reads an export's lines: header, records, trailer; remembers a hash of the bytes so
    the writing pass can tell the file changed since it was checked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sha256 = ""

    def records(self) -> Iterator[tuple[str, str, Any]]:
        """(where, kind, data) per record, then ("line N", "end", trailer)."""
        self.sha256 = ""
        whole = hashlib.sha256()
        header_seen = False
        trailer: tuple[str, str, Any] | None = None
        with self.path.open("rb") as source:
            for number, raw in enumerate(source, start=1):
                whole.update(raw)
                where = f"line {number}"
                if not raw.strip():
                    continue
                if trailer is not None:
                    raise ExportRefused(f"{where}: content after the trailer line (line {trailer[0][5:]})")
                try:
                    record = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as error:
                    reason = error.msg if isinstance(error, json.JSONDecodeError) else "not UTF-8"
                    raise ExportRefused(f"{where}: not JSON ({reason})") from None
                if not isinstance(record, dict):
                    raise ExportRefused(f"{where}: expected a JSON object, got {type(record).__name__}")
                if not header_seen:
                    if record.get("format") != FORMAT:
                        raise ExportRefused(f"{where}: not a {FORMAT} file")
                    version = record.get("version")
                    if type(version) is not int or version != VERSION:  # true and 1.0 equal 1 in Python
                        raise ExportRefused(
                            f"{where}: export version {record.get('version')!r} is not {VERSION}, "
                            "the version this release reads"
                        )
                    header_seen = True
                    continue
                kind = record.get("kind")
                if kind == "end":
                    trailer = (where, "end", record)
                    continue
                if kind not in KINDS:
                    raise ExportRefused(f"{where}: unknown kind {kind!r}")
                if "data" not in record:
                    raise ExportRefused(f"{where}: {kind} record without 'data'")
                yield where, kind, record["data"]
        if not header_seen:
            raise ExportRefused(f"{self.path}: empty file, not a {FORMAT} file")
        if trailer is None:
            raise ExportRefused("the export ends without its trailer line: it is incomplete")
        self.sha256 = whole.hexdigest()
        yield trailer


def _label(kind: str, entity: Any) -> str:
    name = getattr(entity, "name", None)
    return f"{kind} {entity.id}" + (f" {name!r}" if name is not None else "")


def _differences(ours: BaseModel, theirs: BaseModel) -> str:
    left, right = ours.model_dump(mode="json"), theirs.model_dump(mode="json")
    fields = [key for key in left if left.get(key) != right.get(key)]
    return ", ".join(fields[:5]) or "content"


class Checker:
    """Everything checkable before the first write, fed one record at a time in file order.

    ``target`` is looked up only for what it may clash with; when it is empty (the usual
    import or copy) no lookup is made at all.
    """

    def __init__(self, target: Store, target_empty: bool) -> None:
        self.target = target
        self.target_empty = target_empty
        self.digest = Digest()
        self._rank = 0
        self._ids: dict[str, set[Any]] = {kind: set() for kind in KINDS if kind != "message"}
        self._message_ids: set[Any] = set()
        self._sequence: dict[Any, int] = {}
        self._stored_messages: dict[Any, int] = {}
        self._instance_execution: dict[Any, Any] = {}
        self.checksum = ""
        self.present = dict.fromkeys(KINDS, 0)
        """Per kind, how many records the target already holds as they are (skipped)."""

    def _repository(self, kind: str) -> Any:
        return {
            "agent_type": self.target.agent_types,
            "topology": self.target.topologies,
            "execution": self.target.executions,
            "agent_instance": self.target.agent_instances,
            "result": self.target.results,
            "message": self.target.messages,
        }[kind]

    async def feed(self, where: str, kind: str, entity: Any) -> None:
        rank = ORDER.index(kind)
        if rank < self._rank:
            raise ExportRefused(
                f"{where}: {kind} after {ORDER[self._rank]} records: the export is out of order "
                f"(expected {', '.join(ORDER)})"
            )
        self._rank = rank
        await self._unique_and_referenced(where, kind, entity)
        if not self.target_empty:
            await self._no_clash(where, kind, entity)
        self.digest.add(kind, [entity])

    async def _in_target(self, kind: str, key: Any) -> bool:
        if self.target_empty:
            return False
        return await self._repository(kind).find(key) is not None

    async def _reference(self, where: str, owner: str, field: str, kind: str, key: Any) -> None:
        if key is None or key in self._ids[kind] or await self._in_target(kind, key):
            return
        raise ExportRefused(
            f"{where}: {owner} {field} {key} is neither earlier in the export nor in the target"
        )

    async def _unique_and_referenced(self, where: str, kind: str, entity: Any) -> None:
        label = _label(kind, entity)
        seen = self._message_ids if kind == "message" else self._ids[kind]
        if entity.id in seen:
            raise ExportRefused(f"{where}: {label} appears twice in the export")
        seen.add(entity.id)
        if kind == "topology":
            for membership in entity.memberships:
                await self._reference(
                    where, label, "member agent_type_id", "agent_type", membership.agent_type_id
                )
        elif kind == "execution":
            await self._reference(where, label, "topology_id", "topology", entity.topology_id)
            await self._reference(where, label, "parent_id", "execution", entity.parent_id)
        elif kind == "agent_instance":
            await self._reference(where, label, "agent_type_id", "agent_type", entity.agent_type_id)
            await self._reference(where, label, "execution_id", "execution", entity.execution_id)
            self._instance_execution[entity.id] = entity.execution_id
        elif kind == "result":
            await self._reference(where, label, "execution_id", "execution", entity.execution_id)
            await self._reference(
                where, label, "agent_instance_id", "agent_instance", entity.agent_instance_id
            )
        elif kind == "message":
            await self._reference(where, label, "execution_id", "execution", entity.execution_id)
            await self._reference(where, label, "sender_id", "agent_instance", entity.sender_id)
            await self._reference(where, label, "recipient_id", "agent_instance", entity.recipient_id)
            expected = self._sequence.get(entity.execution_id, 0) + 1
            if entity.sequence_number != expected:
                raise ExportRefused(
                    f"{where}: {label} has sequence_number {entity.sequence_number}; "
                    f"execution {entity.execution_id} expects {expected} (the export is out of order)"
                )
            self._sequence[entity.execution_id] = expected

    async def _no_clash(self, where: str, kind: str, entity: Any) -> None:
        """An id (or a name) the target already has must be this very entity: anything else
        would attach the file's records to another entity of the target."""
        repository = self._repository(kind)
        stored = await repository.find(entity.id)
        if stored is not None:
            if line(kind, stored) != line(kind, entity):
                raise Conflict(
                    f"{where}: conflict: the target's {_label(kind, stored)} is not the export's "
                    f"{_label(kind, entity)} (they differ in {_differences(stored, entity)}); "
                    "nothing was written"
                )
            self.present[kind] += 1
            return
        name = getattr(entity, "name", None)
        if name is not None:
            named = await repository.find_by_name(name)
            if named is not None:
                raise Conflict(
                    f"{where}: conflict: the name {name!r} belongs to the target's {_label(kind, named)}, "
                    f"the export's {_label(kind, entity)} has another id; nothing was written"
                )
        if kind == "message":
            stored_count = self._stored_messages.get(entity.execution_id)
            if stored_count is None:
                stored_count = await self.target.messages.count(entity.execution_id)
                self._stored_messages[entity.execution_id] = stored_count
            if entity.sequence_number <= stored_count:
                raise Conflict(
                    f"{where}: conflict: the target's execution {entity.execution_id} already has a "
                    f"message number {entity.sequence_number}, not the export's {_label(kind, entity)}; "
                    "nothing was written"
                )

    def finish(self, trailer: dict[str, Any] | None) -> str:
        """The content's checksum, checked against the trailer's counts and checksum."""
        checksum = self.checksum = self.digest.hexdigest()
        if trailer is None:
            return checksum
        if trailer.get("counts") != self.digest.counts:
            raise ExportRefused(
                f"the trailer's counts {trailer.get('counts')} do not match the export's lines "
                f"{self.digest.counts}: the export is incomplete or was edited"
            )
        if trailer.get("checksum") != checksum:
            raise ExportRefused(
                "the export's checksum does not match its content: it was edited or damaged "
                f"(trailer {str(trailer.get('checksum'))[:12]}, content {checksum[:12]})"
            )
        return checksum


async def is_empty(store: Store) -> bool:
    """Whether ``store`` holds nothing (so nothing in it can clash)."""
    return (
        await store.agent_types.count() == 0
        and await store.topologies.count() == 0
        and await store.executions.count() == 0
        and await store.agent_instances.count() == 0
    )


__all__ = ["FORMAT", "KINDS", "VERSION", "Checker", "Digest", "ExportFile", "ExportRefused", "validate"]
