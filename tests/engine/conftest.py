"""Stores for the engine tests: memory always, SQLite for the full-run tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from qmcp_agents.adapters import open_store
from qmcp_agents.domain.ports import Store
from qmcp_agents.testing.builders import register_topology


@pytest_asyncio.fixture
async def store() -> AsyncIterator[Store]:
    async with open_store("memory://") as memory:
        yield memory


@pytest_asyncio.fixture(params=["memory", "sqlite"])
async def any_store(request: Any, tmp_path: Path) -> AsyncIterator[Store]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'engine.db'}"
    async with open_store(url) as opened:
        await opened.create_schema()
        yield opened


build = register_topology
