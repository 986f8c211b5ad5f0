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

from qmcp_agents.adapters.store_errors import short
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
    if isinstance(error, ServerSelectionTimeoutError):
        return StoreUnavailable(
            f"MongoDB is unreachable ({_first_part(str(error))}); check that the server runs and "
            "the URL's host and port"
        )
    if isinstance(error, _UNAVAILABLE):
        return StoreUnavailable(f"MongoDB is unavailable: {short(repr(error))}")
    return error


def _first_part(text: str) -> str:
    """What failed, without PyMongo's timeouts and topology description (600 characters)."""
    for marker in (", Timeout:", " (configured timeouts", ", Topology Description"):
        text = text.split(marker)[0]
    return short(text, 120)
