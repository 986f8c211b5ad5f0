"""One short line for every failure to open or use a store (issue 13).

A driver's error is long (a PyMongo topology description runs to 600 characters) and says
nothing of the fix. The adapters translate it into a library error whose message is
``store <url, password masked>: <cause>; <fix>``, which the command prints as it is.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from qmcp_agents.domain.errors import StoreUnavailable

INIT_HINT = "run `qmcp-agents init` (or `await store.create_schema()`) to create it"


SECRET_PARAMETERS = frozenset({"password", "pass", "passwd", "pwd", "secret", "token", "sslpassword"})
"""Query parameters whose values are secrets (libpq's ``?password=``, tokens)."""


def masked(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe to print and log), whether it is
    written before the ``@`` or as a query parameter."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable url>"
    netloc, query = parts.netloc, parts.query
    if password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(key.lower() in SECRET_PARAMETERS for key, _ in pairs):
        query = urlencode(
            [(key, "***" if key.lower() in SECRET_PARAMETERS else value) for key, value in pairs], safe="*"
        )
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


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
