"""Work queue entries and leases: which worker runs which submitted execution, until when.

An entry exists for every execution submitted for workers (``Engine.submit``) until a
worker finishes it. It is *claimable* when nobody holds it and it is ready (just submitted,
handed back by a stopping worker, or a paused execution that got its human answer), or
when its holder's lease has expired (the holder is taken to be dead). Times come from the
clock of the process that writes them (see docs/decisions.md, issue 16): worker machines'
clocks must agree to well within a lease.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from .errors import QmcpError

DEFAULT_LEASE_SECONDS = 30.0


class LeaseLost(QmcpError):
    """The worker no longer holds the execution's lease (it expired and another worker took
    the execution over, or the execution was cancelled): it must stop writing for it."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A queue entry; ``owner`` is ``None`` while nobody holds it."""

    execution_id: UUID
    owner: str | None
    ready: bool
    attempts: int
    claimed_at: datetime | None = None
    heartbeat_at: datetime | None = None
    expires_at: datetime | None = None

    def held_by(self, owner: str | None, attempt: int | None = None) -> bool:
        """Whether ``owner`` (``None``: nobody) holds the entry, by claim ``attempt`` if given:
        the attempt is the fencing token of one claim (see ``LeaseRepository.hold``)."""
        return self.owner == owner and (attempt is None or self.attempts == attempt)

    def claimable(self, now: datetime) -> bool:
        if self.owner is None:
            return self.ready
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True, slots=True)
class LeaseHold:
    """A worker's claim as its writes check it: ``LeaseRepository.hold``'s arguments (the
    entry of ``execution_id``, held by ``owner``, by claim ``attempt`` if given). A compound's
    child is written under its parent's claim, so ``execution_id`` is not always the
    execution being written."""

    execution_id: UUID
    owner: str
    attempt: int | None = None


def lease_span(seconds: float) -> timedelta:
    if not seconds > 0:
        raise ValueError(f"lease_seconds must be > 0, got {seconds!r}")
    return timedelta(seconds=seconds)


__all__ = ["DEFAULT_LEASE_SECONDS", "Lease", "LeaseHold", "LeaseLost", "lease_span"]
