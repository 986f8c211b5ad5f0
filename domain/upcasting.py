"""Upcasters: read rows and documents written by older releases.

Every stored row carries ``schema_version``. A reader passes the raw mapping through
:func:`upcast` before building the domain model, so old data stays readable without a
bulk migration. Each step is a small pure function from version ``n`` to ``n + 1``.

Version 0 is data written straight from the models specification (the SQLModel tables it
describes): no ``revision``, the column ``metadata_``, naive timestamps. Version 1 is this
release's layout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CURRENT_SCHEMA_VERSION = 1

Row = dict[str, Any]
Upcaster = Callable[[Row], Row]


def _v0_to_v1(row: Row) -> Row:
    out = dict(row)
    if "metadata_" in out and "metadata" not in out:
        out["metadata"] = out.pop("metadata_")
    out.setdefault("revision", 1)
    return out


UPCASTERS: dict[int, Upcaster] = {0: _v0_to_v1}


def upcast(row: Row, version: int | None) -> Row:
    """Bring ``row`` from ``version`` (``None`` = 0) up to :data:`CURRENT_SCHEMA_VERSION`."""
    current = 0 if version is None else version
    if current > CURRENT_SCHEMA_VERSION:
        raise ValueError(
            f"schema_version {current} is newer than this release understands "
            f"({CURRENT_SCHEMA_VERSION}); upgrade qmcp-agents"
        )
    while current < CURRENT_SCHEMA_VERSION:
        row = UPCASTERS[current](row)
        current += 1
    return row


__all__ = ["CURRENT_SCHEMA_VERSION", "UPCASTERS", "upcast"]
