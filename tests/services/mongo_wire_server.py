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
from typing import Any

from mongoeco.wire import AsyncMongoEcoProxyServer
from mongoeco.wire.sessions import WireSessionStore

_commit_transaction = WireSessionStore.commit_transaction


def _commit_or_abort(self: WireSessionStore, body: dict[str, Any]) -> dict[str, Any]:
    """A commit the server refuses (a write conflict) ends the transaction, as MongoDB's does.

    mongoeco 4.11 leaves the session's transaction open after a failed commit; drivers pool
    server sessions, so the next operation on that session id (any later call of the same
    client) runs inside the dead transaction: it reads the failed transaction's writes and
    its own writes are never committed. Aborting there keeps the test server honest.
    """
    try:
        committed: dict[str, Any] = _commit_transaction(self, body)
        return committed
    except Exception:
        session = self._require_session(body)
        if session.transaction_active:
            session.abort_transaction()
        raise


WireSessionStore.commit_transaction = _commit_or_abort


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
