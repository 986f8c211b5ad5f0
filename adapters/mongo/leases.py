"""The work queue and leases on MongoDB (issue 16): one document per submitted execution
in ``qmcp_leases``, ``_id`` the execution's id.

A claim is a ``find_one_and_update`` per entry: MongoDB makes each one atomic on its
document, so two workers never both take the same entry while its lease runs. The
execution's status lives in another collection, so an entry found to belong to a final (or
deleted) execution is dropped after it is taken and the claim goes on to the next one.
``hold`` reads the entry inside the caller's transaction (a write would conflict with every
heartbeat and fail the transaction): a worker whose lease was taken over is refused at its
next write, but a takeover in the milliseconds between that read and the commit is not
excluded, unlike on PostgreSQL, where the row stays locked. The drive's last write deletes
the entry in the transaction, so a finished execution and its entry go together. Without
transactions (a standalone server) the checks are not atomic with the writes at all: see
docs/scaling.md.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pymongo import ASCENDING, ReturnDocument

from qmcp_agents.adapters.concurrency import taking_turns
from qmcp_agents.domain.clock import utc_now
from qmcp_agents.domain.enums import FINAL_STATUSES
from qmcp_agents.domain.errors import NotFound
from qmcp_agents.domain.leases import Lease, LeaseLost, lease_span

if TYPE_CHECKING:
    from .store import MongoStore

DOCUMENT_VERSION = 1
_FINAL = sorted(s.value for s in FINAL_STATUSES)


def _lease(document: dict[str, Any]) -> Lease:
    return Lease(
        execution_id=document["_id"],
        owner=document.get("owner"),
        ready=bool(document.get("ready")),
        attempts=int(document.get("attempts", 0)),
        claimed_at=document.get("claimed_at"),
        heartbeat_at=document.get("heartbeat_at"),
        expires_at=document.get("expires_at"),
    )


def _held(execution_id: UUID, owner: str | None, attempt: int | None) -> dict[str, Any]:
    """The entry held by ``owner`` (``None``: by nobody), by claim ``attempt`` if given."""
    where: dict[str, Any] = {"_id": execution_id, "owner": owner}
    if attempt is not None:
        where["attempts"] = attempt
    return where


class MongoLeases:
    def __init__(self, store: MongoStore) -> None:
        self._store = store

    @property
    def _c(self) -> Any:
        return self._store.collection("leases")

    @taking_turns
    async def enqueue(self, execution_id: UUID, *, attempts: int = 0) -> None:
        async with self._store.unit() as session:
            executions = self._store.collection("executions")
            found = await self._store.call(
                executions.find_one({"_id": execution_id}, {"_id": 1}, session=session)
            )
            if found is None:
                raise NotFound(f"execution {execution_id} not found")
            await self._store.call(
                self._c.update_one(
                    {"_id": execution_id},
                    {
                        "$set": {"ready": True},
                        "$setOnInsert": {
                            "owner": None,
                            "attempts": attempts,
                            "schema_version": DOCUMENT_VERSION,
                        },
                    },
                    upsert=True,
                    session=session,
                )
            )

    async def claim(self, owner: str, *, limit: int, lease_seconds: float) -> builtins.list[Lease]:
        span = lease_span(lease_seconds)
        taken: builtins.list[Lease] = []
        executions = self._store.collection("executions")
        await self._store.connect()
        while len(taken) < limit:
            now = utc_now()
            document = await self._store.call(
                self._c.find_one_and_update(
                    {"$or": [{"owner": None, "ready": True}, {"expires_at": {"$lte": now}}]},
                    {
                        "$set": {
                            "owner": owner,
                            "ready": False,
                            "claimed_at": now,
                            "heartbeat_at": now,
                            "expires_at": now + span,
                        },
                        "$inc": {"attempts": 1},
                    },
                    sort=[("_id", ASCENDING)],
                    return_document=ReturnDocument.AFTER,
                )
            )
            if document is None:
                break
            execution = await self._store.call(executions.find_one({"_id": document["_id"]}, {"status": 1}))
            if execution is None or execution["status"] in _FINAL:
                await self._store.call(self._c.delete_one({"_id": document["_id"], "owner": owner}))
                continue
            taken.append(_lease(document))
        return taken

    async def heartbeat(
        self, owner: str, execution_ids: Sequence[UUID], *, lease_seconds: float
    ) -> set[UUID]:
        span = lease_span(lease_seconds)
        ids = sorted(set(execution_ids))
        if not ids:
            return set()
        await self._store.connect()
        now = utc_now()
        mine = []
        for execution_id in ids:  # each renewal reports what it matched, atomically
            renewed = await self._store.call(
                self._c.find_one_and_update(
                    {"_id": execution_id, "owner": owner},
                    {"$set": {"heartbeat_at": now, "expires_at": now + span}},
                    projection={"_id": 1},
                )
            )
            if renewed is not None:
                mine.append(renewed)
        if not mine:
            return set()
        executions = self._store.collection("executions")
        live = await self._store.call(
            executions.find(
                {"_id": {"$in": [d["_id"] for d in mine]}, "status": {"$nin": _FINAL}}, {"_id": 1}
            ).to_list(None)
        )
        return {d["_id"] for d in live}

    @taking_turns
    async def hold(self, execution_id: UUID, owner: str, *, attempt: int | None = None) -> None:
        async with self._store.unit() as session:
            held = await self._store.call(
                self._c.find_one(_held(execution_id, owner, attempt), {"_id": 1}, session=session)
            )
        if held is None:
            raise LeaseLost(f"worker {owner!r} no longer holds execution {execution_id}")

    @taking_turns
    async def release(
        self, execution_id: UUID, owner: str | None, *, requeue: bool = False, attempt: int | None = None
    ) -> bool:
        where = _held(execution_id, owner, attempt)
        async with self._store.unit() as session:
            if requeue:
                done = await self._store.call(
                    self._c.update_one(
                        where,
                        {
                            "$set": {
                                "owner": None,
                                "ready": True,
                                "claimed_at": None,
                                "heartbeat_at": None,
                                "expires_at": None,
                            }
                        },
                        session=session,
                    )
                )
                return bool(done.matched_count)
            gone = await self._store.call(self._c.delete_one(where, session=session))
            return bool(gone.deleted_count)

    async def find(self, execution_id: UUID) -> Lease | None:
        async with self._store.unit() as session:
            document = await self._store.call(self._c.find_one({"_id": execution_id}, session=session))
        return None if document is None else _lease(document)

    async def list(self, *, owner: str | None = None) -> builtins.list[Lease]:
        query = {} if owner is None else {"owner": owner}
        async with self._store.unit() as session:
            found = await self._store.call(
                self._c.find(query, session=session).sort("_id", ASCENDING).to_list(None)
            )
        return [_lease(d) for d in found]


__all__ = ["DOCUMENT_VERSION", "MongoLeases"]
