"""A MongoDB wire-protocol server for the tests: mongoeco's proxy over its memory engine.

Runs under Python 3.13 in its own virtual environment (mongoeco needs 3.13; the library
and its tests do not). Usage: ``python mongo_wire_server.py URI_FILE``. It listens on a
free loopback port, writes its ``mongodb://`` URI to URI_FILE once it accepts connections,
and serves until it receives SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from mongoeco.wire import AsyncMongoEcoProxyServer


async def serve(uri_file: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = AsyncMongoEcoProxyServer(host="127.0.0.1", port=0)
    address = await server.start()
    temporary = uri_file.with_suffix(".tmp")
    temporary.write_text(f"mongodb://{address.host}:{address.port}/?directConnection=true\n")
    temporary.replace(uri_file)
    try:
        await stop.wait()
    finally:
        await server.close()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1])))
