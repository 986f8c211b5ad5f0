"""Driver errors, translated into the library's errors."""

from __future__ import annotations

import asyncio

from sqlalchemy import exc

from qmcp_agents.domain import AlreadyExists, IntegrityError, QmcpError, StoreUnavailable

_UNIQUE_MARKERS = ("unique", "duplicate key")


def translate(error: BaseException) -> BaseException:
    """The library error for a driver error (or the error itself if it is not one)."""
    if isinstance(error, QmcpError):
        return error
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
