"""Driver errors, translated into the library's errors."""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg
from sqlalchemy import exc

from qmcp_agents.domain import AlreadyExists, IntegrityError, QmcpError, StoreUnavailable

_UNIQUE_MARKERS = ("unique", "duplicate key")


def connection_lost(error: BaseException) -> bool:
    """Whether a driver-level call failed because its connection is unusable."""
    return isinstance(
        error,
        asyncpg.InterfaceError | asyncpg.PostgresConnectionError | ConnectionError | OSError,
    ) or (isinstance(error, sqlite3.ProgrammingError) and "closed" in str(error))


def _driver_error(error: BaseException) -> BaseException | None:
    """Errors raised by the drivers themselves (the per-turn calls use them directly)."""
    text = str(error)
    unique = any(marker in text.lower() for marker in _UNIQUE_MARKERS)
    if isinstance(error, sqlite3.IntegrityError | asyncpg.IntegrityConstraintViolationError):
        if unique:
            return AlreadyExists(f"a unique key is already taken: {text}")
        return IntegrityError(f"the database refused a reference: {text}")
    if isinstance(
        error, asyncpg.InterfaceError | asyncpg.PostgresConnectionError | sqlite3.OperationalError
    ) or (isinstance(error, sqlite3.ProgrammingError) and "closed" in str(error)):
        return StoreUnavailable(f"the database is unavailable: {error!r}")
    return None  # OSError and the like: "unreachable", below


def translate(error: BaseException) -> BaseException:
    """The library error for a driver error (or the error itself if it is not one)."""
    if isinstance(error, QmcpError):
        return error
    found = _driver_error(error)
    if found is not None:
        return found
    if isinstance(error, exc.IntegrityError):
        text = str(error.orig)
        if any(marker in text.lower() for marker in _UNIQUE_MARKERS):
            return AlreadyExists(f"a unique key is already taken: {text}")
        return IntegrityError(f"the database refused a reference: {text}")
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated or isinstance(error, exc.OperationalError | exc.InterfaceError):
            return StoreUnavailable(f"the database is unavailable: {error.orig!r}")
        return error
    if isinstance(error, OSError | asyncio.TimeoutError | exc.TimeoutError | ConnectionError):
        return StoreUnavailable(f"the database is unreachable: {error!r}")
    return error
