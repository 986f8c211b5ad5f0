"""The library's error types.

Every error a store raises derives from :class:`QmcpError`, so an application can catch
the library's failures in one place while still telling a missing row from a lost race.
Bad *input* is reported by Pydantic's ``ValidationError`` instead: it names the field and
the value, and it is raised before anything touches a store.
"""

from __future__ import annotations


class QmcpError(Exception):
    """Base class of every error raised by qmcp-agents."""


class NotFound(QmcpError, LookupError):
    """The entity asked for does not exist (``get``, ``update``, ``delete``)."""


class AlreadyExists(QmcpError):
    """A unique key (a name, an id) is already taken."""


class ConcurrencyError(QmcpError):
    """The entity changed since it was read: its ``revision`` is stale.

    Re-read the entity, re-apply the change and try again.
    """


class InvalidTransition(QmcpError):
    """An execution was asked to move to a status its state machine does not allow."""


class IntegrityError(QmcpError):
    """A reference is dangling or restricted (e.g. deleting an agent type still in use)."""


class TransactionRolledBack(QmcpError):
    """A nested transaction failed on a backend without savepoints (MongoDB), so the whole
    enclosing transaction was rolled back rather than committing half of it."""


class TransactionClosed(QmcpError):
    """A repository call was made from a task started inside ``store.transaction()`` after
    that transaction ended; it would otherwise have run outside the transaction."""


class CapabilityError(QmcpError, ValueError):
    """A capability definition or lookup is wrong: an unknown name, a bad definition.

    On save, capability problems in an agent type's config are reported as Pydantic's
    ``ValidationError`` naming the field instead; this is for the registry's own calls.
    """


class DependencyCycle(CapabilityError):
    """Capabilities depend on each other in a cycle, so no order can run their hooks."""


class StoreUnavailable(QmcpError):
    """The backend could not be reached or timed out; wraps the driver's error.

    Nothing was written when this is raised from inside a transaction.
    """


class NoAgent(QmcpError, LookupError):
    """A run was asked for with no agent for some slot of its topology; nothing was written."""


class SchemaMissing(StoreUnavailable):
    """The store is reachable but holds no schema of this library (or no database file):
    run ``qmcp-agents init`` / ``store.create_schema()``. Read-only calls never create it."""


class SchemaTooNew(StoreUnavailable):
    """The store's schema was migrated by a newer release than this one; upgrading
    qmcp-agents is the fix (this release cannot know what the newer schema means)."""


__all__ = [
    "AlreadyExists",
    "CapabilityError",
    "ConcurrencyError",
    "DependencyCycle",
    "IntegrityError",
    "InvalidTransition",
    "NoAgent",
    "NotFound",
    "QmcpError",
    "SchemaMissing",
    "SchemaTooNew",
    "StoreUnavailable",
    "TransactionClosed",
    "TransactionRolledBack",
]
