"""The worker loop: claim submitted executions, drive them, keep their leases, let go.

    worker = Worker(Engine(store, agents), concurrency=25)
    await worker.run()            # until worker.stop() (SIGTERM in the CLI)

Each claimed execution runs as a task of its own. A heartbeat every ``lease_seconds / 4``
extends the leases of the running ones; one whose lease it no longer holds (taken over
after this worker stalled, or the execution was cancelled from elsewhere) is stopped at
once. A crash leaves the leases to expire, and then another worker takes the executions
over: the engine replays the calls already answered (see :mod:`.durable`).

Stopping (``stop()``) ends the claims; the running executions get ``grace_seconds`` to
finish, and the ones still running then are stopped and handed back to the queue for any
other worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from uuid import UUID

from qmcp_agents.domain.enums import ExecutionStatus
from qmcp_agents.domain.errors import InvalidTransition
from qmcp_agents.domain.leases import DEFAULT_LEASE_SECONDS, LeaseLost, lease_span

from .engine import Engine

log = logging.getLogger("qmcp_agents.worker")


def worker_name() -> str:
    """``host:pid:random``: unique per worker, readable in ``qmcp-agents workers``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class WorkerStats:
    claimed: int = 0
    finished: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    handed_back: int = 0

    def count(self, outcome: str) -> None:
        self.finished[outcome] = self.finished.get(outcome, 0) + 1


class Worker:
    def __init__(
        self,
        engine: Engine,
        *,
        name: str | None = None,
        concurrency: int = 10,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        poll_seconds: float = 0.5,
        grace_seconds: float = 10.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        lease_span(lease_seconds)
        self.engine = engine
        self.store = engine.store
        self.name = name or worker_name()
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = lease_seconds / 4
        self.poll_seconds = poll_seconds
        self.grace_seconds = grace_seconds
        self.stats = WorkerStats()
        self._running: dict[UUID, asyncio.Task[None]] = {}
        self._dropped: set[asyncio.Task[None]] = set()  # stopped: the lease is gone (or cancelled)
        self._attempts: dict[asyncio.Task[None], tuple[UUID, int]] = {}  # each drive's claim
        self._releasing: set[asyncio.Task[None]] = set()  # shielded: they outlive a cancelled drive
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()

    def stop(self) -> None:
        """Stop claiming; running executions get the grace period (see the module doc)."""
        self._stopping.set()
        self._changed.set()

    @property
    def running(self) -> set[UUID]:
        return set(self._running)

    async def run(self, *, until_idle: bool = False) -> WorkerStats:
        """Work until ``stop()``; with ``until_idle``, also stop once nothing is running
        and nothing could be claimed (tests, batch jobs)."""
        heartbeat = asyncio.create_task(self._heartbeats())
        idle = 0
        try:
            while not self._stopping.is_set():
                self._changed.clear()
                free = self.concurrency - len(self._running)
                claimed: int | None = 0
                if free > 0:
                    claimed = await self._claim(free)
                # A failed claim (None: the store unreachable) is not "nothing to claim".
                idle = idle + 1 if claimed == 0 and not self._running else 0
                # Idle only after two empty claims a poll apart: one claim may miss an entry
                # another transaction has locked for a moment (PostgreSQL's SKIP LOCKED).
                if until_idle and idle >= 2:
                    break
                if not claimed or claimed == free:
                    # Nothing to claim, or no slot left: wait for a run to end (or a poll).
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), self.poll_seconds)
        finally:
            await self._wind_down()
            if self._releasing:
                await asyncio.wait(self._releasing)
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        return self.stats

    async def _claim(self, free: int) -> int | None:
        """Claim up to ``free`` executions and start them; how many (None: the claim failed)."""
        try:
            leases = await self.store.leases.claim(self.name, limit=free, lease_seconds=self.lease_seconds)
        except Exception as error:  # a store that is briefly unreachable: try again later
            log.warning("worker %s: claim failed: %s", self.name, error)
            return None
        for lease in leases:
            self.stats.claimed += 1
            earlier = self._running.get(lease.execution_id)
            if earlier is not None:
                # This worker's own lease expired (a stall longer than the lease) and it
                # claimed the execution again: the earlier drive is fenced off by the new
                # claim's attempt and stopped; the new one replays what was recorded.
                self._dropped.add(earlier)
                earlier.cancel()
            task = asyncio.create_task(self._run_one(lease.execution_id, lease.attempts))
            self._running[lease.execution_id] = task
            self._attempts[task] = (lease.execution_id, lease.attempts)
            task.add_done_callback(functools.partial(self._forget, lease.execution_id))
        return len(leases)

    def _forget(self, execution_id: UUID, task: asyncio.Task[None]) -> None:
        """A drive's task is done: its slot frees. A done callback, not the drive's own
        ``finally``: a task cancelled before its first step never runs its body, and a
        slot kept by it would be heartbeated for ever (the execution held and never run)."""
        if self._running.get(execution_id) is task:
            del self._running[execution_id]
        self._dropped.discard(task)
        self._attempts.pop(task, None)
        self._changed.set()

    async def _run_one(self, execution_id: UUID, attempt: int) -> None:
        """Drive, then let go of the entry if the drive says so, before the slot frees
        (:meth:`_forget`, once the task is done): the entry is claimable by then."""
        requeue = await self._drive(execution_id, attempt)
        if requeue is not None:
            await self._release(execution_id, attempt, requeue)

    async def _drive(self, execution_id: UUID, attempt: int) -> bool | None:
        """Drive one execution; then whether to hand its entry back (True), delete it
        (False), or leave it alone (None: another worker holds it)."""
        requeue = False
        try:
            read = await self.engine.drive(execution_id, owner=self.name, attempt=attempt)
            self.stats.count(read.status.value)
            # The drive's last write (the end, or the pause) deleted the entry in its own
            # transaction, fenced by this claim: nothing is left to let go of.
            return None
        except LeaseLost:
            self.stats.lost += 1
            return None
        except asyncio.CancelledError:
            if asyncio.current_task() in self._dropped:
                # Cancelled elsewhere (the entry goes), or taken over (the release does
                # nothing); if the heartbeat was wrong, the entry goes back to the queue.
                self.stats.lost += 1
                requeue = not await self._ended(execution_id)
            else:  # stopped by a shutdown: another worker carries on from what is stored
                requeue = True
                self.stats.handed_back += 1
        except InvalidTransition as error:  # cancelled (or ended) elsewhere meanwhile
            log.info("worker %s: execution %s: %s", self.name, execution_id, error)
            self.stats.count(ExecutionStatus.CANCELLED.value)
        except Exception as error:
            log.exception("worker %s: execution %s failed unexpectedly", self.name, execution_id)
            self.stats.count(f"error: {type(error).__name__}")
            requeue = True
        return requeue

    async def _ended(self, execution_id: UUID) -> bool:
        try:
            return (await self.store.executions.get(execution_id)).is_final
        except Exception:  # gone, or the store is unreachable: the lease is left to expire
            return True

    async def _release(self, execution_id: UUID, attempt: int, requeue: bool) -> None:
        """Let go of the entry, even if the drive is stopped meanwhile (``run`` waits for it:
        no release is left running once it returns)."""
        release = asyncio.create_task(self._let_go(execution_id, attempt, requeue))
        self._releasing.add(release)
        release.add_done_callback(self._releasing.discard)
        await asyncio.shield(release)

    async def _let_go(self, execution_id: UUID, attempt: int, requeue: bool) -> None:
        try:
            await self.store.leases.release(execution_id, self.name, requeue=requeue, attempt=attempt)
            if requeue and (await self.store.executions.get(execution_id)).is_final:
                # Cancelled meanwhile (before the heartbeat saw it): an entry handed back
                # on a final execution would never be claimed; unless claimed already, it goes.
                await self.store.leases.release(execution_id, None)
        except Exception as error:  # the lease then expires and another worker looks at it
            log.warning("worker %s: release of %s failed: %s", self.name, execution_id, error)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            asked = dict(self._running)
            if not asked:
                continue
            try:
                held = await self.store.leases.heartbeat(
                    self.name, list(asked), lease_seconds=self.lease_seconds
                )
            except Exception as error:
                log.warning("worker %s: heartbeat failed: %s", self.name, error)
                continue
            for execution_id, task in asked.items():
                # Only the drive the answer is about: one started meanwhile (this worker
                # claimed the execution again while the heartbeat was on its way) holds a
                # newer claim, which this heartbeat did not see.
                if execution_id not in held and self._running.get(execution_id) is task:
                    self._dropped.add(task)
                    task.cancel()

    async def _wind_down(self) -> None:
        tasks = [*self._running.values(), *self._dropped]  # dropped ones may still be ending
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=self.grace_seconds)
        # Handed back before they are stopped: a stopped drive's last writes (a compound
        # stopping its child) are then fenced off, and the next worker carries on from
        # what is stored.
        await asyncio.gather(
            *(
                self._release(*self._attempts[task], requeue=True)
                for task in late
                if task in self._attempts and task not in self._dropped
            )
        )
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)


__all__ = ["Worker", "WorkerStats", "worker_name"]
