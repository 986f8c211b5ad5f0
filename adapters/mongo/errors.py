"""PyMongo errors, translated into the library's errors."""

from __future__ import annotations

import asyncio

from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    DuplicateKeyError,
    NetworkTimeout,
    ServerSelectionTimeoutError,
)

from qmcp_agents.domain import AlreadyExists, StoreUnavailable

_UNAVAILABLE = (
    ConnectionFailure,
    AutoReconnect,
    NetworkTimeout,
    ServerSelectionTimeoutError,
    OSError,
    asyncio.TimeoutError,
)


def translate(error: BaseException) -> BaseException:
    if isinstance(error, DuplicateKeyError):
        return AlreadyExists(f"a unique key is already taken: {error.details or error}")
    if isinstance(error, _UNAVAILABLE):
        return StoreUnavailable(f"MongoDB is unavailable: {error!r}")
    return error
