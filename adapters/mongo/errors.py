"""PyMongo errors, translated into the library's errors."""

from __future__ import annotations

import asyncio

from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    DuplicateKeyError,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from qmcp_agents.adapters.store_errors import short
from qmcp_agents.domain import AlreadyExists, ConcurrencyError, StoreUnavailable

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
    if isinstance(error, OperationFailure) and error.has_error_label("TransientTransactionError"):
        # A write conflict inside a transaction, or a transaction the server aborted (its
        # lifetime limit): the whole transaction may be run again, which ConcurrencyError says.
        return ConcurrencyError(
            f"the transaction met a concurrent write or was aborted by the server; retry it "
            f"({short(str(error))})"
        )
    return error


def _first_part(text: str) -> str:
    """What failed, without PyMongo's timeouts and topology description (600 characters)."""
    for marker in (", Timeout:", " (configured timeouts", ", Topology Description"):
        text = text.split(marker)[0]
    return short(text, 120)
