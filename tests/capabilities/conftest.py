"""MCP tool servers (the ``mcp`` SDK's) started by the tests, over stdio and over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from fastmcp.client.transports import StdioTransport
from pydantic_ai.mcp import MCPToolset

from qmcp_agents.adapters import open_store
from qmcp_agents.domain.ports import Store
from tests.stores.servers import backend_store

SERVER = Path(__file__).with_name("mcp_tools_server.py")


@pytest_asyncio.fixture
async def stdio_tools() -> AsyncIterator[MCPToolset[Any]]:
    """The tool server as a subprocess over stdio, kept running for the whole test."""
    toolset: MCPToolset[Any] = MCPToolset(StdioTransport(command=sys.executable, args=[str(SERVER), "stdio"]))
    async with toolset:
        yield toolset


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    """The tool server over streamable HTTP on a free 127.0.0.1 port; yields its URL."""
    port_file = tmp_path / "port"
    process = subprocess.Popen([sys.executable, str(SERVER), "http", str(port_file)])
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            assert process.poll() is None, "the MCP HTTP server exited"
            assert time.monotonic() < deadline, "the MCP HTTP server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text()}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest_asyncio.fixture
async def store() -> AsyncIterator[Store]:
    async with open_store("memory://") as memory:
        yield memory


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def sql_store(request: Any, tmp_path: Path) -> AsyncIterator[Store]:
    async with backend_store(request.param, tmp_path) as opened:
        yield opened
