"""The few places where PyMongo's async API and Motor differ, in one shim.

Collection methods (``find_one``, ``insert_many``, ``find_one_and_update``, ...) are
awaitable with the same signatures in both, and ``find()`` returns a cursor with
``to_list``. Sessions differ: PyMongo's ``start_session()`` is a plain call and its
``start_transaction()`` a coroutine; Motor's are the other way round.
"""

from __future__ import annotations

import inspect
from datetime import UTC
from typing import Any

from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions

CODEC_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(
    tz_aware=True, tzinfo=UTC, uuid_representation=UuidRepresentation.STANDARD
)


async def start_session(client: Any) -> Any:
    session = client.start_session()
    return await session if inspect.isawaitable(session) else session


async def start_transaction(session: Any) -> None:
    started = session.start_transaction()
    if inspect.isawaitable(started):
        await started


def collection(database: Any, name: str) -> Any:
    """A collection handle that reads aware UTC datetimes and standard UUIDs, whatever the
    codec options of the database handle it came from."""
    return database.get_collection(name, codec_options=CODEC_OPTIONS)


def is_motor(database: Any) -> bool:
    return type(database).__module__.startswith("motor")
