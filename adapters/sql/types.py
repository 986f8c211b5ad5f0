"""Column types that make SQLite and PostgreSQL store the domain's values identically."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

from qmcp_agents.domain.clock import to_utc_ms


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out, on every backend.

    PostgreSQL keeps ``timestamptz``; SQLite has no datetime type, so the value is stored as
    naive UTC text in a fixed-width format (which also sorts chronologically) and the UTC
    zone is put back on load.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = to_utc_ms(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_type(nullable: bool = False) -> Any:
    """JSON text on SQLite, JSONB on PostgreSQL; ``None`` is SQL NULL, never JSON ``null``."""
    return JSON(none_as_null=nullable).with_variant(JSONB(none_as_null=nullable), "postgresql")
