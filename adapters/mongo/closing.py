"""Closing entries: "final" and "deleted" made visible to the message insert itself.

A *closing entry* is a document in ``qmcp_messages`` that ends an execution's message
chain (docs/decisions.md, "15: MongoDB one-round-trip append")::

    {_id: <the execution's incarnation>, execution_id, first: <top + 1>,
     closing: <final status> | "deleted", revision: <the revision its transition replaces>,
     token: <random, one per attempt>, items: [{id: <incarnation>}]}

It has no ``last``: every read of heads asks for ``last >= 1``, so readers never see it.
Its ``first`` holds the chain's next position in the unique ``(execution_id, first)``
index, so no head can be inserted above it; its ``_id`` is the incarnation, which an
append names in its own write (``_id`` in ``[incarnation, head id]``, with the head as
``$setOnInsert`` of an upsert), so an append finds "closed" in the same command that
would otherwise insert its head, even after a delete has removed the chain.

A transition to a final status writes the entry *before* the status (so a message can
never land after "final"); a crash or a refused status update in between leaves an entry
whose revision no longer matches its execution's (*dead*: removed by whoever meets it) or
still matches (*pending*: waited for, then *killed* by marking the execution so that the
late status update cannot match, then removed). Only entries on top of the chain are ever
removed, so removing one leaves no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from qmcp_agents.domain import FINAL_STATUSES, ConcurrencyError, ExecutionStatus, InvalidTransition, NotFound
from qmcp_agents.domain.integrity import refuse_if_final

if TYPE_CHECKING:
    from .store import MongoStore

DELETED = "deleted"
KILLED = "closing_killed"
"""Field of an execution document: the token of a closing entry whose transition must not
complete any more (see :func:`clear`)."""
PENDING_WAIT = 2.0
"""Seconds an append waits for a pending transition to finish before killing it (a
transition that crashed between its closing entry and its status update)."""


def _executions(store: MongoStore) -> Any:
    return store.collection("executions")


def _messages(store: MongoStore) -> Any:
    return store.collection("messages")


async def read_execution(store: MongoStore, execution_id: UUID, session: Any) -> Any:
    """The execution's ``status``, ``incarnation`` and ``revision`` (None if missing)."""
    return await store.call(
        _executions(store).find_one(
            {"_id": execution_id}, {"status": 1, "incarnation": 1, "revision": 1}, session=session
        )
    )


async def incarnation_of(store: MongoStore, execution: Any, session: Any) -> UUID:
    """The execution's incarnation; an execution stored before incarnations existed gets
    one now (first writer wins, everyone reads the winner's)."""
    if execution.get("incarnation") is not None:
        return execution["incarnation"]  # type: ignore[no-any-return]
    await store.call(
        _executions(store).update_one(
            {"_id": execution["_id"], "incarnation": {"$exists": False}},
            {"$set": {"incarnation": uuid4()}},
            session=session,
        )
    )
    again = await read_execution(store, execution["_id"], session)
    if again is None:
        raise NotFound(f"execution {execution['_id']} does not exist")
    return again["incarnation"]  # type: ignore[no-any-return]


def collided_on(error: DuplicateKeyError) -> str:
    """Which unique index refused a write to ``qmcp_messages``: "first" (the chain),
    "_id" (a closing entry or a reused id), or "items.id"."""
    pattern = (error.details or {}).get("keyPattern") or {}
    if "first" in pattern:
        return "first"
    if "items.id" in pattern:
        return "items.id"
    if "_id" in pattern:
        return "_id"
    return "first" if "first" in str(error.details) else "other"


def refuse(execution_id: UUID, execution: Any) -> None:
    """The errors every backend gives for an append to a missing or final execution."""
    if execution is None:
        raise NotFound(f"execution {execution_id} does not exist")
    refuse_if_final(execution_id, ExecutionStatus(execution["status"]), "messages")


async def top(store: MongoStore, execution_id: UUID, session: Any) -> int:
    """The highest sequence number stored for the execution (0: none)."""
    head = await store.call(
        _messages(store).find_one(
            {"execution_id": execution_id, "last": {"$gte": 1}},
            {"last": 1},
            sort=[("last", DESCENDING)],
            session=session,
        )
    )
    return 0 if head is None else int(head["last"])


async def clear(store: MongoStore, execution_id: UUID, incarnation: UUID, session: Any) -> bool:
    """Called when an append (or a transition) met the closing entry of ``incarnation``.

    Raises ``NotFound`` (deleted), ``InvalidTransition`` (final), or returns once the entry
    no longer stands in the way: True if it was dead or killed and is removed, False if
    there was none. A different incarnation is :class:`Stale` for the caller (what it
    remembered is void)."""
    waited = 0.0
    pause = 0.005
    waiting_for = None
    while True:
        execution = await read_execution(store, execution_id, session)
        refuse(execution_id, execution)
        if execution.get("incarnation") != incarnation:
            raise Stale(execution_id)
        entry = await store.call(_messages(store).find_one({"_id": incarnation}, session=session))
        if entry is None:
            return False
        if entry.get("closing") == DELETED:
            raise NotFound(f"execution {execution_id} was deleted while the messages were appended")
        if entry.get("revision") != execution.get("revision"):
            # Judged "dead" only against the execution read *after* the entry: an entry is
            # written after its transition read the revision it names, so that read is at
            # the entry's revision or later. The read above may be older than an entry
            # written in between, and removing that (pending) entry would let its
            # transition complete with no closing entry, and appends land after it.
            execution = await read_execution(store, execution_id, session)
            refuse(execution_id, execution)
            if execution.get("incarnation") != incarnation:
                raise Stale(execution_id)
            if entry.get("revision") != execution.get("revision"):  # its status update can never match
                await _remove(store, entry, session)
                return True
        if session is not None:  # a snapshot cannot watch the transition finish
            raise ConcurrencyError(
                f"execution {execution_id} is being moved to {entry.get('closing')}; retry the transaction"
            )
        if entry["token"] != waiting_for:  # a new attempt (a retry): it gets a wait of its own
            waiting_for, waited, pause = entry["token"], 0.0, 0.005
        if waited < PENDING_WAIT:
            await asyncio.sleep(pause)
            waited += pause
            pause = min(pause * 2, 0.1)
            continue
        killed = await store.call(
            _executions(store).update_one(
                {"_id": execution_id, "revision": entry["revision"], "incarnation": incarnation},
                {"$set": {KILLED: entry["token"]}},
            )
        )
        if killed.matched_count == 1:
            await _remove(store, entry, session)
            return True


async def _remove(store: MongoStore, entry: Any, session: Any) -> None:
    await store.call(
        _messages(store).delete_one({"_id": entry["_id"], "token": entry["token"]}, session=session)
    )


async def close(
    store: MongoStore, execution_id: UUID, closing: str, revision: int | None, session: Any
) -> tuple[UUID, UUID] | None:
    """Write the execution's closing entry on top of its chain; returns its
    ``(incarnation, token)``, or None if the execution is gone. For ``closing`` =
    ``"deleted"`` an entry already there (final, or a transition in flight) is turned into
    the delete's.

    The entry is inserted at the top's next position. If an append takes that position
    first, the next try inserts it *unplaced* (``first`` = its token, outside the numbers)
    and then places it (:func:`place`): appends chained after the top can win that race
    every time, so a busy chain could hold a delete or a completion back for as long as
    its writers keep going, but no append inserts once the entry exists (its write finds
    the entry by ``_id``), so placing it only competes with appends already under way."""
    execution = await read_execution(store, execution_id, session)
    if execution is None:
        return None
    incarnation = await incarnation_of(store, execution, session)
    unplaced = False
    while True:
        token = uuid4()
        position = await top(store, execution_id, session) + 1
        entry = {
            "_id": incarnation,
            "execution_id": execution_id,
            "first": token if unplaced else position,
            "closing": closing,
            "revision": revision,
            "token": token,
            "items": [{"id": incarnation}],  # the unique index on items.id needs one
        }
        try:
            await store.settled(_messages(store).insert_one(entry, session=session))
        except DuplicateKeyError as error:
            if collided_on(error) not in ("first", "_id"):
                raise store.translate(error) from error
        except BaseException as error:
            raise store.translate(error) from error
        else:
            if unplaced:
                try:
                    await place(store, execution_id, incarnation, token, session)
                except BaseException:
                    # Cut off before its status update is sent: a transition's entry left
                    # here would be pending, holding every append (and the retry) for
                    # PENDING_WAIT. A delete's stays (a cut-short delete, finished by the next).
                    if closing != DELETED:
                        with contextlib.suppress(Exception):
                            await unclose(store, (incarnation, token), None)
                    raise
            return incarnation, token
        found = await store.call(
            _messages(store).find_one({"_id": incarnation}, {"first": 1}, session=session)
        )
        if found is None:
            # The position was taken: by an append that landed meanwhile (close above it),
            # or, if no head reaches it, by another incarnation's entry (retired).
            if await top(store, execution_id, session) + 1 == position:
                await unblock(store, execution_id, position, incarnation, session)
            else:
                unplaced = session is None  # a transaction's snapshot sees no later append
            continue
        if closing == DELETED:
            done = await store.call(
                _messages(store).update_one(
                    {"_id": incarnation}, {"$set": {"closing": DELETED, "token": token}}, session=session
                )
            )
            if done.matched_count == 1:
                if not isinstance(found["first"], int):  # a transition's entry not yet placed
                    await place(store, execution_id, incarnation, token, session)
                return incarnation, token
            continue
        try:
            await clear(store, execution_id, incarnation, session)
        except (NotFound, InvalidTransition, Stale) as error:
            raise ConcurrencyError(
                f"execution {execution_id} was changed by someone else meanwhile; re-read and retry"
            ) from error


async def place(store: MongoStore, execution_id: UUID, incarnation: UUID, token: UUID, session: Any) -> None:
    """Move an unplaced closing entry (this attempt's, by its token) on top of the chain.

    Only appends whose write was already under way when the entry was inserted can still
    take a position, so this ends after a few tries. If the entry is not this attempt's
    any more (a delete took it over, or an append removed it as dead or killed it), its
    new owner places it, or nothing is left to place."""
    while True:
        position = await top(store, execution_id, session) + 1
        try:
            await store.settled(
                _messages(store).update_one(
                    {"_id": incarnation, "token": token}, {"$set": {"first": position}}, session=session
                )
            )
            return
        except DuplicateKeyError as error:
            if collided_on(error) != "first":
                raise store.translate(error) from error
        except BaseException as error:
            raise store.translate(error) from error
        if await top(store, execution_id, session) + 1 == position:
            await unblock(store, execution_id, position, incarnation, session)


async def unclose(store: MongoStore, closed: tuple[UUID, UUID], session: Any) -> None:
    """Remove a closing entry whose status update did not happen (if still this attempt's)."""
    incarnation, token = closed
    await store.call(_messages(store).delete_one({"_id": incarnation, "token": token}, session=session))


async def abandon(
    store: MongoStore, execution_id: UUID, closed: tuple[UUID, UUID], revision: int | None
) -> None:
    """A transition stopped (cancelled, connection lost) after writing its closing entry,
    its status update perhaps sent, perhaps applied: leave the entry only if the status may
    still be or already is final. The kill (see :func:`clear`) makes a status update still
    in flight unable to match, and then the entry is removed; if the kill does not match,
    the revision moved on: the entry stays if the execution is final (the update was
    applied), else it is dead and removed. Best effort: what it cannot do is left to
    :func:`clear`, which waits for and kills a pending entry."""
    incarnation, token = closed
    with contextlib.suppress(Exception):
        killed = await store.call(
            _executions(store).update_one(
                {"_id": execution_id, "revision": revision, "incarnation": incarnation},
                {"$set": {KILLED: token}},
            )
        )
        if killed.matched_count != 1:
            execution = await read_execution(store, execution_id, None)
            if execution is not None and ExecutionStatus(execution["status"]) in FINAL_STATUSES:
                return
        await unclose(store, closed, None)


async def unblock(
    store: MongoStore, execution_id: UUID, position: int, incarnation: UUID, session: Any
) -> None:
    """A write collided at ``position`` although no head reaches it: a closing entry holds
    it. This incarnation's is resolved (:func:`clear`); another incarnation's was left by a
    delete cut short before retiring it (its execution and heads are gone), and is retired
    now, so it cannot hold the new chain back."""
    entry = await store.call(
        _messages(store).find_one({"execution_id": execution_id, "first": position}, session=session)
    )
    if entry is None or entry.get("closing") is None:
        return  # moved or removed meanwhile, or a head after all: the caller reads the top again
    if entry["_id"] == incarnation:
        await clear(store, execution_id, incarnation, session)
    else:
        await store.call(
            _messages(store).update_one(
                {"_id": entry["_id"], "first": position},
                {"$set": {"first": entry["_id"], "closing": DELETED}},
                session=session,
            )
        )


async def make_room(store: MongoStore, incarnation: UUID, last: int, session: Any) -> None:
    """Before a restore writes messages up to ``last`` into a final execution: move its
    closing entry above them. Nothing is ever chained above the entry, so its new place is
    free; appends stay refused meanwhile (they find the entry by its ``_id``)."""
    entry = await store.call(_messages(store).find_one({"_id": incarnation}, {"first": 1}, session=session))
    if entry is not None and isinstance(entry["first"], int) and entry["first"] <= last:
        await store.call(
            _messages(store).update_one({"_id": incarnation}, {"$set": {"first": last + 1}}, session=session)
        )


async def retire_foreign(store: MongoStore, execution_id: UUID, incarnation: Any, session: Any) -> None:
    """Before a restore writes into the execution's chain: retire the closing entries of its
    earlier incarnations that a delete cut short left in the chain (see :func:`unblock`),
    so restored batches neither collide with them nor enclose them."""
    found = await store.call(
        _messages(store)
        .find(
            {"execution_id": execution_id, "closing": {"$exists": True}, "_id": {"$ne": incarnation}},
            {"first": 1},
            session=session,
        )
        .to_list(None)
    )
    for entry in found:
        if isinstance(entry["first"], int):
            await store.call(
                _messages(store).update_one(
                    {"_id": entry["_id"], "first": entry["first"]},
                    {"$set": {"first": entry["_id"], "closing": DELETED}},
                    session=session,
                )
            )


async def retire(store: MongoStore, tree: list[UUID], session: Any) -> None:
    """After a delete: move the deleted executions' closing entries out of the chain's
    number space (``first`` = their own id), so a restored execution's chain can grow past
    them, while their ``_id`` still stops appends of the old incarnation."""
    found = await store.call(
        _messages(store)
        .find({"execution_id": {"$in": tree}, "closing": {"$exists": True}}, {"_id": 1}, session=session)
        .to_list(None)
    )
    for entry in found:
        await store.call(
            _messages(store).update_one(
                {"_id": entry["_id"]}, {"$set": {"first": entry["_id"], "closing": DELETED}}, session=session
            )
        )


class Stale(Exception):
    """An append's remembered incarnation is not the execution's any more (deleted and
    restored): it starts again from reading the execution."""

    def __init__(self, execution_id: UUID) -> None:
        super().__init__(f"execution {execution_id} is a new incarnation")
