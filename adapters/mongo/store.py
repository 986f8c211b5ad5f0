"""The MongoDB store: client, sessions, transactions and indexes.

Built on PyMongo's native async client (``AsyncMongoClient``); a Motor database handle is
accepted too (:meth:`MongoStore.from_database`). The database is the URL's path
(default ``qmcp_agents``).

Multi-document transactions are used when the server supports them (a replica set or a
sharded cluster; probed once on connect, see ``capabilities``): ``store.transaction()``
then makes everything inside it all-or-nothing. Single repository calls never rely on a
transaction, nor on the server detecting write conflicts between transactions: ids come
from an atomic counter, message batches are single documents chained by a unique index,
optimistic concurrency is a conditional single-document update, and multi-document
writes are ordered so that an interrupted one can be finished by calling it again. What
is guaranteed without transactions is written in ``docs/backends.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import warnings
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.errors import ConfigurationError, OperationFailure

from qmcp_agents.adapters.concurrency import Frame, settle
from qmcp_agents.adapters.store_errors import masked, naming
from qmcp_agents.domain import ConcurrencyError, StoreUnavailable, TransactionRolledBack
from qmcp_agents.domain.ports import Capabilities

from . import driver
from .errors import translate
from .leases import MongoLeases
from .messages import MongoMessages
from .repositories import (
    MongoAgentInstances,
    MongoAgentTypes,
    MongoExecutions,
    MongoResults,
    MongoTopologies,
)

T = TypeVar("T")
DEFAULT_DATABASE = "qmcp_agents"
PREFIX = "qmcp_"
COLLECTIONS = (
    "agent_types",
    "topologies",
    "agent_instances",
    "executions",
    "messages",
    "message_parts",
    "results",
    "counters",
    "leases",
)

INDEXES: dict[str, list[IndexModel]] = {
    "agent_types": [
        IndexModel([("name", ASCENDING)], unique=True),
        IndexModel([("role", ASCENDING), ("_id", ASCENDING)]),
    ],
    "topologies": [
        IndexModel([("name", ASCENDING)], unique=True),
        IndexModel([("topology_type", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("memberships.agent_type_id", ASCENDING)]),
        IndexModel([("config.sub_topologies", ASCENDING)]),
    ],
    "agent_instances": [
        IndexModel([("agent_type_id", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("execution_id", ASCENDING), ("_id", ASCENDING)]),
    ],
    "executions": [
        IndexModel([("status", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("topology_id", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("correlation_id", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("parent_id", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("started_at", ASCENDING)]),
        IndexModel([("status", ASCENDING), ("completed_at", ASCENDING)]),
    ],
    "messages": [
        # One document per appended batch: `first` is unique per execution, which is what
        # makes batches gap-free without transactions (see MongoMessages).
        IndexModel([("execution_id", ASCENDING), ("first", ASCENDING)], unique=True),
        IndexModel([("execution_id", ASCENDING), ("last", DESCENDING)]),
        IndexModel([("items.id", ASCENDING)], unique=True),
        IndexModel([("execution_id", ASCENDING), ("items.round_number", ASCENDING), ("first", ASCENDING)]),
        IndexModel([("execution_id", ASCENDING), ("items.sender_id", ASCENDING), ("first", ASCENDING)]),
        IndexModel([("items.sender_id", ASCENDING)]),
        IndexModel([("items.recipient_id", ASCENDING)]),
    ],
    "message_parts": [
        # The rest of an append too large for one document (see adapters/mongo/messages.py).
        IndexModel([("items.id", ASCENDING)], unique=True),
        IndexModel([("head", ASCENDING)]),
        IndexModel([("execution_id", ASCENDING)]),
        IndexModel([("items.sender_id", ASCENDING)]),
        IndexModel([("items.recipient_id", ASCENDING)]),
    ],
    "results": [
        IndexModel([("execution_id", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("agent_instance_id", ASCENDING), ("_id", ASCENDING)]),
    ],
    "counters": [],
    # A claim looks for ready entries and expired leases, oldest execution first.
    "leases": [
        IndexModel([("ready", ASCENDING), ("owner", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("expires_at", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("owner", ASCENDING), ("_id", ASCENDING)]),
    ],
}


class MongoStore:
    """MongoDB store over PyMongo's async client (or a Motor database)."""

    def __init__(self, database: Any, *, client: Any = None, owns_client: bool = False) -> None:
        self.database = database
        self.client = client if client is not None else database.client
        self._owns_client = owns_client
        self.display_url = f"mongodb database {getattr(database, 'name', '?')!r}"
        """How errors name this store: the URL (password masked) when opened from one."""
        self._collections = {name: driver.collection(database, PREFIX + name) for name in COLLECTIONS}
        self._session: contextvars.ContextVar[Any] = contextvars.ContextVar(f"mongo-{id(self)}", default=None)
        # The open transaction's frame: tasks sharing it take turns on its session, and a
        # nested block failing in any of them dooms it (a flag in a context variable would
        # be set in the failing task's copy of the context only).
        self._frame: contextvars.ContextVar[Frame[Any] | None] = contextvars.ContextVar(
            f"mongo-frame-{id(self)}", default=None
        )
        self._transactions: bool | None = None
        self._motor = driver.is_motor(database)
        self._probe_lock = asyncio.Lock()
        self.agent_types = MongoAgentTypes(self)
        self.topologies = MongoTopologies(self)
        self.agent_instances = MongoAgentInstances(self)
        self.executions = MongoExecutions(self)
        self.messages = MongoMessages(self)
        self.results = MongoResults(self)
        self.leases = MongoLeases(self)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        database: str | None = None,
        server_selection_timeout_ms: int = 10_000,
        **client_options: Any,
    ) -> MongoStore:
        """A store on a new ``AsyncMongoClient`` (closed with the store); the database is
        ``database``, else the URL's path, else ``qmcp_agents``."""
        name = database or urlsplit(url).path.lstrip("/") or DEFAULT_DATABASE
        if "serverselectiontimeoutms=" not in urlsplit(url).query.lower():  # the URL's own wins
            client_options["serverSelectionTimeoutMS"] = server_selection_timeout_ms
        with warnings.catch_warnings(record=True) as warned:  # PyMongo warns of options it drops
            warnings.simplefilter("always")
            try:
                client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
                    url, tz_aware=True, uuidRepresentation="standard", **client_options
                )
            except ConfigurationError as error:  # InvalidURI too: a mistake in the URL itself
                raise StoreUnavailable(_invalid_url(url, error)) from None
        dropped = [w for w in warned if w.category is UserWarning]
        if dropped:  # an option PyMongo ignores is a mistake the user would not see
            raise StoreUnavailable(_invalid_url(url, dropped[0].message))
        store = cls(client[name], client=client, owns_client=True)
        store.display_url = masked(url)
        return store

    @classmethod
    def from_database(cls, database: Any) -> MongoStore:
        """A store on a database handle the application already has: PyMongo's
        ``AsyncDatabase`` or Motor's ``AsyncIOMotorDatabase``. The client stays the caller's."""
        return cls(database)

    def collection(self, name: str) -> Any:
        return self._collections[name]

    # --- capabilities ---------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            backend="mongodb", transactions=bool(self._transactions), multi_process=True, savepoints=False
        )

    async def connect(self) -> None:
        """Reach the server and find out whether it supports transactions (once)."""
        if self._transactions is not None:
            return
        async with self._probe_lock:
            if self._transactions is None:
                self._transactions = await self.call(self._probe_transactions())

    async def _probe_transactions(self) -> bool:
        probe = self.collection("counters")
        session = await driver.start_session(self.client)
        try:
            await driver.start_transaction(session)
            await probe.update_one({"_id": "__probe__"}, {"$inc": {"n": 1}}, upsert=True, session=session)
            await session.abort_transaction()
        except OperationFailure:
            return False
        finally:
            await session.end_session()
        # An aborted write must have left nothing behind.
        if await probe.find_one({"_id": "__probe__"}) is None:
            return True
        await probe.delete_one({"_id": "__probe__"})
        return False

    # --- calls, sessions, transactions --------------------------------------------------------

    async def call(self, operation: Awaitable[T]) -> T:
        """Await a driver operation, translating its errors into the library's.

        Motor runs each operation on a thread, which a cancellation of the awaiting task does
        not stop: an insert cancelled inside a transaction went on after the transaction was
        aborted, and then ran outside it (committed on its own). So with Motor an operation
        runs to its end and the cancellation is delivered afterwards (as the SQL adapter's
        settled calls do); PyMongo's own async client stops the operation itself.
        """
        try:
            return await (settle(operation) if self._motor else operation)
        except BaseException as error:
            raise self.translate(error) from error

    def translate(self, error: BaseException) -> BaseException:
        """The library error for a driver error, naming this store."""
        return naming(self.display_url, translate(error))

    async def settled(self, operation: Awaitable[T]) -> T:
        """Await a driver operation as :meth:`call` does, but leave its errors untranslated
        (for callers that tell one duplicate key from another)."""
        return await (settle(operation) if self._motor else operation)

    def current_frame(self) -> Frame[Any] | None:
        """The open ``store.transaction()``'s frame (see ``adapters/concurrency.py``), or None."""
        return self._frame.get()

    def session(self) -> Any:
        """The session of the open ``store.transaction()``, or None."""
        return self._session.get()

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[Any]:
        """The session to pass to every operation of one repository call: the open
        transaction's, or None. Single calls never open a transaction of their own: each
        is built to be correct without one (see the class docstring), and some servers
        fail a transaction that merely overlaps another client's write."""
        await self.connect()
        yield self._session.get()

    @asynccontextmanager
    async def _in_transaction(self) -> AsyncIterator[Any]:
        session = await self.call(driver.start_session(self.client))
        token = self._session.set(session)
        try:
            await self.call(driver.start_transaction(session))
            try:
                yield session
            except BaseException:
                with contextlib.suppress(Exception):  # the first error is the one to report
                    await session.abort_transaction()
                raise
            try:
                await session.commit_transaction()
            except OperationFailure as error:
                raise ConcurrencyError(
                    f"the transaction met a concurrent write and was rolled back; retry it ({error})"
                ) from error
            except BaseException as error:
                raise self.translate(error) from error
        finally:
            self._session.reset(token)
            await session.end_session()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """All-or-nothing when ``capabilities.transactions``; otherwise the calls inside run
        one by one (see docs/backends.md). A nested call joins the open transaction; MongoDB
        has no savepoints, so if the nested block fails the whole transaction is doomed."""
        await self.connect()
        if not self._transactions:
            yield
            return
        outer = self._frame.get()
        if outer is not None:
            outer.check_open()
            try:
                yield
            except BaseException:
                outer.failed = True
                raise
            return
        async with self._in_transaction() as session:
            frame: Frame[Any] = Frame(session)
            token = self._frame.set(frame)
            try:
                yield
                if frame.failed:
                    raise TransactionRolledBack(
                        "a nested transaction failed and MongoDB has no savepoints, so the whole "
                        "transaction was rolled back"
                    )
            finally:
                frame.open = False
                self._frame.reset(token)

    # --- schema ------------------------------------------------------------------------------

    async def create_schema(self) -> None:
        """Create the collections' indexes (idempotent: existing ones are left as they are)."""
        await self.connect()
        for name, indexes in INDEXES.items():
            if indexes:
                collection = self.collection(name)
                await self.call(collection.create_indexes(indexes))

    async def drop_schema(self) -> None:
        """Drop this library's collections (``qmcp_*``) and nothing else."""
        for name in COLLECTIONS:
            await self.call(self.database.drop_collection(PREFIX + name))

    # --- lifecycle -----------------------------------------------------------------------------

    async def close(self) -> None:
        if self._owns_client:
            result = self.client.close()
            if asyncio.iscoroutine(result):
                await result

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def _invalid_url(url: str, problem: object) -> str:
    return f"store {masked(url)}: invalid MongoDB URL ({problem}); fix the URL"
