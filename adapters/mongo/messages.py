"""Messages on MongoDB: one *head* document per append, chained by a unique index.

A head holds ``first``..``last``, the sequence numbers of the whole append, and its first
messages as ``items``. ``first`` is the previous head's ``last + 1`` and
``(execution_id, first)`` is unique, so two writers that read the same predecessor collide
and one retries: heads chain from 1 with no gaps and no overlaps, with no transaction and
whatever the server does about write conflicts.

An append too large for one document (more than :data:`MAX_BATCH_ITEMS` messages or
:data:`MAX_BATCH_BYTES` of BSON) writes its other messages first, as *parts* in
``qmcp_message_parts`` that nothing reads until a head names them, and then the head. The
head's insert is the commit point: before it, readers see none of the append and no
writer has its numbers; after it, the whole append is there as one contiguous block. A
crash before the head leaves unreferenced parts only (removed with their execution).
Inside ``store.transaction()`` every write and read uses its session.

The head is written with an upsert whose filter names the execution's *closing entry*
(``_id`` = the execution's incarnation, see :mod:`.closing`): a transition to a final
status and a delete write that entry into the chain first, so the write that would insert
the head finds "final" or "deleted" instead, in the same command, and the append raises
the error every backend gives. No read before or after is needed for that.

Outside a transaction a store remembers the incarnation and the top of each chain it
appended to (``_remember_top``), so its next append is that one command; a top that
another writer moved on is corrected by the collision on ``(execution_id, first)``. The
first append (and every append inside a transaction) reads the execution and the top
first.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

import bson
from bson.binary import Binary
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DocumentTooLarge, DuplicateKeyError

from qmcp_agents.adapters.concurrency import taking_turns, wrap_verbs
from qmcp_agents.domain import (
    AlreadyExists,
    ConcurrencyError,
    IntegrityError,
    InvalidTransition,
    Message,
    MessageCreate,
    NotFound,
)
from qmcp_agents.domain.arguments import check_message_arguments, optional_uuid, uuid_id
from qmcp_agents.domain.batching import paused_gc
from qmcp_agents.domain.integrity import (
    check_instance_binding,
    messages_to_restore,
    refuse_taken_message_ids,
)
from qmcp_agents.domain.message import build_messages
from qmcp_agents.domain.queries import Page, check_limit, message_query
from qmcp_agents.domain.upcasting import CURRENT_SCHEMA_VERSION

from . import closing, documents
from .driver import CODEC_OPTIONS

if TYPE_CHECKING:
    from .store import MongoStore

Filter = dict[str, Any]

MAX_BATCH_ITEMS = 1000
"""Messages per document at most (head or part)."""
MAX_BATCH_BYTES = 8 * 1024 * 1024
"""BSON bytes of messages per document at most: half of MongoDB's 16 MiB document limit.
A single message always fits (the domain caps its content, see ``MAX_MESSAGE_BYTES``)."""

CACHE_LIMIT = 10_000
"""Entries each of this repository's caches holds at most: they are hints (see
:meth:`MongoMessages._remember`, :meth:`~MongoMessages._remember_top`,
:meth:`~MongoMessages._binary`), so a full one simply starts over."""


def _room(cache: dict[Any, Any]) -> None:
    if len(cache) > CACHE_LIMIT:
        cache.clear()


class MongoMessages:
    collection_name = "messages"
    label = "message"

    def __init__(self, store: MongoStore) -> None:
        self._store = store
        self._known: dict[tuple[UUID, UUID], Any] = {}  # see _remember
        self._tops: dict[UUID, tuple[Any, int]] = {}  # see _remember_top
        self._binaries: dict[UUID, Binary] = {}  # see _binary

    @property
    def _c(self) -> Any:
        return self._store.collection(self.collection_name)

    @property
    def _parts(self) -> Any:
        return self._store.collection("message_parts")

    # --- append ------------------------------------------------------------------------------

    async def append(self, execution_id: UUID, messages: Sequence[MessageCreate]) -> builtins.list[Message]:
        execution_id = uuid_id(execution_id, "execution_id")
        with paused_gc(len(messages)):
            drafts = [MessageCreate.model_validate(m) for m in messages]
        await self._store.connect()
        session = self._store.session()
        if not drafts:
            closing.refuse(execution_id, await closing.read_execution(self._store, execution_id, session))
            return []
        hint = self._tops.get(execution_id) if session is None else None
        for _ in range(8):  # each round after the first follows a restore of the execution
            try:
                if hint is not None:
                    return await self._append_after(execution_id, drafts, hint)
                return await self._append_reading(execution_id, drafts, session)
            except closing.Stale:
                self._tops.pop(execution_id, None)
                hint = None
        raise ConcurrencyError(f"execution {execution_id} was deleted and restored repeatedly; retry")

    async def _append_after(
        self, execution_id: UUID, drafts: builtins.list[MessageCreate], hint: tuple[UUID, int]
    ) -> builtins.list[Message]:
        """The steady state: this store appended to the execution before, so it knows the
        incarnation and a lower bound of the chain's top; the write is the only command
        unless a participant is unknown."""
        incarnation, last = hint
        bound: dict[UUID, Any] = {}
        if not self._all_known(execution_id, incarnation, drafts):
            bound = await self._participants(_wanted(drafts))
            try:
                _check_bound(execution_id, drafts, bound)
            except IntegrityError:  # a missing or final execution is the error to report first
                closing.refuse(execution_id, await closing.read_execution(self._store, execution_id, None))
                raise
        out = await self._write(execution_id, drafts, incarnation, last, None)
        self._remember(execution_id, incarnation, bound)
        self._remember_top(execution_id, incarnation, out[-1].sequence_number)
        return out

    async def _append_reading(
        self, execution_id: UUID, drafts: builtins.list[MessageCreate], session: Any
    ) -> builtins.list[Message]:
        """Read the execution and the chain's top first: the first append of this store to
        the execution, or any append inside a transaction."""
        if session is None:  # independent reads: one round trip for both
            execution, last = await asyncio.gather(
                closing.read_execution(self._store, execution_id, None),
                closing.top(self._store, execution_id, None),
            )
        else:  # a session serves one operation at a time
            execution = await closing.read_execution(self._store, execution_id, session)
            last = await closing.top(self._store, execution_id, session)
        closing.refuse(execution_id, execution)
        incarnation = await closing.incarnation_of(self._store, execution, session)
        bound: dict[UUID, Any] = {}
        if session is not None or not self._all_known(execution_id, incarnation, drafts):
            bound = await self._participants(_wanted(drafts))
            _check_bound(execution_id, drafts, bound)
        out = await self._write(execution_id, drafts, incarnation, last, session)
        if session is None:
            self._remember(execution_id, incarnation, bound)  # now named by a stored message
            self._remember_top(execution_id, incarnation, out[-1].sequence_number)
        return out

    def _all_known(self, execution_id: UUID, incarnation: Any, drafts: Sequence[MessageCreate]) -> bool:
        """Whether every instance the drafts name is remembered (:meth:`_remember`) as bound
        to this incarnation of the execution (looked up draft by draft: no set is built for
        the common append of one message)."""
        known = self._known
        return all(
            known.get((d.sender_id, execution_id)) == incarnation
            and (d.recipient_id is None or known.get((d.recipient_id, execution_id)) == incarnation)
            for d in drafts
        )

    def _binary(self, value: Any) -> Any:
        """``value`` as the BSON binary a UUID is stored as, made once per value: the
        execution, its incarnation and the senders recur append after append."""
        if type(value) is not UUID:
            return value
        binary = self._binaries.get(value)
        if binary is None:
            _room(self._binaries)
            binary = self._binaries[value] = Binary.from_uuid(value)
        return binary

    def _remember_top(self, execution_id: UUID, incarnation: Any, last: int) -> None:
        """Remember the highest sequence number this store has written for the execution,
        for its current *incarnation* (see :meth:`_remember`), so that the next append
        needs no read of the chain's top: it chains after it and, if another writer
        appended meanwhile, collides on ``(execution_id, first)`` and reads the top then
        (:meth:`_chain`). Within one incarnation heads are never removed (only with the
        execution, which ends the incarnation), and every head above a stored ``last``
        starts at ``last + 1`` exactly, so a remembered number is never above the top and
        a stale one always collides: the chain stays gap-free and without overlaps.
        Outside transactions only (a transaction may roll back)."""
        known = self._tops.get(execution_id)
        if known is not None and known[0] == incarnation and known[1] > last:
            return  # a concurrent append of this store got further
        _room(self._tops)
        self._tops[execution_id] = (incarnation, last)

    def _remember(self, execution_id: UUID, incarnation: Any, bound: dict[UUID, Any]) -> None:
        """Remember the instances just checked that are bound to this execution.

        Such an instance cannot go away while the execution lives: its binding never changes,
        and once a stored message names it (this append) it can be deleted only with the
        execution. So, for the same *incarnation* of the execution (a random value written
        when it is added or restored, never updated), the next append naming it needs no
        read of the instances: the common agent turn makes as many reads as before issue 18
        although the append now checks its execution again after writing. Instances not
        bound to an execution are always read (they can be deleted once their messages are).
        Inside a transaction nothing is remembered (it may roll back).
        """
        _room(self._known)
        for instance_id, bound_to in bound.items():
            if bound_to == execution_id:
                self._known[(instance_id, execution_id)] = incarnation

    async def _write(
        self, execution_id: UUID, drafts: Sequence[MessageCreate], incarnation: UUID, last: int, session: Any
    ) -> builtins.list[Message]:
        with paused_gc(len(drafts)):
            out = build_messages(execution_id, drafts, 1)
        if len(out) <= MAX_BATCH_ITEMS:
            try:
                return await self._chain(execution_id, out, len(out), [], incarnation, last, session)
            except DocumentTooLarge:
                pass  # refused by the driver before sending: nothing written; split by size
        sizes = _split(out)
        part_ids: builtins.list[UUID] = []
        documents_: builtins.list[dict[str, Any]] = []
        start = sizes[0]
        for size in sizes[1:]:
            chunk = out[start : start + size]
            part_ids.append(chunk[0].id)
            documents_.append(
                {
                    "_id": chunk[0].id,
                    "execution_id": execution_id,
                    "head": out[0].id,
                    "offset": start,
                    "items": [documents.part_item(m) for m in chunk],
                }
            )
            start += size
        try:
            await self._store.call(self._parts.insert_many(documents_, ordered=True, session=session))
        except BaseException:
            await self._drop_parts(part_ids, session)
            raise
        try:
            return await self._chain(execution_id, out, sizes[0], part_ids, incarnation, last, session)
        except (AlreadyExists, ConcurrencyError, IntegrityError, InvalidTransition, NotFound, closing.Stale):
            # Refused: no head names the parts. Unreferenced parts are invisible; remove them.
            await self._drop_parts(part_ids, session)
            raise
        # Any other error (a cancellation, a lost connection) may have come after the head
        # was applied: its parts stay (invisible if it was not; removed with the execution).

    async def _drop_parts(self, part_ids: builtins.list[UUID], session: Any) -> None:
        if session is None:  # inside a transaction the rollback removes them
            with contextlib.suppress(Exception):
                await self._store.call(self._parts.delete_many({"_id": {"$in": part_ids}}))

    async def _chain(
        self,
        execution_id: UUID,
        out: builtins.list[Message],
        in_head: int,
        part_ids: builtins.list[UUID],
        incarnation: UUID,
        last: int,
        session: Any,
    ) -> builtins.list[Message]:
        """Write the head after ``last`` in one command: an upsert whose filter finds the
        incarnation's closing entry if there is one (then nothing is written) and whose
        insert is the head. A collision on ``(execution_id, first)`` means another writer
        (or a closing entry) took the position: the top is read again."""
        # The command's UUIDs as the BSON binaries they are encoded to (the collections'
        # codec options store standard UUIDs): the same bytes, without the driver
        # converting each UUID again on every append (see _binary).
        head_id = Binary.from_uuid(out[0].id)
        while True:
            first = last + 1
            with paused_gc(len(out)):
                for offset, message in enumerate(out):
                    message.__dict__["sequence_number"] = first + offset
                items = [documents.message_item(m) for m in out[:in_head]]
                items[0]["id"] = head_id
                for item in items:
                    item["sender_id"] = self._binary(item["sender_id"])
                head = {
                    "_id": head_id,
                    "execution_id": self._binary(execution_id),
                    "first": first,
                    "last": first + len(out) - 1,
                    "created_at": out[0].created_at,
                    "items": items,
                    "schema_version": CURRENT_SCHEMA_VERSION,
                }
                if part_ids:
                    head["parts"] = part_ids
            try:
                done = await self._store.settled(
                    self._c.update_one(
                        {"_id": {"$in": [self._binary(incarnation), head_id]}},
                        {"$setOnInsert": head},
                        upsert=True,
                        session=session,
                    )
                )
            except DuplicateKeyError as error:
                where = closing.collided_on(error)
                if where != "first":
                    raise AlreadyExists(f"message batch collided: {error.details}") from error
                if session is not None:  # inside a transaction the read cannot be retried
                    await self._refuse_closed(execution_id, incarnation, session)
                    raise ConcurrencyError(
                        f"execution {execution_id}: another writer appended meanwhile; retry the transaction"
                    ) from error
                last = await closing.top(self._store, execution_id, session)
                if last + 1 == first:  # no head took the position: a closing entry holds it
                    await closing.unblock(self._store, execution_id, first, incarnation, session)
                continue
            except DocumentTooLarge:
                raise
            except BaseException as error:
                raise self._store.translate(error) from error
            if done.upserted_id is not None:
                return out
            # The filter matched the incarnation's closing entry (``clear`` raises the
            # execution's error, or removes a dead entry), or, with no entry, a document
            # with this head's id (refused) or an entry removed since: the top is read again.
            if not await closing.clear(self._store, execution_id, incarnation, session) and (
                await self._store.call(self._c.find_one({"_id": out[0].id}, {"_id": 1}, session=session))
            ):
                raise AlreadyExists(f"message {out[0].id} is already stored")
            last = await closing.top(self._store, execution_id, session)

    async def _refuse_closed(self, execution_id: UUID, incarnation: UUID, session: Any) -> None:
        """Inside a transaction: if the collision was with a closing entry, the error of the
        execution's state (final, deleted) rather than "retry"."""
        if await self._store.call(self._c.find_one({"_id": incarnation}, {"_id": 1}, session=session)):
            await closing.clear(self._store, execution_id, incarnation, session)

    async def _participants(self, wanted: builtins.list[UUID]) -> dict[UUID, Any]:
        """The ``execution_id`` each of the instances ``wanted`` is bound to (None: unbound);
        missing instances are absent."""
        instances = self._store.collection("agent_instances")
        found = await self._store.call(
            instances.find(
                {"_id": {"$in": wanted}}, {"execution_id": 1}, session=self._store.session()
            ).to_list(None)
        )
        return {d["_id"]: d.get("execution_id") for d in found}

    # --- restore -----------------------------------------------------------------------------

    async def restore_many(self, messages: Sequence[Message]) -> int:
        """See the port. Messages keep their batches: consecutive ones with the same
        ``created_at`` (one original append) go into one document, split by count and size.
        An id already stored anywhere is ``AlreadyExists`` before anything is written."""
        await self._store.connect()
        by_execution: dict[UUID, builtins.list[Message]] = {}
        for message in messages:
            by_execution.setdefault(message.execution_id, []).append(message)
        session = self._store.session()
        planned: builtins.list[tuple[UUID, Any, builtins.list[Message]]] = []
        for execution_id, group in by_execution.items():
            execution = await closing.read_execution(self._store, execution_id, session)
            if execution is None:
                raise IntegrityError(f"message execution_id {execution_id} does not exist")
            latest = await closing.top(self._store, execution_id, session)
            fresh = messages_to_restore(execution_id, latest, group)
            _check_bound(execution_id, fresh, await self._participants(_wanted(fresh)))
            planned.append((execution_id, execution.get("incarnation"), fresh))
        every = [m for _, _, fresh in planned for m in fresh]
        refuse_taken_message_ids(every, await self._taken([m.id for m in every]))
        written = 0
        for execution_id, incarnation, fresh in planned:
            if fresh:
                await closing.retire_foreign(self._store, execution_id, incarnation, session)
            if fresh and incarnation is not None:
                await closing.make_room(self._store, incarnation, fresh[-1].sequence_number, session)
            for batch in _batches_of(fresh):
                document = {
                    "_id": batch[0].id,
                    "execution_id": execution_id,
                    "first": batch[0].sequence_number,
                    "last": batch[-1].sequence_number,
                    "created_at": batch[0].created_at,
                    "items": [documents.message_item(m) for m in batch],
                    "schema_version": CURRENT_SCHEMA_VERSION,
                }
                try:
                    await self._store.settled(self._c.insert_one(document, session=session))
                except DuplicateKeyError as error:
                    if "first" not in str(error.details):
                        raise AlreadyExists(
                            f"a restored message id is already stored: {error.details}"
                        ) from error
                    raise ConcurrencyError(
                        f"execution {execution_id}: messages were appended while restoring; rerun the restore"
                    ) from error
                except BaseException as error:
                    raise self._store.translate(error) from error
                written += len(batch)
        return written

    async def _taken(self, ids: builtins.list[UUID]) -> builtins.list[UUID]:
        """Which of ``ids`` are stored, in heads or parts."""
        taken: builtins.list[UUID] = []
        wanted = set(ids)
        for collection in (self._c, self._parts):
            found = await self._store.call(
                collection.find(
                    {"items.id": {"$in": ids}}, {"items.id": 1}, session=self._store.session()
                ).to_list(None)
            )
            taken.extend(i["id"] for d in found for i in d["items"] if i["id"] in wanted)
        return taken

    # --- reads -------------------------------------------------------------------------------

    async def _batches(
        self, query: Filter, sort: builtins.list[tuple[str, int]], limit: int = 0
    ) -> builtins.list[Any]:
        await self._store.connect()
        found: builtins.list[Any] = await self._store.call(
            self._c.find(query, sort=sort, limit=limit, session=self._store.session()).to_list(None)
        )
        return found

    async def _messages_of(self, head: Mapping[str, Any]) -> builtins.list[Message]:
        """Every message of one append: the head's items, then its parts' in order."""
        out = documents.messages_from(head)
        if head.get("parts"):
            parts = await self._store.call(
                self._parts.find(
                    {"_id": {"$in": head["parts"]}},
                    sort=[("offset", ASCENDING)],
                    session=self._store.session(),
                ).to_list(None)
            )
            for part in parts:
                out.extend(documents.messages_from_part(part, head))
        return out

    async def find(self, id: UUID) -> Message | None:
        id = uuid_id(id)
        heads = await self._batches({"items.id": id, "last": {"$gte": 1}}, [("first", ASCENDING)], 1)
        if not heads:
            part = await self._store.call(
                self._parts.find_one({"items.id": id}, {"head": 1}, session=self._store.session())
            )
            if part is None:
                return None
            heads = await self._batches({"_id": part["head"]}, [("first", ASCENDING)], 1)
        for head in heads:  # none if the part's append never committed
            for message in await self._messages_of(head):
                if message.id == id:
                    return message
        return None

    async def get(self, id: UUID) -> Message:
        message = await self.find(id)
        if message is None:
            raise NotFound(f"message {id} does not exist")
        return message

    async def list(
        self,
        execution_id: UUID,
        *,
        limit: int = 50,
        after: str | None = None,
        round_number: int | None = None,
        sender_id: UUID | None = None,
    ) -> Page[Message]:
        checked = message_query(execution_id, limit, after, round_number, sender_id)
        start, round_number, sender_id = checked.start, checked.filter.round_number, checked.filter.sender_id
        query: Filter = {"execution_id": execution_id, "last": {"$gt": start}}
        wanted: Filter = {}
        if round_number is not None:
            wanted["items.round_number"] = round_number
        if sender_id is not None:
            wanted["items.sender_id"] = sender_id
        if wanted:  # a head with parts may hold a match in its parts only
            query["$or"] = [wanted, {"parts": {"$exists": True}}]
        items: builtins.list[Message] = []
        # Read heads in order, a few at a time, until the page is full.
        while True:
            batches = await self._batches(query, [("first", ASCENDING)], 8)
            for batch in batches:
                for message in await self._messages_of(batch):
                    if message.sequence_number <= start:
                        continue
                    if (round_number is None or message.round_number == round_number) and (
                        sender_id is None or message.sender_id == sender_id
                    ):
                        if len(items) == limit:
                            return Page(items, str(items[-1].sequence_number))
                        items.append(message)
            if len(batches) < 8:
                return Page(items, None)
            query["last"] = {"$gt": int(batches[-1]["last"])}

    async def last(self, execution_id: UUID, n: int) -> builtins.list[Message]:
        execution_id = uuid_id(execution_id, "execution_id")
        check_limit(n, "n")
        newest: builtins.list[Message] = []
        query: Filter = {"execution_id": execution_id, "last": {"$gte": 1}}
        while len(newest) < n:
            batches = await self._batches(query, [("last", DESCENDING)], 4)
            for batch in batches:
                newest = await self._messages_of(batch) + newest
            if len(batches) < 4:
                break
            query["last"] = {"$gte": 1, "$lt": int(batches[-1]["first"])}
        return newest[-n:]

    async def count(self, execution_id: UUID | None = None) -> int:
        optional_uuid(execution_id, "execution_id")
        await self._store.connect()
        if execution_id is not None:
            return await closing.top(self._store, execution_id, self._store.session())
        total = 0
        for batch in await self._store.call(
            self._c.find(
                {"last": {"$gte": 1}}, {"first": 1, "last": 1}, session=self._store.session()
            ).to_list(None)
        ):
            total += int(batch["last"]) - int(batch["first"]) + 1
        return total

    async def referring(self, instance_id: UUID) -> int:
        """How many stored messages name ``instance_id`` as sender or recipient (heads and
        parts, read in the open transaction if any)."""
        query = {"$or": [{"items.sender_id": instance_id}, {"items.recipient_id": instance_id}]}
        session = self._store.session()
        heads = await self._store.call(self._c.find(query, {"items": 1}, session=session).to_list(None))
        parts = await self._store.call(
            self._parts.find(query, {"items": 1, "head": 1}, session=session).to_list(None)
        )
        if parts:  # only parts a stored head names: an append cut short may leave others
            named = {p["head"] for p in parts}
            stored = await self._store.call(
                self._c.find({"_id": {"$in": builtins.list(named)}}, {"_id": 1}, session=session).to_list(
                    None
                )
            )
            kept = {d["_id"] for d in stored}
            parts = [p for p in parts if p["head"] in kept]
        return sum(
            1
            for d in (*heads, *parts)
            for m in d["items"]
            if instance_id in (m["sender_id"], m.get("recipient_id"))
        )


def _wanted(drafts: Sequence[MessageCreate | Message]) -> builtins.list[UUID]:
    return builtins.list(
        {d.sender_id for d in drafts} | {d.recipient_id for d in drafts if d.recipient_id is not None}
    )


def _check_bound(
    execution_id: UUID, drafts: Sequence[MessageCreate | Message], bound: dict[UUID, Any]
) -> None:
    for draft in drafts:
        for role, instance_id in (("sender_id", draft.sender_id), ("recipient_id", draft.recipient_id)):
            if instance_id is None:
                continue
            if instance_id not in bound:
                raise IntegrityError(f"message {role} {instance_id} is not an agent instance")
            check_instance_binding(instance_id, bound[instance_id], execution_id, f"message {role}")


def _size(message: Message) -> int:
    return len(bson.encode(documents.message_item(message), codec_options=CODEC_OPTIONS))


def _split(messages: Sequence[Message]) -> builtins.list[int]:
    """How many messages go into each document, in order: at most ``MAX_BATCH_ITEMS`` and
    ``MAX_BATCH_BYTES`` each (a single message is never split)."""
    sizes: builtins.list[int] = []
    count = used = 0
    for message in messages:
        size = _size(message) + 16  # the array key and element header
        if count and (count == MAX_BATCH_ITEMS or used + size > MAX_BATCH_BYTES):
            sizes.append(count)
            count = used = 0
        count += 1
        used += size
    sizes.append(count)
    return sizes


def _batches_of(messages: builtins.list[Message]) -> builtins.list[builtins.list[Message]]:
    """Runs of messages that share ``created_at`` (one original append), each within the
    count and size limits of one document."""
    runs: builtins.list[builtins.list[Message]] = []
    for message in messages:
        if runs and runs[-1][0].created_at == message.created_at:
            runs[-1].append(message)
        else:
            runs.append([message])
    out: builtins.list[builtins.list[Message]] = []
    for run in runs:
        start = 0
        for size in _split(run):
            out.append(run[start : start + size])
            start += size
    return out


__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_ITEMS", "MongoMessages"]

# Tasks sharing one transaction take turns on its session (see adapters/concurrency.py).
wrap_verbs(taking_turns, MongoMessages)
check_message_arguments(MongoMessages)
