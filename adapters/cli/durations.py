"""Ages on the command line (``--since 12h``, ``--older-than 30d``), with units that cannot
be misread.

``m`` is refused: half the people who type ``5m`` mean minutes, the other half months, and
a purge that reads the wrong one deletes data. Minutes are ``min``.
"""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"s": "seconds", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_AGE = re.compile(r"^(\d+)\s*([a-z]+)$")
EXAMPLES = "30d, 12h, 45min, 90s, 2w"


def parse_age(text: str, option: str) -> timedelta:
    """``30d`` -> 30 days; every failure is one line naming the option and the value."""
    match = _AGE.match(text.strip().lower())
    if match is None:
        raise ValueError(f"{option} {text!r}: use a number and a unit, like {EXAMPLES}")
    amount, unit = int(match.group(1)), match.group(2)
    if unit == "m":
        raise ValueError(
            f"{option} {text!r}: 'm' is ambiguous (minutes or months?); write {amount}min for minutes"
        )
    if unit not in UNITS:
        raise ValueError(f"{option} {text!r}: unknown unit {unit!r}; use s, min, h, d or w (like {EXAMPLES})")
    try:
        return timedelta(**{UNITS[unit]: amount})
    except OverflowError:
        raise ValueError(f"{option} {text!r}: too large") from None
