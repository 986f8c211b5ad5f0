"""The SQL store: engine, connections, transactions and schema management.

Drivers: ``aiosqlite`` for SQLite and ``asyncpg`` for PostgreSQL (see docs/decisions.md).
Outside a transaction each repository call runs in a transaction of its own; inside
``store.transaction()`` every call shares one connection and runs in a savepoint, so a
failed call leaves the transaction usable and unchanged.

SQLite allows one writer at a time: write transactions begin with ``BEGIN IMMEDIATE`` (so
two writers queue on the file lock instead of failing half-way) and, within one process, an
asyncio lock queues them before they reach the file. Reads begin deferred and skip the
queue (WAL lets them run beside the writer).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, nullcontext, suppress
from types import TracebackType
from typing import Any, Self

from sqlalchemy import event, exc, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool, StaticPool
from sqlalchemy.util import greenlet_spawn

from qmcp_agents.adapters.concurrency import Frame, in_settled_call, settle, wait_out
from qmcp_agents.adapters.store_errors import INIT_HINT, masked, naming
from qmcp_agents.domain import (
    AgentInstance,
    AgentType,
    Execution,
    MessageCreate,
    Result,
    SchemaMissing,
    SchemaTooNew,
    StoreUnavailable,
    Topology,
)
from qmcp_agents.domain.leases import LeaseHold
from qmcp_agents.domain.ports import Capabilities, RecordedCall
from qmcp_agents.domain.transactions import undone_whole

from . import fenced, jsonb, migrate, record
from .errors import connection_lost, translate
from .leases import SqlLeases
from .repositories import (
    SqlAgentInstances,
    SqlAgentTypes,
    SqlExecutions,
    SqlMessages,
    SqlResults,
    SqlTopologies,
)

_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg", "postgres": "asyncpg"}


def async_url(url: str | URL) -> URL:
    """``sqlite:///f.db`` -> ``sqlite+aiosqlite:///f.db``; ``postgresql://`` -> ``+asyncpg``."""
    parsed = make_url(url)
    backend, _, given = parsed.drivername.partition("+")
    driver = _DRIVERS.get(backend)
    if driver is None:
        raise ValueError(f"store url {url!s}: the SQL adapter supports sqlite:// and postgresql://")
    if given and given != driver:
        raise ValueError(
            f"store url {url!s}: driver {given!r} is not supported; use {backend}+{driver} or none"
        )
    parsed = parsed.set(drivername=f"{'postgresql' if backend == 'postgres' else backend}+{driver}")
    return _asyncpg_query(parsed, str(url)) if driver == "asyncpg" else parsed


@functools.cache
def _asyncpg_options() -> frozenset[str]:
    """The URL query options a PostgreSQL store takes: asyncpg.connect()'s keywords, and the
    two SQLAlchemy's asyncpg dialect reads itself. Imported here: a SQLite store never
    imports asyncpg."""
    import inspect

    import asyncpg

    keywords = set(inspect.signature(asyncpg.connect).parameters) - {
        "dsn",
        "connection_class",
        "record_class",
    }
    return frozenset(keywords | {"prepared_statement_cache_size", "prepared_statement_name_func"})


def _asyncpg_query(url: URL, given: str) -> URL:
    """The URL's query options as asyncpg takes them: libpq's ``sslmode`` is asyncpg's
    ``ssl`` (same values), and an option asyncpg does not know is refused here, naming it,
    rather than at the first connection as ``connect() got an unexpected keyword``."""
    query = dict(url.query)
    if "sslmode" in query:
        query["ssl"] = query.pop("sslmode")
    unknown = sorted(set(query) - _asyncpg_options())
    if unknown:
        raise ValueError(
            f"store {masked(given)}: unknown PostgreSQL option(s) "
            f"{', '.join(unknown)}; use libpq's sslmode or an option of asyncpg.connect()"
        )
    return url.set(query=query)


def _check_pool(pool_size: int, max_overflow: int, pool_timeout: float) -> None:
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise ValueError(f"pool_size must be a whole number of at least 1, got {pool_size!r}")
    if isinstance(max_overflow, bool) or not isinstance(max_overflow, int) or max_overflow < 0:
        raise ValueError(f"max_overflow must be a whole number of at least 0, got {max_overflow!r}")
    if (
        isinstance(pool_timeout, bool)
        or not isinstance(pool_timeout, int | float)
        or not 0 < pool_timeout < math.inf
    ):
        raise ValueError(f"pool_timeout must be a finite number of seconds above 0, got {pool_timeout!r}")


class SqlStore:
    """SQLAlchemy Core store for SQLite and PostgreSQL.

    ``pool_size`` is the most connections the store opens (a SQLite file or PostgreSQL; an
    in-memory SQLite database is one connection). They are opened as needed and then kept:
    a call that finds them all busy waits up to ``pool_timeout`` seconds for one to come
    back. ``max_overflow`` allows that many more under a burst, each closed as soon as it
    comes back; it is 0 because opening a PostgreSQL connection (a server process, cold
    caches, every statement prepared again) costs far more than waiting a moment for a
    pooled one (decision "16: a pool that does not churn").
    """

    def __init__(
        self,
        url: str | URL,
        *,
        schema: str | None = None,
        pool_size: int = 10,
        max_overflow: int = 0,
        pool_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        echo: bool = False,
    ) -> None:
        _check_pool(pool_size, max_overflow, pool_timeout)
        self.url = async_url(url)
        self.display_url = masked(str(url))
        """The URL as given, password masked: how errors name this store."""
        self._creating = False
        self.dialect = self.url.get_backend_name()
        if schema is not None and self.dialect != "postgresql":
            raise ValueError("schema= is supported on PostgreSQL only")
        if schema is not None and not schema.replace("_", "").isalnum():
            raise ValueError(f"schema {schema!r} must be letters, digits and '_'")
        self.schema = schema
        self.label = f"qmcp-agents-{uuid.uuid4().hex[:12]}"
        self._options = {
            "pool_size": pool_size,
            "max_overflow": max_overflow,
            "pool_timeout": pool_timeout,
            "connect_timeout": connect_timeout,
            "echo": echo,
        }
        self._engine: AsyncEngine | None = None
        self._current: contextvars.ContextVar[Frame[AsyncConnection] | None] = contextvars.ContextVar(
            self.label, default=None
        )
        self._writer = asyncio.Lock() if self.dialect == "sqlite" else None
        self._users: dict[AsyncEngine, int] = {}
        """Calls using each engine (waiting for a connection or holding one): see _leave."""
        self._spare: list[Any] = []
        """A SQLite connection kept checked out between driver-level calls (at most one): the
        next call takes it without the pool's checkout and return, two greenlet switches."""
        self.agent_types = SqlAgentTypes(self)
        self.topologies = SqlTopologies(self)
        self.agent_instances = SqlAgentInstances(self)
        self.executions = SqlExecutions(self)
        self.messages = SqlMessages(self)
        self.results = SqlResults(self)
        self.leases = SqlLeases(self)

    # --- engine ---------------------------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = self._create_engine()
        return self._engine

    def _create_engine(self) -> AsyncEngine:
        # No pool_pre_ping: on asyncpg it costs three round trips per checkout (BEGIN, a
        # ping, ROLLBACK), more than the call itself. A checkout listener refuses
        # connections the driver already knows are closed (a killed backend); a connection
        # that dies unnoticed fails one call with StoreUnavailable and is replaced.
        options: dict[str, Any] = {"echo": self._options["echo"]}
        if self.dialect == "sqlite":
            database = self.url.database
            if not database or database == ":memory:":
                options["poolclass"] = StaticPool
            else:
                options.update(self._pool_options())
            options["connect_args"] = {"timeout": 30}
            options["pool_reset_on_return"] = None  # the "reset" listener of _setup_sqlite does it
            engine = create_async_engine(self.url, **options)
            _setup_sqlite(engine, in_memory=options.get("poolclass") is StaticPool)
            event.listen(engine.sync_engine, "do_connect", lambda *_: self._refuse_missing_file())
            return engine
        settings = {"application_name": self.label}
        if self.schema is not None:
            settings["search_path"] = self.schema
        options["connect_args"] = {"server_settings": settings, "timeout": self._options["connect_timeout"]}
        options.update(self._pool_options())
        options["json_serializer"] = jsonb.dumps
        engine = create_async_engine(self.url, **options)
        _refuse_closed_connections(engine)
        return engine

    def _pool_options(self) -> dict[str, Any]:
        return {key: self._options[key] for key in ("pool_size", "max_overflow", "pool_timeout")}

    def _translate(self, error: BaseException) -> BaseException:
        """The library error for ``error``, naming this store's URL."""
        return naming(self.display_url, translate(error))

    def _refuse_missing_file(self) -> None:
        """A missing SQLite file is created only by ``create_schema``: any other call would
        leave an empty file behind (a read-only command creating ``qmcp-agents.db``)."""
        database = self.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return
        folder = os.path.dirname(database) or "."
        if not os.path.isdir(folder):  # refused here: the driver's failure leaves a thread behind
            raise StoreUnavailable(
                f"store {self.display_url}: the folder {folder} does not exist; create it or fix the path"
            )
        if not self._creating and not os.path.exists(database):
            raise SchemaMissing(f"store {self.display_url}: the file {database} does not exist; {INIT_HINT}")

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            backend=self.dialect,
            transactions=True,
            multi_process=self.url.database not in (None, "", ":memory:"),
        )

    # --- connections and transactions -----------------------------------------------------
    #
    # Cancellation safety (docs/decisions.md, issue 14): opening a connection with its
    # BEGIN, and the COMMIT or ROLLBACK that ends it, are run to their end by
    # ``concurrency.settle`` even when the caller is cancelled meanwhile, so a cancelled call
    # never leaves a checked-out connection inside a transaction (on SQLite that held the
    # file's write lock until a garbage collection). Concurrent tasks inside one
    # ``transaction()`` take turns on its connection through ``Frame`` locks.

    @property
    def _reads_share_the_file(self) -> bool:
        """SQLite files in WAL mode let readers run beside the writer; an in-memory SQLite
        store is one shared connection, so everything queues on the writer lock there."""
        return self.dialect == "sqlite" and self.capabilities.multi_process

    def _enter(self) -> AsyncEngine:
        """The engine a call is about to use, counted as in use until :meth:`_leave`."""
        engine = self.engine
        self._users[engine] = self._users.get(engine, 0) + 1
        return engine

    async def _leave(self, engine: AsyncEngine) -> None:
        """A call is done with ``engine``; the last one out of an engine that ``close()``
        let go of disposes of it. Disposing of a pool while calls still wait on it would
        take the connections handed to them (a waiter is woken, then runs later): they
        would wait out the whole ``pool_timeout`` and fail."""
        left = self._users[engine] - 1
        if left:
            self._users[engine] = left
            return
        del self._users[engine]
        if engine is not self._engine:
            await settle(engine.dispose())

    @property
    def _capacity(self) -> int:
        """The most connections the pool may have out at once."""
        return int(self._options["pool_size"]) + int(self._options["max_overflow"])

    def _pool_full(self, engine: AsyncEngine) -> bool:
        """Whether every connection ``engine``'s pool may open is checked out (a call
        asking for one now waits)."""
        pool = engine.sync_engine.pool
        return isinstance(pool, QueuePool) and pool.checkedout() >= self._capacity

    async def _spare_back_if_full(self, engine: AsyncEngine) -> None:
        """The kept SQLite connection given back to the pool when the pool has no other
        free one: a call would otherwise wait (up to ``pool_timeout``, or for good if what
        holds the others waits for it) while a connection sits idle."""
        if self._spare and engine is self._engine and self._pool_full(engine):
            await greenlet_spawn(self._spare.pop().close)

    async def _open(self, read: bool, alone: bool = False) -> AsyncConnection:
        engine = self._enter()
        try:
            await self._spare_back_if_full(engine)
            conn = await engine.connect()
        except BaseException:
            await self._leave(engine)
            raise
        try:
            if alone and self.dialect == "postgresql":
                # Each statement stands on its own (and a ``BEGIN``/``COMMIT`` around them
                # would be two more round trips): autocommit, undone when the connection
                # goes back to the pool.
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            if read:  # SQLite: a deferred BEGIN, which takes no write lock (see _setup_sqlite)
                conn.sync_connection.execution_options(qmcp_read=True)  # type: ignore[union-attr]  # no I/O
            await conn.begin()
        except BaseException:
            try:
                await conn.close()
            finally:
                await self._leave(engine)
            raise
        return conn

    async def _end(self, conn: AsyncConnection, commit: bool) -> None:
        """COMMIT or ROLLBACK, then give the connection back. A connection whose transaction
        could not be ended cleanly is invalidated, so the pool never hands it out again
        (except an in-memory SQLite store's only connection, which *is* the database)."""
        try:
            await (conn.commit() if commit else conn.rollback())
        except BaseException:
            if self.dialect == "postgresql" or self._reads_share_the_file:
                with suppress(Exception):
                    await conn.invalidate()
            raise
        finally:
            try:
                await conn.close()
            finally:
                await self._leave(conn.engine)

    @asynccontextmanager
    async def _begin(self, read: bool = False, alone: bool = False) -> AsyncIterator[AsyncConnection]:
        """A new transaction on a pooled connection (queued behind other writers on SQLite);
        ``alone``: statements that each stand on their own, run without a transaction on
        PostgreSQL."""
        shared = read and self._reads_share_the_file
        queue = self._writer if self._writer is not None and not shared else None
        async with queue if queue is not None else nullcontext():
            if in_settled_call():  # nobody can cancel this task: no need for extra ones
                async with self._plain(read, alone) as conn:
                    yield conn
                return
            opening = asyncio.ensure_future(self._open(read, alone))
            if await wait_out(opening):  # cancelled while connecting: give the connection back
                if not opening.cancelled() and opening.exception() is None:
                    await settle(self._end(opening.result(), commit=False))
                raise asyncio.CancelledError
            try:
                conn = opening.result()
            except BaseException as error:
                raise self._translate(error) from error
            try:
                yield conn
            except BaseException as error:
                await settle(self._end(conn, commit=False))
                raise self._translate(error) from error
            try:
                await settle(self._end(conn, commit=True))
            except BaseException as error:
                raise self._translate(error) from error

    @asynccontextmanager
    async def _plain(self, read: bool, alone: bool = False) -> AsyncIterator[AsyncConnection]:
        """``_begin`` for a settled call: the same steps, awaited directly."""
        try:
            conn = await self._open(read, alone)
        except BaseException as error:
            raise self._translate(error) from error
        try:
            yield conn
        except BaseException as error:
            await self._end(conn, commit=False)
            raise self._translate(error) from error
        try:
            await self._end(conn, commit=True)
        except BaseException as error:
            raise self._translate(error) from error

    @property
    def in_transaction(self) -> bool:
        return self._current.get() is not None

    def one_statement_fits(self) -> bool:
        """Whether a write may be one checked statement sent straight to the driver: outside
        a transaction; on PostgreSQL also in the body of a ``whole`` transaction (it then
        runs in the transaction, unprotected by a savepoint: a refusal writes nothing, and
        any other failure undoes the transaction anyway)."""
        if not self.in_transaction:
            return True
        return self.dialect == "postgresql" and undone_whole()

    async def add_instances_fenced(
        self, instances: Sequence[AgentInstance], lease: LeaseHold
    ) -> list[AgentInstance] | None:
        """:class:`~qmcp_agents.domain.ports.FencedInstanceAdder`: one statement on
        PostgreSQL (:mod:`.fenced`); ``None`` on SQLite, whose composed form is cheap."""
        return await fenced.add_instances_fenced(self, instances, lease)

    async def topology_with_agent_types(self, id: int) -> tuple[Topology, dict[int, AgentType]] | None:
        """:class:`~qmcp_agents.domain.ports.TopologyReader`: one statement
        (``SqlTopologies.with_agent_types``)."""
        return await self.topologies.with_agent_types(id)

    async def record_call(
        self,
        execution_id: uuid.UUID,
        message: MessageCreate,
        result: Result,
        instance: AgentInstance,
        lease: LeaseHold | None,
    ) -> RecordedCall | None:
        """:class:`~qmcp_agents.domain.ports.CallRecorder`: one statement on PostgreSQL
        (:mod:`.record`); ``None`` on SQLite, whose composed form is cheap (no round trips)."""
        return await record.record_call(self, execution_id, message, result, instance, lease)

    async def update_execution_fenced(
        self, execution: Execution, lease: LeaseHold, release: bool
    ) -> Execution | None:
        """:class:`~qmcp_agents.domain.ports.FencedUpdater`: one statement on PostgreSQL
        (:mod:`.fenced`); ``None`` on SQLite, whose composed form is cheap (no round trips)."""
        return await fenced.update_execution_fenced(self, execution, lease, release)

    @asynccontextmanager
    async def driver(self, queued: bool = False) -> AsyncIterator[Any]:
        """The driver's own connection (aiosqlite or asyncpg), for the per-turn calls of
        :mod:`.driver`: the open transaction's, or a pooled one in autocommit (a single
        statement is atomic by itself, so a read or a one-statement write needs no
        ``BEGIN``/``COMMIT`` round trips). An in-memory SQLite database is one connection
        shared by every task, so there the call queues behind open transactions."""
        frame = self._current.get()
        if frame is not None:
            frame.check_open()
            async with frame.lock:  # take turns with the transaction's other tasks
                try:
                    pooled = await frame.handle.get_raw_connection()
                    await _begun(pooled.dbapi_connection)
                    yield pooled.driver_connection
                except BaseException as error:
                    # No savepoint here: a failed statement leaves a PostgreSQL transaction
                    # aborted (its COMMIT would roll back silently); in a whole transaction a
                    # failed call may have written half of its work.
                    if undone_whole() or self.dialect == "postgresql":
                        frame.spoil(error)
                    raise self._translate(error) from error
            return
        shared = self._writer is not None and not self.capabilities.multi_process
        lock = self._writer if (shared or queued) and self._writer is not None else nullcontext()
        async with lock:
            # Straight from the pool (its events run as for engine.connect()): a Connection
            # would add two greenlet switches and a task to every call.
            engine = self._enter()
            try:
                async with self._pooled(engine) as driver_connection:
                    yield driver_connection
            finally:
                await self._leave(engine)

    @asynccontextmanager
    async def _pooled(self, engine: AsyncEngine) -> AsyncIterator[Any]:
        """A connection of ``engine``'s pool (or the kept one), given back or kept after."""
        if self._spare:
            pooled = self._spare.pop()
        else:
            try:
                pooled = await greenlet_spawn(engine.sync_engine.pool.connect)
            except BaseException as error:
                raise self._translate(error) from error
        done = False
        try:
            yield pooled.driver_connection
            done = True
        except BaseException as error:
            if connection_lost(error):
                await greenlet_spawn(pooled.invalidate, error)
            raise self._translate(error) from error
        finally:
            if done and engine is self._engine and self._keeps_spare(pooled):
                self._spare.append(pooled)
            else:
                await greenlet_spawn(pooled.close)

    def _keeps_spare(self, pooled: Any) -> bool:
        """Whether a connection a driver-level call is done with is kept for the next one
        instead of going back to the pool: SQLite files only (asyncpg connections go back,
        so the checkout's closed-connection check sees each one), none kept already, the
        engine still open, and no transaction left open on it (what the pool's reset
        would roll back)."""
        return (
            self.dialect == "sqlite"
            and not self._spare
            and self._capacity > 1  # never the last one
            and self._engine is not None
            and not isinstance(self._engine.sync_engine.pool, StaticPool)
            and not self._pool_full(self._engine)  # else another call may be waiting for it
            and pooled.is_valid
            and not pooled.driver_connection.in_transaction
        )

    @asynccontextmanager
    async def sqlite_writer(self) -> AsyncIterator[Any]:
        """SQLite, outside a transaction: the driver connection with this process's writers
        queued (the same lock ``BEGIN IMMEDIATE`` transactions take)."""
        async with self.driver(queued=True) as raw:
            yield raw

    @asynccontextmanager
    async def connection(self, *, read: bool = False, alone: bool = False) -> AsyncIterator[AsyncConnection]:
        """The connection a repository call runs on: the open transaction's (in a savepoint,
        taking its turn with other tasks in the transaction; no savepoint in the body of a
        ``domain.transactions.whole`` transaction, which any failure undoes as a whole) or
        a transaction of its own.
        ``read=True`` says the call only reads (on SQLite it then takes no write lock);
        ``alone=True`` that each of its statements stands on its own: one statement, or
        ones that need not commit together, each read seeing what is committed as it runs
        (on PostgreSQL they then run outside a transaction, as one statement would inside
        one at the default READ COMMITTED)."""
        frame = self._current.get()
        if frame is None:
            async with self._begin(read, alone) as fresh:
                yield fresh
            return
        frame.check_open()
        async with frame.lock:
            try:
                if undone_whole():  # a failure undoes the whole transaction: no savepoint
                    try:
                        yield frame.handle
                    except BaseException as error:  # maybe half-way: only a rollback is left
                        frame.spoil(error)
                        raise
                    return
                async with frame.handle.begin_nested():
                    yield frame.handle
            except BaseException as error:
                raise self._translate(error) from error

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        frame = self._current.get()
        if frame is not None:
            # Nested: a savepoint. Holding the parent's lock keeps sibling tasks out until it
            # ends, so rolling it back can only undo its own work.
            frame.check_open()
            async with frame.lock:
                inner: Frame[AsyncConnection] = Frame(frame.handle)
                token = self._current.set(inner)
                try:
                    async with frame.handle.begin_nested():
                        yield
                        inner.check_unspoiled()  # rolls the savepoint back
                except BaseException as error:
                    raise self._translate(error) from error
                finally:
                    inner.open = False
                    self._current.reset(token)
            return
        async with self._begin() as fresh:
            outer: Frame[AsyncConnection] = Frame(fresh)
            token = self._current.set(outer)
            try:
                yield
                outer.check_unspoiled()  # rolls the transaction back
            finally:
                outer.open = False
                self._current.reset(token)

    # --- schema -----------------------------------------------------------------------------

    async def create_schema(self) -> None:
        """Bring the database to the newest migration (creating it if empty). Idempotent.

        Raises ``SchemaTooNew`` when a newer release migrated the database."""
        self._creating = True
        try:
            async with self._begin() as conn:
                if self.schema is not None:
                    await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                if self.dialect == "postgresql":  # one migrator at a time, across processes
                    await conn.execute(text("SELECT pg_advisory_xact_lock(727372)"))
                found = await conn.run_sync(migrate.unknown_revision)
                if found is not None:
                    raise SchemaTooNew(
                        f"store {self.display_url}: the schema is at revision {found!r}, which this "
                        "release does not know (a newer release migrated it); upgrade qmcp-agents"
                    )
                await conn.run_sync(migrate.upgrade)
        finally:
            self._creating = False

    async def drop_schema(self) -> None:
        """Drop this library's tables (and its version table); nothing else."""
        async with self._begin() as conn:
            await conn.run_sync(migrate.drop_all)

    # --- lifecycle ---------------------------------------------------------------------------

    async def close(self) -> None:
        while self._spare:
            await greenlet_spawn(self._spare.pop().close)
        # Calls still using the engine keep it (and serve each other's waits on its pool)
        # until the last one is done and disposes of it (_leave); calls made from now on
        # open the next engine.
        engine, self._engine = self._engine, None
        if engine is not None and engine not in self._users:
            await engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def _setup_sqlite(engine: AsyncEngine, in_memory: bool) -> None:
    """Foreign keys on, WAL for files, and ``BEGIN IMMEDIATE`` for every transaction.

    The driver's own transaction handling is switched off (``isolation_level = None``) so
    that SQLAlchemy's ``begin`` event decides how a transaction starts; this is also what
    makes savepoints work on SQLite.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA busy_timeout = 30000")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_connection: Any, _record: Any, state: Any) -> None:
        # A connection goes back to the pool rolled back, but only if SQLite says a
        # transaction is open: SQLAlchemy's unconditional rollback-on-return is a thread hop
        # on every call, most of which (driver-level reads, transactions already ended)
        # have nothing to roll back.
        if not state.asyncio_safe or state.terminate_only:
            return
        if dbapi_connection.driver_connection.in_transaction:
            dbapi_connection.rollback()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Reads begin deferred: in WAL mode they take no lock and never block a writer.
        read = conn.get_execution_options().get("qmcp_read", False)
        conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")


async def _begun(adapted: Any) -> None:
    """The transaction really open on the driver's connection before a statement is sent to
    it directly: SQLAlchemy's asyncpg adapter sends ``BEGIN`` only with its own first
    statement, so a driver-level write made first would otherwise run (and commit) on its
    own, outside the transaction. (SQLite's ``BEGIN`` is sent by the ``begin`` event.)"""
    start = getattr(adapted, "_start_transaction", None)
    if start is not None and adapted._transaction is None and adapted.isolation_level != "autocommit":
        await start()


def _refuse_closed_connections(engine: AsyncEngine) -> None:
    """Hand out no pooled asyncpg connection the driver knows is closed (SQLAlchemy then
    takes another): the cheap part of a pre-ping, without its round trips."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            raise exc.DisconnectionError("the connection was closed")
