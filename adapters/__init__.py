"""Persistence adapters. :func:`open_store` picks one from a URL.

::

    memory://                      in-process, for tests and demos
    sqlite:///path/to/file.db      SQLite file (sqlite:// alone: in memory)   [sql]
    postgresql://user@host/db      PostgreSQL                                 [sql]
    mongodb://host:27017/dbname    MongoDB                                    [mongo]
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from qmcp_agents.domain.ports import Store

from . import json_schema as _json_schema  # noqa: F401 - installs the structured_output validator

_EXTRAS = {
    "sqlite": "sql",
    "postgresql": "sql",
    "postgres": "sql",
    "mongodb": "mongo",
    "mongodb+srv": "mongo",
}


def _scheme(url: str) -> str:
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"store url {url!r} is not a URL; expected e.g. memory://, sqlite:///file.db")
    return urlsplit(url).scheme.split("+")[0].lower()


def open_store(url: str, **options: Any) -> Store:
    """A store for ``url``; use it as ``async with open_store(url) as store``.

    Nothing is connected until the store is entered (or first used), so this never blocks.
    """
    scheme = _scheme(url)
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore()
    if scheme in ("sqlite", "postgresql", "postgres"):
        try:
            from .sql import SqlStore
        except ImportError as error:
            raise _missing_extra(url, scheme, error) from error
        return SqlStore(url, **options)
    if scheme == "mongodb":
        try:
            from .mongo import MongoStore
        except ImportError as error:
            raise _missing_extra(url, scheme, error) from error
        return MongoStore.from_url(url, **options)
    raise ValueError(
        f"store url {url!r}: unknown scheme {scheme!r}; use memory://, sqlite://, postgresql:// or mongodb://"
    )


def _missing_extra(url: str, scheme: str, error: ImportError) -> ImportError:
    extra = _EXTRAS.get(scheme, "all")
    return ImportError(
        f"store url {url!r} needs the {extra!r} extra: pip install 'qmcp-agents[{extra}]' ({error})"
    )


__all__ = ["open_store"]
