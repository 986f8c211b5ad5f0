"""UTC millisecond timestamps.

Every backend stores at least millisecond precision (BSON dates stop there), so the domain
truncates to milliseconds up front: what you save is exactly what you read back, from any
store. A naive datetime is taken to be UTC rather than local time, because local time is
ambiguous across machines.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def to_utc_ms(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime truncated to whole milliseconds.

    A value whose offset puts it outside years 1..9999 in UTC (``datetime.max`` at -05:00)
    raises ``ValueError`` (a validation error) rather than the conversion's ``OverflowError``.
    """
    if value.tzinfo is UTC:  # how the stores and utc_now hand them over: nothing to convert
        excess = value.microsecond % 1000
        return value if excess == 0 else value.replace(microsecond=value.microsecond - excess)
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    else:
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{value.isoformat()} is outside the range of datetimes in UTC") from None
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def utc_now() -> datetime:
    """The current time, as the domain stores it."""
    return to_utc_ms(datetime.now(UTC))


UtcDatetime = Annotated[datetime, AfterValidator(to_utc_ms)]
"""A datetime field that always holds aware UTC with millisecond precision."""

__all__ = ["UtcDatetime", "to_utc_ms", "utc_now"]
