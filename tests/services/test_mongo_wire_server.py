"""The tests' MongoDB wire server serialises transactions with the writes around them
(``TransactionGate`` in ``mongo_wire_server.py``): a write waits for the open transaction
and both are kept, a second transaction waits for the first, reads never wait, and a
transaction whose client died or that outlived the limit is aborted and refused later.

Each test runs its own server process (from ``.venv-mongo``, which ``run-with-services``
makes), so the limit can be short and the behaviour is the gate's whatever server
``QMCP_TEST_MONGODB_URL`` names.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from qmcp_agents.adapters.mongo import MongoStore
from qmcp_agents.domain import ConcurrencyError
from qmcp_agents.testing.builders import agent_type
from tests.stores.servers import unavailable, with_database

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]
SERVER = Path(__file__).with_name("mongo_wire_server.py")
PYTHON = ROOT / ".venv-mongo" / "bin" / "python"
SHORT = 1.0  # the transaction lifetime limit of the server that tests it
LONG = 60.0  # a limit the other tests never reach


@contextmanager
def wire_server(folder: Path, lifetime: float, *flags: str) -> Iterator[str]:
    """A gated wire server of its own, with transaction lifetime limit ``lifetime``."""
    if not PYTHON.exists():
        unavailable("the MongoDB wire server", FileNotFoundError(f"{PYTHON} (run tests/run-with-services)"))
    uri = folder / f"server-{lifetime}{''.join(flags)}.uri"
    process = subprocess.Popen(
        [str(PYTHON), str(SERVER), str(uri), str(lifetime), *flags], stderr=subprocess.PIPE, text=True
    )
    try:
        for _ in range(300):
            if uri.exists() or process.poll() is not None:
                break
            time.sleep(0.1)
        assert uri.exists(), process.stderr.read() if process.stderr else "no output"
        yield uri.read_text().strip()
    finally:
        process.terminate()
        process.communicate(timeout=15)


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with wire_server(tmp_path_factory.mktemp("wire"), LONG) as url:
        yield url


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with wire_server(tmp_path_factory.mktemp("wire"), SHORT) as url:
        yield url


@asynccontextmanager
async def two_clients(url: str) -> AsyncIterator[tuple[Any, Any]]:
    """Two clients' handles on one fresh collection (``a`` holds ``{_id: 1, n: 0}``)."""
    name = f"gate_{uuid.uuid4().hex[:10]}"
    first: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    second: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    try:
        a, b = first[name]["c"], second[name]["c"]
        await a.insert_one({"_id": 1, "n": 0})
        yield a, b
    finally:
        await first.close()
        await second.close()


async def pending(task: asyncio.Task[Any], seconds: float = 0.5) -> bool:
    """Whether ``task`` is still waiting after ``seconds``."""
    await asyncio.sleep(seconds)
    return not task.done()


async def test_a_write_waits_for_the_open_transaction_and_both_are_kept(patient: str) -> None:
    async with two_clients(patient) as (a, b):
        async with a.database.client.start_session() as session:
            await session.start_transaction()
            await a.update_one({"_id": 1}, {"$set": {"by": "transaction"}, "$inc": {"n": 1}}, session=session)
            write = asyncio.create_task(b.update_one({"_id": 1}, {"$inc": {"n": 1}}))
            assert await pending(write)
            await session.commit_transaction()
        assert (await asyncio.wait_for(write, 10)).modified_count == 1
        assert await b.find_one({"_id": 1}) == {"_id": 1, "n": 2, "by": "transaction"}


async def test_a_second_transaction_waits_for_the_first_and_both_commit(patient: str) -> None:
    async with two_clients(patient) as (a, b):

        async def increment(collection: Any, entered: asyncio.Event | None = None) -> None:
            async with collection.database.client.start_session() as session:
                await session.start_transaction()
                await collection.update_one({"_id": 1}, {"$inc": {"n": 1}}, session=session)
                if entered is not None:
                    entered.set()
                    await asyncio.sleep(0.5)
                await session.commit_transaction()

        entered = asyncio.Event()
        first = asyncio.create_task(increment(a, entered))
        await entered.wait()
        second = asyncio.create_task(increment(b))
        assert await pending(second, 0.2)
        await asyncio.wait_for(asyncio.gather(first, second), 10)
        assert await a.find_one({"_id": 1}) == {"_id": 1, "n": 2}


async def test_reads_do_not_wait_for_an_open_transaction(patient: str) -> None:
    async with two_clients(patient) as (a, b):
        async with a.database.client.start_session() as session:
            await session.start_transaction()
            await a.update_one({"_id": 1}, {"$inc": {"n": 1}}, session=session)
            before = time.monotonic()
            assert await b.find_one({"_id": 1}) == {"_id": 1, "n": 0}  # the committed state
            assert await b.count_documents({}) == 1
            assert time.monotonic() - before < 2
            await session.commit_transaction()
        assert await b.find_one({"_id": 1}) == {"_id": 1, "n": 1}


async def test_a_transaction_outliving_the_limit_is_aborted_and_its_commit_refused(strict: str) -> None:
    async with two_clients(strict) as (a, b):
        async with a.database.client.start_session() as session:
            await session.start_transaction()
            began = time.monotonic()
            await a.update_one({"_id": 1}, {"$set": {"by": "abandoned"}}, session=session)
            await asyncio.wait_for(b.update_one({"_id": 1}, {"$inc": {"n": 1}}), 10)
            assert time.monotonic() - began >= SHORT * 0.9  # it waited for the limit
            with pytest.raises(OperationFailure) as refused:
                await a.insert_one({"_id": 2}, session=session)  # not run outside the transaction
            assert refused.value.code == 251
            assert refused.value.has_error_label("TransientTransactionError")
            with pytest.raises(OperationFailure) as refused:
                await session.commit_transaction()  # not "ok": nothing of it was kept
            assert refused.value.code == 251
        assert await b.find({}).to_list(None) == [{"_id": 1, "n": 1}]


CLIENT = """
import asyncio, sys
from pymongo import AsyncMongoClient

async def main(url: str, name: str) -> None:
    client = AsyncMongoClient(url)
    session = client.start_session()
    await session.start_transaction()
    await client[name]["c"].update_one({"_id": 1}, {"$set": {"by": "killed"}}, session=session)
    print("open", flush=True)
    await asyncio.sleep(120)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def spawn_client(url: str, database: str) -> subprocess.Popen[str]:
    """A process holding a transaction open on ``database`` (it prints ``open``)."""
    return subprocess.Popen([sys.executable, "-c", CLIENT, url, database], stdout=subprocess.PIPE, text=True)


async def test_the_transaction_of_a_killed_client_is_aborted_when_its_connection_closes(
    patient: str,
) -> None:
    async with two_clients(patient) as (a, b):
        client = spawn_client(patient, a.database.name)
        try:
            assert client.stdout is not None
            assert client.stdout.readline().strip() == "open"
            write = asyncio.create_task(b.update_one({"_id": 1}, {"$inc": {"n": 1}}))
            assert await pending(write)  # the killed client's transaction holds it
            client.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            await asyncio.wait_for(write, 10)
            assert time.monotonic() - killed < LONG / 6  # not the limit: the closed connection
        finally:
            client.kill()
            client.wait()
        assert await b.find_one({"_id": 1}) == {"_id": 1, "n": 1}


async def test_the_store_reports_a_transaction_the_server_aborted_as_a_concurrency_error(strict: str) -> None:
    """The adapter turns an error labelled TransientTransactionError (MongoDB's write
    conflict in a transaction, or a transaction it aborted) into ConcurrencyError, which
    the engine retries; a raw OperationFailure ended the drive instead."""
    store = MongoStore.from_url(with_database(strict, f"gate_{uuid.uuid4().hex[:10]}"))
    async with store:
        await store.create_schema()

        async def outliving() -> None:
            async with store.transaction():
                await store.agent_types.add(agent_type("first"))
                await asyncio.sleep(SHORT * 1.5)  # the server aborts it meanwhile
                await store.agent_types.add(agent_type("second"))

        with pytest.raises(ConcurrencyError):
            await outliving()
        assert await store.agent_types.count() == 0
        await store.drop_schema()
