"""Where the backend servers for the tests are, and what to do when one is missing.

Under ``CI=true`` a backend that cannot be reached fails the run; elsewhere its tests are
skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

POSTGRES_URL = os.environ.get("QMCP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MONGODB_URL = os.environ.get("QMCP_TEST_MONGODB_URL", "mongodb://127.0.0.1:27017/?directConnection=true")
IN_CI = os.environ.get("CI") == "true"


def unavailable(backend: str, error: BaseException) -> None:
    message = f"{backend} is unreachable for the tests: {error!r}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing backend is a failure)", pytrace=False)
    pytest.skip(message)


def unique_schema() -> str:
    """A PostgreSQL schema of its own for one test run, so runs never see each other's data."""
    return f"qmcp_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def with_database(url: str, database: str) -> str:
    """``url`` with its path (the database name) replaced by ``database``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))
