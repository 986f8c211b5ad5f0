"""Driver errors, translated into the library's errors."""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg
from sqlalchemy import exc

from qmcp_agents.adapters.store_errors import INIT_HINT, short
from qmcp_agents.domain import AlreadyExists, IntegrityError, QmcpError, SchemaMissing, StoreUnavailable

_UNIQUE_MARKERS = ("unique", "duplicate key")


def _causes(error: BaseException) -> list[BaseException]:
    """``error``, what SQLAlchemy wrapped (``orig``) and its causes: the driver's own error
    is somewhere in there."""
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found and len(found) < 8:
        found.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
    return found


def _opening_error(error: BaseException) -> BaseException | None:
    """Failures that no retry fixes, each with its fix: a missing database or role, a file
    that is not SQLite, a schema never created."""
    for cause in _causes(error):
        text = short(str(cause))
        if isinstance(cause, asyncpg.InvalidCatalogNameError):
            return StoreUnavailable(f"{text}; create the database (createdb) or fix the URL's database name")
        if isinstance(cause, asyncpg.InvalidAuthorizationSpecificationError):
            return StoreUnavailable(f"{text}; fix the user or password in the URL, or create the role")
        if isinstance(cause, asyncpg.TooManyConnectionsError | asyncpg.CannotConnectNowError):
            return StoreUnavailable(
                f"the server refuses the connection ({text}); retry later, or lower pool_size / "
                "raise the server's max_connections"
            )
        if isinstance(cause, asyncpg.UndefinedTableError) and "qmcp_" in text:
            return SchemaMissing(f"the schema is missing ({text}); {INIT_HINT}")
        if isinstance(cause, sqlite3.DatabaseError):
            if "no such table: qmcp_" in text:
                return SchemaMissing(f"the schema is missing ({text}); {INIT_HINT}")
            if "file is not a database" in text:
                return StoreUnavailable(
                    "the file is not a SQLite database; give the URL of a SQLite file or of a new path"
                )
            if "unable to open database file" in text:
                return StoreUnavailable(f"{text}; check that the folder exists and is writable")
    return None


_UNUSABLE = asyncpg.InterfaceError | asyncpg.PostgresConnectionError | asyncpg.InternalClientError
"""asyncpg's errors for a connection it can no longer use. ``InternalClientError``: its
protocol is stuck in another state, as when the server ended the connection (a killed
backend's ``FATAL``) before asyncpg saw the socket close ("cannot switch to state 12;
another operation (2) is in progress"); nothing was sent."""


def connection_lost(error: BaseException) -> bool:
    """Whether a driver-level call failed because its connection is unusable."""
    return isinstance(error, _UNUSABLE | ConnectionError | OSError) or (
        isinstance(error, sqlite3.ProgrammingError) and "closed" in str(error)
    )


def _driver_error(error: BaseException) -> BaseException | None:
    """Errors raised by the drivers themselves (the per-turn calls use them directly)."""
    text = str(error)
    unique = any(marker in text.lower() for marker in _UNIQUE_MARKERS)
    if isinstance(error, sqlite3.IntegrityError | asyncpg.IntegrityConstraintViolationError):
        if unique:
            return AlreadyExists(f"a unique key is already taken: {text}")
        return IntegrityError(f"the database refused a reference: {text}")
    if isinstance(error, _UNUSABLE | sqlite3.OperationalError) or (
        isinstance(error, sqlite3.ProgrammingError) and "closed" in str(error)
    ):
        return StoreUnavailable(f"the database is unavailable: {short(repr(error))}")
    return None  # OSError and the like: "unreachable", below


def translate(error: BaseException) -> BaseException:
    """The library error for a driver error (or the error itself if it is not one)."""
    if isinstance(error, QmcpError):
        return error
    found = _opening_error(error) or _driver_error(error)
    if found is not None:
        return found
    if isinstance(error, exc.IntegrityError):
        text = str(error.orig)
        if any(marker in text.lower() for marker in _UNIQUE_MARKERS):
            return AlreadyExists(f"a unique key is already taken: {text}")
        return IntegrityError(f"the database refused a reference: {text}")
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated or isinstance(error, exc.OperationalError | exc.InterfaceError):
            return StoreUnavailable(f"the database is unavailable: {short(repr(error.orig))}")
        return error
    if isinstance(error, exc.TimeoutError):  # the pool's, not the server's
        return StoreUnavailable(
            f"no pooled connection came free in time ({short(str(error))}); "
            "raise pool_size or pool_timeout, or run fewer calls at once"
        )
    if isinstance(error, OSError | asyncio.TimeoutError | ConnectionError):
        return StoreUnavailable(
            f"the database is unreachable ({short(str(error) or repr(error))}); "
            "check that the server runs and the URL's host and port"
        )
    return error
