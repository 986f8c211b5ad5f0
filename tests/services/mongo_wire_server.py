"""A MongoDB wire-protocol server for the tests: mongoeco's proxy over its memory engine.

Runs under Python 3.13 in its own virtual environment (mongoeco needs 3.13; the library
and its tests do not). Usage:
``python mongo_wire_server.py URI_FILE [LIFETIME_SECONDS] [--mongoeco-scans]``.
It listens on a free loopback port, writes its ``mongodb://`` URI to URI_FILE once it
accepts connections, and serves until it receives SIGTERM or SIGINT. LIFETIME_SECONDS is
the transaction lifetime limit (see :class:`TransactionGate`; default 5).

Changes to mongoeco 4.11, so that the server behaves as MongoDB does where the library
depends on it: a refused commit ends its transaction (:func:`_commit_or_abort`), and
transactions are serialised with the writes around them (:class:`TransactionGate`). And
two, so that a write costs the server about as much as on MongoDB, not time in proportion
to the collection (which, on this machine, also inflates the client's CPU per call that
the benchmarks measure): duplicate checks and ``_id: {$in: ...}`` filters read no whole
collection where a lookup finds the same documents (:class:`UniqueLookups`,
:class:`IdInLookup`; ``--mongoeco-scans`` keeps mongoeco's scans, for the tests to compare).
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import bson
from mongoeco._types.indexes import is_ordered_index_spec
from mongoeco.core.bson_scalars import is_bson_numeric
from mongoeco.core.filtering import QueryEngine
from mongoeco.core.query_plan import AndCondition, InCondition
from mongoeco.engines._memory_collection import MemoryCollection
from mongoeco.engines.memory import MemoryEngine
from mongoeco.engines.virtual_indexes import document_in_virtual_index
from mongoeco.types import Binary, is_object_id_like
from mongoeco.wire import AsyncMongoEcoProxyServer
from mongoeco.wire._session_identity import wire_session_key
from mongoeco.wire.bson_bridge import decode_wire_value
from mongoeco.wire.connections import WireConnectionContext, WireConnectionRegistry
from mongoeco.wire.protocol import OP_MSG, encode_op_msg_response
from mongoeco.wire.sessions import WireSessionStore

LIFETIME_SECONDS = 5.0

_commit_transaction = WireSessionStore.commit_transaction


def _commit_or_abort(self: WireSessionStore, body: dict[str, Any]) -> dict[str, Any]:
    """A commit the server refuses (a write conflict) ends the transaction, as MongoDB's does.

    mongoeco 4.11 leaves the session's transaction open after a failed commit; drivers pool
    server sessions, so the next operation on that session id (any later call of the same
    client) runs inside the dead transaction: it reads the failed transaction's writes and
    its own writes are never committed. Aborting there keeps the test server honest.
    """
    try:
        committed: dict[str, Any] = _commit_transaction(self, body)
        return committed
    except Exception:
        session = self._require_session(body)
        if session.transaction_active:
            session.abort_transaction()
        raise


WireSessionStore.commit_transaction = _commit_or_abort


def _in(view: Any, db_name: str, coll_name: str, empty: Any) -> Any:
    """One collection's entry of one of mongoeco's ``{database: {collection: ...}}`` views."""
    return view.get(db_name, {}).get(coll_name, empty)


class UniqueLookups:
    """Unique checks by lookup where mongoeco reads the whole collection for them.

    Why: two of mongoeco 4.11's duplicate checks (``MemoryEngine._ensure_unique_indexes``)
    read every document of the collection, so each insert costs the server time in
    proportion to the collection, where MongoDB's B-trees cost a lookup; an insert into the
    messages collection took 3 ms at 100 documents and 33 ms at 1,000. Both are replaced by
    lookups only where the lookup provably finds whatever the scan would find; elsewhere
    the original runs, and whenever a lookup finds something the original runs over the
    documents found alone (so a refusal, its error and its message are mongoeco's own,
    and a collision costs no scan either: a contended chain collides all the time), and
    the indexes are checked in the original order.

    **A compound unique index.** mongoeco looks a candidate's key up in its index data only
    for a single-field index. Its index data for a compound index holds one key per
    document: its *first* value for each field (``_index_key``), a missing field as
    ``None``, null as the null key; its duplicate check compares every combination of
    values instead (``_unique_index_keys``: arrays, multikey paths). The two agree for a
    document with at most one value for each field and no array on the way to any of them
    ("plain", :meth:`plain`). So the lookup is used for an index when:

    - it is compound, unique, ordered (ascending/descending keys: the index data of the
      others is not built when they are created) and has no collation (collation equality
      is not key equality);
    - the candidate is plain for its fields (else its keys are several);
    - no document that is not plain for these fields was ever indexed in a unique index on
      these fields, in any collection, view or transaction (:attr:`mixed`: recorded where
      mongoeco indexes a document, ``_update_indexes_locked``, and where it builds an index
      over the documents already there, ``_rebuild_index_data_locked``; never cleared).
      Every document in any index data got there through one of those two (rollbacks and
      commits put back or move what they indexed), so every document the index holds is
      plain, and its one stored key says all of its keys;
    - the index data exists in the view the check is given (a transaction's own, in one).

    Then a duplicate must sit under the candidate's key, with ``None`` also tried for each
    null component. Partial and sparse indexes hold only their members, which is all the
    scan considers; an update excludes the document itself as the scan does.

    **The _id of a single inserted document** (or of a replacement) is compared, after the
    lookup of its storage key, with the ``_id`` of every document by BSON equality
    (``scan_payload_id``). Two ids are BSON-equal with different storage keys only when they
    are numbers (1 and 1.0), hold numbers or binaries (documents, arrays), or are binary of
    subtype 0 (``bytes`` and ``Binary(..., 0)``): for any other id (a UUID, an ObjectId, a
    string, a date...) ``bson_equality_key`` *is* the storage key (``bson_engine_key``), so
    the storage-key lookup already found any equal id and the scan is skipped.
    """

    original_check = MemoryEngine._ensure_unique_indexes
    original_update = MemoryEngine._update_indexes_locked
    original_rebuild = MemoryEngine._rebuild_index_data_locked
    mixed: ClassVar[set[tuple[str, ...]]] = set()  # fields of compound indexes that held a non-plain document
    used = 0  # candidates cleared by a lookup (printed when the server stops)

    @staticmethod
    def plain(document: Any, fields: list[str]) -> bool:
        """Whether ``document`` has at most one value for each field and no array on the way."""
        return all(
            len(QueryEngine.extract_values(document, field)) <= 1
            and not MemoryEngine._array_paths_for_index_field(document, field)
            for field in fields
        )

    @staticmethod
    def equal_ids_may_differ(candidate: Any) -> bool:
        """Whether a stored ``_id`` could equal the candidate's with another storage key."""
        value = candidate.get("_id")
        return (
            isinstance(value, (dict, list))
            or is_bson_numeric(value)
            or (isinstance(value, (bytes, Binary)) and getattr(value, "subtype", 0) == 0)
        )

    @classmethod
    def note(cls, document: Any, indexes: list[Any]) -> None:
        """Record the compound unique indexes' fields for which ``document`` is not plain
        (an index is unique or not from its creation on: mongoeco has no ``collMod``)."""
        for index in indexes:
            fields = tuple(index["fields"])
            if (
                len(fields) > 1
                and index.get("unique")
                and fields not in cls.mixed
                and not cls.plain(document, index["fields"])
            ):
                cls.mixed.add(fields)

    @classmethod
    def applies(cls, index: Any, candidate: Any) -> bool:
        fields = index["fields"]
        return (
            len(fields) > 1
            and bool(index.get("unique"))
            and index.get("collation") is None
            and is_ordered_index_spec(index["key"])
            and tuple(fields) not in cls.mixed
            and cls.plain(candidate, fields)
        )

    @classmethod
    def under_key(
        cls, engine: Any, index: Any, candidate: Any, index_map: Any, exclude: Any
    ) -> set[Any] | None:
        """The storage keys of the documents but ``exclude`` stored under the candidate's
        key (None: the view has no index data for the index)."""
        if index_map is None:
            return None
        (key,) = engine._unique_index_keys(candidate, index["fields"])
        null = engine._index_equality_key(None)
        choices = [(part, None) if part == null else (part,) for part in key]
        found: set[Any] = set()
        for probe in itertools.product(*choices):
            found.update(match for match in index_map.get(probe, ()) if match != exclude)
        return found

    @classmethod
    def check(
        cls,
        engine: Any,
        db_name: str,
        coll_name: str,
        candidate: Any,
        *,
        exclude_storage_key: Any | None = None,
        indexes_view: Any = None,
        storage_view: Any = None,
        index_data_view: Any = None,
        check_id_storage: bool = False,
        scan_payload_id: bool = False,
    ) -> None:
        """``_ensure_unique_indexes``, with the lookups where they apply."""
        scan_payload_id = scan_payload_id and cls.equal_ids_may_differ(candidate)
        indexes = _in(engine._indexes if indexes_view is None else indexes_view, db_name, coll_name, [])
        options = {"storage_view": storage_view, "index_data_view": index_data_view}
        options |= {"exclude_storage_key": exclude_storage_key, "scan_payload_id": scan_payload_id}
        if not any(cls.applies(index, candidate) for index in indexes):
            cls.original_check(
                engine, db_name, coll_name, candidate,
                indexes_view=indexes_view, check_id_storage=check_id_storage, **options,
            )  # fmt: skip
            return
        coll = _in(engine._storage if storage_view is None else storage_view, db_name, coll_name, {})
        exclude = exclude_storage_key
        if exclude is not None and exclude not in coll:
            exclude = engine._storage_key(exclude)  # as the original normalises it
        data = engine._index_data if index_data_view is None else index_data_view
        index_data = _in(data, db_name, coll_name, {})
        pending: list[Any] = []  # indexes for the original, in order; the _id checks first
        check_id = check_id_storage

        def original() -> None:
            nonlocal pending, check_id
            if pending or check_id:
                cls.original_check(
                    engine, db_name, coll_name, candidate, indexes_view={db_name: {coll_name: pending}},
                    check_id_storage=check_id, **options,
                )  # fmt: skip
            pending, check_id = [], False

        for index in indexes:
            if not cls.applies(index, candidate):
                pending.append(index)
                continue
            original()
            if not document_in_virtual_index(candidate, index):
                continue
            engine._validate_compound_multikey_shape(candidate, index)
            found = cls.under_key(engine, index, candidate, index_data.get(index["name"]), exclude)
            if found is None:
                pending.append(index)
            elif found:  # a hit: the original decides, and words the refusal, over these alone
                cls.original_check(
                    engine, db_name, coll_name, candidate,
                    indexes_view={db_name: {coll_name: [index]}},
                    storage_view={db_name: {coll_name: {k: coll[k] for k in found if k in coll}}},
                    index_data_view={},
                )  # fmt: skip
            else:
                cls.used += 1
        original()

    @classmethod
    def update(
        cls, engine: Any, db_name: str, coll_name: str, storage_key: Any, document: Any, **options: Any
    ) -> None:
        """``_update_indexes_locked``, noting the documents it indexes first."""
        if options.get("action", "insert") == "insert":
            view = options.get("indexes_view")
            cls.note(document, _in(engine._indexes if view is None else view, db_name, coll_name, []))
        cls.original_update(engine, db_name, coll_name, storage_key, document, **options)

    @classmethod
    def rebuild(cls, engine: Any, db_name: str, coll_name: str, index: Any, **options: Any) -> None:
        """``_rebuild_index_data_locked``, noting the documents already there first."""
        view = options.get("storage_view")
        for data in _in(engine._storage if view is None else view, db_name, coll_name, {}).values():
            cls.note(engine._borrow_storage_document(data), [index])
        cls.original_rebuild(engine, db_name, coll_name, index, **options)

    @classmethod
    def install(cls) -> None:
        def check(engine: Any, db: str, coll: str, candidate: Any, **options: Any) -> None:
            cls.check(engine, db, coll, candidate, **options)

        def update(engine: Any, db: str, coll: str, key: Any, document: Any, **options: Any) -> None:
            cls.update(engine, db, coll, key, document, **options)

        def rebuild(engine: Any, db: str, coll: str, index: Any, **options: Any) -> None:
            cls.rebuild(engine, db, coll, index, **options)

        MemoryEngine._ensure_unique_indexes = check
        MemoryEngine._update_indexes_locked = update
        MemoryEngine._rebuild_index_data_locked = rebuild


class IdInLookup:
    """The documents a filter ``{_id: {$in: [ids]}}`` can match, found by their storage keys.

    Why: mongoeco 4.11 finds the documents a filter may match by ``_id`` equality, or by a
    single-field ascending index on an equality, else by reading every document
    (``MemoryEngine._candidate_items_for_plan_locked``). The messages' append is one upsert
    filtered on ``_id: {$in: [incarnation, head id]}`` (see adapters/mongo/messages.py):
    on this server it took 8.6 ms at 100 messages and 35 ms at 900; on MongoDB it is two
    lookups in the ``_id`` index.

    The function only picks candidates; every caller (find, count, update, delete) then
    matches each candidate against the whole filter, so a superset in the collection's
    natural order is exact. Taken when the filter is such an ``$in`` (alone or as a clause
    of an ``$and``) and every listed value is a UUID or an ObjectId: mongoeco's ``$in``
    matches such a value only by a stored ``_id`` with the same ``hashable_in_lookup_key``
    (whatever the collation, which that key ignores), and for these types that key says
    what the storage key (``bson_engine_key``) says. Any other filter goes to the original.
    """

    original = MemoryEngine._candidate_items_for_plan_locked
    used = 0  # filters served by lookup (printed when the server stops)

    @staticmethod
    def ids(plan: Any) -> tuple[Any, ...] | None:
        """The ``_id`` values of an ``$in`` that picks the candidates, or None."""
        if isinstance(plan, AndCondition):
            return next((ids for clause in plan.clauses if (ids := IdInLookup.ids(clause)) is not None), None)
        if (
            isinstance(plan, InCondition)
            and plan.field == "_id"
            and plan.values
            and all(isinstance(value, uuid.UUID) or is_object_id_like(value) for value in plan.values)
        ):
            values: tuple[Any, ...] = plan.values
            return values
        return None

    @classmethod
    def candidates(cls, engine: Any, coll: Any, plan: Any, **options: Any) -> list[tuple[Any, Any]]:
        ids = cls.ids(plan)
        if ids is None:
            found: list[tuple[Any, Any]] = cls.original(engine, coll, plan, **options)
            return found
        keys = {engine._storage_key(value) for value in ids}
        if isinstance(coll, MemoryCollection):
            ordered = coll.ordered_keys(keys)
        else:  # a plain dict: its own order
            ordered = [key for key in coll if key in keys]
        cls.used += 1
        return [(key, coll[key]) for key in ordered]

    @classmethod
    def install(cls) -> None:
        def candidates(engine: Any, coll: Any, plan: Any, **options: Any) -> list[tuple[Any, Any]]:
            return cls.candidates(engine, coll, plan, **options)

        MemoryEngine._candidate_items_for_plan_locked = candidates


# Commands that write nothing: they never wait for a transaction. Any other command
# outside a transaction is taken as a write (an unknown one only waits, it is not refused);
# an aggregate with $out or $merge is a write.
READS = frozenset(
    {
        "find", "aggregate", "getMore", "count", "distinct", "listCollections", "listIndexes",
        "listDatabases", "dbStats", "collStats", "ping", "buildInfo", "buildinfo", "hello",
        "isMaster", "ismaster", "serverStatus", "connectionStatus", "whatsmyuri",
        "getParameter", "hostInfo", "killCursors", "endSessions", "saslStart",
        "saslContinue", "authenticate", "logout", "listCommands", "explain",
    }
)  # fmt: skip
ENDS = ("commitTransaction", "abortTransaction")


@dataclass(frozen=True, slots=True)
class Command:
    """What the gate needs to know of one request, read from its OP_MSG body."""

    name: str
    session: str | None  # mongoeco's key for the lsid
    txn: int | None
    in_transaction: bool  # autocommit: false
    starts: bool  # startTransaction: true
    writes: bool
    ended: frozenset[str] = frozenset()  # endSessions: the sessions it ends

    @classmethod
    def peek(cls, header: Any, payload: bytes) -> Command | None:
        """The command of an OP_MSG request (its body section only; the documents of an
        insert travel in sequences, not decoded here), or None if it cannot be read: the
        proxy then answers it as it would anyway."""
        if header.op_code != OP_MSG:
            return None
        try:
            position, end = 4, len(payload) - (4 if payload[0] & 1 else 0)
            while position < end:
                kind, size = payload[position], int.from_bytes(payload[position + 1 : position + 5], "little")
                if kind == 0:
                    return cls._of(bson.decode(payload[position + 1 : position + 1 + size]))
                position += 1 + size
        except Exception:
            return None
        return None

    @classmethod
    def _of(cls, body: dict[str, Any]) -> Command:
        name = next(iter(body))
        lsid = body.get("lsid")
        pipeline = body.get("pipeline") if name == "aggregate" else None
        writes = name not in READS or any(
            isinstance(stage, dict) and ("$out" in stage or "$merge" in stage) for stage in pipeline or ()
        )
        ended = body.get("endSessions") if name == "endSessions" else None
        return cls(
            name=name,
            session=None if lsid is None else _key(lsid),
            txn=body.get("txnNumber"),
            in_transaction=body.get("autocommit") is False,
            starts=body.get("startTransaction") is True,
            writes=writes,
            ended=frozenset(_key(s) for s in ended) if isinstance(ended, list) else frozenset(),
        )


def _key(lsid: Any) -> str:
    """mongoeco's session key (``WireSessionStore``) for an lsid as decoded here."""
    key: str = wire_session_key(decode_wire_value(lsid))
    return key


@dataclass(slots=True)
class _Owner:
    session: str
    txn: int | None
    connection: int
    since: float
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class _Waiter:
    owner: _Owner | None  # None: a non-transactional write
    granted: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class TransactionGate:
    """One transaction at a time, and no non-transactional write while it is open.

    Why: mongoeco keeps one version for the whole engine, and a transaction's commit fails
    if *any* write was committed since the transaction started (then the commit replaces
    the collections the transaction touched with its copies). Several processes writing at
    once, each in short transactions beside non-transactional writes (a worker fleet's
    fenced writes and heartbeats), then fail nearly every commit and retry forever. MongoDB
    itself fails a transaction only on a conflicting write to the same *document*, and makes
    a non-transactional write to a document an open transaction has written wait until the
    transaction ends. This gate is that waiting with the whole database as the document:

    - a command starting a transaction waits until no other transaction is open and no
      non-transactional write is running; it then owns the gate until its commit or abort;
    - a non-transactional write waits while a transaction is open (reads never wait);
    - when a transaction ends, the writes that waited for it run, then the next transaction
      (in arrival order), so neither kind starves the other;
    - a transaction is aborted when it outlives ``lifetime`` (MongoDB's
      ``transactionLifetimeLimitSeconds``, 60 by default there) or when the connection of
      its latest command closes (its client died: a SIGKILLed worker would otherwise hold
      the gate until the limit); its later commands, its commit included, are refused with
      ``NoSuchTransaction`` (labelled ``TransientTransactionError``), as MongoDB refuses
      those of a transaction it aborted. Without that, mongoeco would run them outside any
      transaction and answer the commit "ok".

    Two transactions of one client that wait for each other wait until the limit (the first
    is then aborted), where MongoDB fails the second one's conflicting write at once.
    """

    def __init__(self, sessions: WireSessionStore, lifetime: float) -> None:
        self._sessions = sessions
        self._lifetime = lifetime
        self._owner: _Owner | None = None
        self._writes = 0  # non-transactional writes running
        self._transactions: deque[_Waiter] = deque()  # waiting to start, in arrival order
        self._writers: deque[_Waiter] = deque()  # waiting for the open transaction to end
        self._making_way = False  # the first waiting transaction waits for the writes running
        self._committed: dict[str, int | None] = {}  # session -> its last committed txnNumber
        # Printed when the server stops: counts, and seconds (held in all, the longest held,
        # the longest waits of a write and of a transaction).
        self.stats: dict[str, float] = {"transactions": 0, "aborted": 0, "held": 0.0, "longest": 0.0}
        self.stats |= {"write_wait": 0.0, "transaction_wait": 0.0}

    async def run(
        self,
        command: Command,
        connection: int,
        execute: Callable[[], Awaitable[bytes | None]],
        refuse: Callable[[dict[str, Any]], bytes],
    ) -> bytes | None:
        if command.in_transaction and command.session is not None:
            return await self._in_transaction(command, command.session, connection, execute, refuse)
        if command.name == "endSessions":  # mongoeco aborts the transactions of ended sessions
            response = await execute()
            if self._owner is not None and self._owner.session in command.ended:
                self._abandon(self._owner, "its session ended")
            return response
        if not command.writes:
            return await execute()
        await self._wait(_Waiter(None))
        try:
            return await execute()
        finally:
            self._writes -= 1
            self._grant()

    async def _in_transaction(
        self,
        command: Command,
        session: str,
        connection: int,
        execute: Callable[[], Awaitable[bytes | None]],
        refuse: Callable[[dict[str, Any]], bytes],
    ) -> bytes | None:
        owner = self._owner
        if command.starts:
            if owner is not None and owner.session == session:  # its client moved on
                self._abandon(owner, "its session started another")
            owner = _Owner(session, command.txn, connection, 0.0)
            await self._wait(_Waiter(owner))
        elif (
            owner is not None
            and (owner.session, owner.txn) == (session, command.txn)
            and not self._active(session)
        ):  # its start failed: mongoeco would run this command outside any transaction
            self._abandon(owner, "it never started")
        if owner is None or self._owner is not owner or (owner.session, owner.txn) != (session, command.txn):
            committed = self._committed.get(session, -1) == command.txn
            if command.name == "abortTransaction" or (command.name == "commitTransaction" and committed):
                return await execute()  # nothing left to end (mongoeco answers ok)
            return refuse(
                {
                    "ok": 0.0,
                    "code": 251,
                    "codeName": "NoSuchTransaction",
                    "errmsg": f"Transaction with {{ txnNumber: {command.txn} }} has been aborted.",
                    "errorLabels": ["TransientTransactionError"],
                }
            )
        owner.connection = connection
        response = await execute()
        if command.name in ENDS and self._owner is owner:
            if command.name == "commitTransaction" and _ok(response):
                self._committed[session] = command.txn
            self._release(owner)
        return response

    async def _wait(self, waiter: _Waiter) -> None:
        """Take the gate for ``waiter`` (its transaction, or one more write), in turn."""
        started = time.monotonic()
        (self._writers if waiter.owner is None else self._transactions).append(waiter)
        self._grant()
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter.granted.done() and not waiter.granted.cancelled():  # granted meanwhile
                if waiter.owner is None:
                    self._writes -= 1
                else:
                    self._abandon(waiter.owner, "its request was cancelled")
            else:
                waiter.granted.cancel()
            self._grant()
            raise
        kind = "write_wait" if waiter.owner is None else "transaction_wait"  # the longest, in seconds
        self.stats[kind] = max(self.stats[kind], time.monotonic() - started)

    def _grant(self) -> None:
        """With no transaction open: the writes that waited for the last one all run, then
        the transaction that waited longest once they are done (writes coming meanwhile
        wait for it). A heartbeat thus waits for one transaction at most, not for a queue
        of them, and a stream of writes cannot keep a transaction out."""
        if self._owner is not None:
            return
        while self._transactions and self._transactions[0].granted.done():  # cancelled
            self._transactions.popleft()
        if not self._transactions or not self._making_way:
            while self._writers:
                waiter = self._writers.popleft()
                if not waiter.granted.done():
                    self._writes += 1
                    waiter.granted.set_result(None)
            self._making_way = bool(self._transactions)
        if self._transactions and not self._writes:
            waiter = self._transactions.popleft()
            assert waiter.owner is not None
            self._making_way = False
            self._own(waiter.owner)
            waiter.granted.set_result(None)

    def _own(self, owner: _Owner) -> None:
        owner.since = time.monotonic()
        loop = asyncio.get_running_loop()
        owner.timer = loop.call_later(self._lifetime, self._abandon, owner, "it outlived the limit")
        self._owner = owner
        self.stats["transactions"] += 1

    def _release(self, owner: _Owner) -> None:
        if self._owner is not owner:
            return
        if owner.timer is not None:
            owner.timer.cancel()
        self._owner = None
        held = time.monotonic() - owner.since
        self.stats["longest"] = max(self.stats["longest"], held)
        self.stats["held"] += held
        self._grant()

    def _abandon(self, owner: _Owner, why: str) -> None:
        """Abort ``owner``'s transaction (if it still holds the gate) and let the next in."""
        if self._owner is not owner:
            return
        try:
            if self._active(owner.session):
                self._sessions._sessions[owner.session].session.abort_transaction()
        finally:  # the gate opens whatever mongoeco does
            self.stats["aborted"] += 1
            print(
                f"mongo_wire_server: aborted transaction {owner.txn} after "
                f"{time.monotonic() - owner.since:.2f}s: {why}",
                file=sys.stderr,
                flush=True,
            )
            self._release(owner)

    def _active(self, session: str) -> bool:
        """Whether mongoeco has a transaction open on ``session``."""
        context = self._sessions._sessions.get(session)
        return context is not None and bool(context.session.transaction_active)

    def connection_closed(self, connection: int) -> None:
        if self._owner is not None and self._owner.connection == connection:
            self._abandon(self._owner, "its connection closed")


def _ok(response: bytes | None) -> bool:
    """Whether an OP_MSG reply (16-byte header, flags, body section) says ``ok: 1``."""
    return response is not None and bson.decode(response[21:]).get("ok") == 1


class _Connections(WireConnectionRegistry):  # type: ignore[misc]  # mongoeco: not installed here
    """The proxy's connection registry, telling the gate when a connection closes."""

    def __init__(self, gate: TransactionGate) -> None:
        super().__init__()
        self._gate = gate

    def close(self, context: WireConnectionContext) -> None:
        super().close(context)
        self._gate.connection_closed(context.connection_id)


class GatedProxyServer(AsyncMongoEcoProxyServer):  # type: ignore[misc]  # (see _Connections)
    """mongoeco's proxy with every request passing the :class:`TransactionGate`."""

    def __init__(self, *, lifetime: float = LIFETIME_SECONDS, **options: Any) -> None:
        super().__init__(**options)
        self.gate = TransactionGate(self._session_store, lifetime)
        self._connections = _Connections(self.gate)

    async def _dispatch_wire_request(self, header: Any, payload: bytes, *, connection: Any) -> bytes | None:
        command = Command.peek(header, payload)
        dispatch = super()._dispatch_wire_request

        async def execute() -> bytes | None:
            response: bytes | None = await dispatch(header, payload, connection=connection)
            return response

        if command is None:
            return await execute()

        def refuse(document: dict[str, Any]) -> bytes:
            reply: bytes = encode_op_msg_response(
                document, request_id=next(self._request_ids), response_to=header.request_id
            )
            return reply

        return await self.gate.run(command, connection.connection_id, execute, refuse)


async def serve(uri_file: Path, lifetime: float = LIFETIME_SECONDS) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = GatedProxyServer(host="127.0.0.1", port=0, lifetime=lifetime)
    address = await server.start()
    temporary = uri_file.with_suffix(".tmp")
    temporary.write_text(f"mongodb://{address.host}:{address.port}/?directConnection=true\n")
    temporary.replace(uri_file)
    try:
        await stop.wait()
    finally:
        cpu = f"{time.process_time():.1f}s CPU"
        lookups = f"compound unique checks cleared by lookup {UniqueLookups.used}, _id $in {IdInLookup.used}"
        stats = f"transactions {server.gate.stats}"
        print(f"mongo_wire_server: {cpu}, {lookups}, {stats}", file=sys.stderr, flush=True)
        await server.close()


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--mongoeco-scans"]
    if len(arguments) == len(sys.argv) - 1:
        UniqueLookups.install()
        IdInLookup.install()
    asyncio.run(serve(Path(arguments[0]), *(float(a) for a in arguments[1:2])))
