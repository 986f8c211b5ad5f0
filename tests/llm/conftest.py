"""Stores for the LLM-agent tests: memory, a SQLite file and PostgreSQL (a schema of its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from qmcp_agents.adapters import open_store
from qmcp_agents.domain.ports import Store
from tests.stores.servers import backend_store


@pytest_asyncio.fixture(params=["memory", "sqlite", "postgresql"])
async def any_store(request: Any, tmp_path: Path) -> AsyncIterator[Store]:
    async with backend_store(request.param, tmp_path) as store:
        yield store


@pytest_asyncio.fixture
async def store() -> AsyncIterator[Store]:
    async with open_store("memory://") as memory:
        yield memory


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may find a real key (or proxy) in the environment and reach a provider."""
    for variable in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_COMPATIBLE_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
