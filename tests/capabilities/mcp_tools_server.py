"""An MCP server for the tests, on the ``mcp`` SDK: a few tools with known behaviour.

Run as ``python mcp_tools_server.py stdio`` (the client starts it as a subprocess) or
``python mcp_tools_server.py http PORT_FILE`` (streamable HTTP on a free 127.0.0.1 port,
written to PORT_FILE once listening).
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("qmcp-test-tools")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


@server.tool()
def delete_everything(confirm: bool) -> str:
    """A dangerous tool a policy should deny or an approver should see."""
    return "deleted" if confirm else "kept"


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer (for timeouts)."""
    await asyncio.sleep(seconds)
    return "done"


@server.tool()
def fail(message: str) -> str:
    """Always fails with ``message`` (as a tool error the client is told about)."""
    raise ToolError(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        import uvicorn

        port = _free_port()
        app = server.streamable_http_app(host="127.0.0.1")
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        instance = uvicorn.Server(config)

        async def main() -> None:
            task = asyncio.create_task(instance.serve())
            while not instance.started:  # noqa: ASYNC110 - uvicorn offers no event for it
                await asyncio.sleep(0.02)
            Path(sys.argv[2]).write_text(str(port))  # noqa: ASYNC240 - once, at start
            await task

        asyncio.run(main())
    else:
        server.run("stdio")
