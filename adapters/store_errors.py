"""One short line for every failure to open or use a store (issue 13).

A driver's error is long (a PyMongo topology description runs to 600 characters) and says
nothing of the fix. The adapters translate it into a library error whose message is
``store <url, password masked>: <cause>; <fix>``, which the command prints as it is.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from qmcp_agents.domain.errors import StoreUnavailable

INIT_HINT = "run `qmcp-agents init` (or `await store.create_schema()`) to create it"


def masked(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe to print and log)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def naming(label: str, error: BaseException) -> BaseException:
    """``error`` with the store's URL in front, once (a store error raised again through
    nested calls keeps a single prefix)."""
    if not isinstance(error, StoreUnavailable) or str(error).startswith("store "):
        return error
    named = type(error)(f"store {label}: {error}")
    named.__cause__ = error.__cause__
    return named


def short(text: str, limit: int = 160) -> str:
    """The first sentence-ish part of a driver's message, on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


__all__ = ["INIT_HINT", "masked", "naming", "short"]
