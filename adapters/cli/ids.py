"""Execution ids as people type them: the whole UUID or a unique prefix of it, as git does.

One place resolves every id the command takes. Executions are listed in id order, so the
ids starting with a prefix are one contiguous run: a single keyset page from just below the
prefix's lowest possible id finds them without reading the rest of the store.
"""

from __future__ import annotations

import string
from uuid import UUID

from qmcp_agents.domain.ports import Store

SHOWN = 10
"""How many matches an ambiguous prefix lists."""
MIN_PREFIX = 4


class AmbiguousId(ValueError):
    """A prefix more than one id starts with; ``matches`` lists (some of) them."""

    def __init__(self, message: str, matches: list[str]) -> None:
        super().__init__(message)
        self.matches = matches


def _hex(text: str, what: str) -> str:
    digits = text.strip().lower().replace("-", "")
    if not digits or any(c not in string.hexdigits for c in digits) or len(digits) > 32:
        raise ValueError(f"{what} {text!r} is not an id or the start of one (hex digits and dashes)")
    return digits


async def resolve_execution_id(store: Store, text: str) -> UUID:
    """The execution whose id is ``text`` or starts with it; an unknown or ambiguous prefix
    is refused (``LookupError`` / :class:`AmbiguousId`)."""
    digits = _hex(text, "execution id")
    if len(digits) == 32:
        return UUID(digits)
    if len(digits) < MIN_PREFIX:
        raise ValueError(f"execution id {text!r}: give at least {MIN_PREFIX} characters of the id")
    lowest = int(digits.ljust(32, "0"), 16)
    after = str(UUID(int=lowest - 1)) if lowest else None
    page = await store.executions.list(limit=SHOWN + 1, after=after)
    found = [e.id for e in page.items if e.id.hex.startswith(digits)]
    if not found:
        raise LookupError(f"no execution id starts with {text!r}")
    if len(found) > 1:
        more = " or more" if len(found) > SHOWN else ""
        raise AmbiguousId(
            f"execution id {text!r} is ambiguous: {min(len(found), SHOWN)}{more} executions start with it",
            [str(i) for i in found[:SHOWN]],
        )
    return found[0]
