"""``submit``, ``worker``, ``workers`` and ``executions cancel`` on a SQLite file: refusals
store nothing; a worker process runs what was submitted; a cancel from another process
stops a running execution within one step (on MongoDB too)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from typer.testing import CliRunner, Result

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.cli.app import app
from qmcp_agents.adapters.mongo import MongoStore
from qmcp_agents.domain import ExecutionStatus, MessageType, StoreUnavailable
from qmcp_agents.domain.queries import MAX_LIMIT
from tests.stores.servers import MONGODB_URL, unavailable, with_database

runner = CliRunner()
CLI = str(Path(sys.executable).parent / "qmcp-agents")


def cli(url: str, *args: str, json_output: bool = False) -> Result:
    return runner.invoke(app, ["--store", url, *(["--json"] if json_output else []), *args])


def ok(url: str, *args: str) -> Any:
    result = cli(url, *args, json_output=True)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def agents_file(folder: Path, slots: list[str], delay: float = 0.0) -> Path:
    path = folder / "agents.yaml"
    body = "".join(
        f"  {slot}:\n    delay: {delay}\n    replies:\n      - output: {{answer: ok}}\n" for slot in slots
    )
    path.write_text("agents:\n" + body, encoding="utf-8")
    return path


@pytest.fixture
def url(tmp_path: Path) -> str:
    return prepared(f"sqlite:///{tmp_path / 'workers.db'}")


async def _mongo(store_url: str, drop: bool = False) -> None:
    async with MongoStore.from_url(store_url) as store:
        if drop:
            await store.drop_schema()


@pytest.fixture(params=["sqlite", "mongodb"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A prepared store on SQLite or on MongoDB (a database of its own, dropped after)."""
    if request.param == "sqlite":
        yield prepared(f"sqlite:///{tmp_path / 'workers.db'}")
        return
    store_url = with_database(MONGODB_URL, f"qmcp_cli_{uuid4().hex[:10]}")
    try:
        asyncio.run(_mongo(store_url))
    except StoreUnavailable as error:
        unavailable("MongoDB", error)
    try:
        yield prepared(store_url)
    finally:
        asyncio.run(_mongo(store_url, drop=True))


def prepared(store_url: str) -> str:
    """``store_url`` initialised, with three agent types and the pipeline ``chain``."""
    ok(store_url, "init")
    for name in ("first", "second", "third"):
        ok(store_url, "agent-type", "add", name, "--role", "specialist", "--description", name)
    ok(
        store_url,
        "topology",
        "add",
        "chain",
        "--type",
        "pipeline",
        "--agent",
        "first",
        "--agent",
        "second",
        "--agent",
        "third",
        "--description",
        "three stages",
    )
    return store_url


async def _counts(url: str) -> tuple[int, int]:
    async with open_store(url) as store:
        return await store.executions.count(), len(await store.leases.list())


def counts(url: str) -> tuple[int, int]:
    return asyncio.run(_counts(url))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["nope", "--input", "{}"], "topology named 'nope' does not exist"),
        (["chain", "--input", "{broken"], "--input is not valid JSON"),
        (["chain", "--input", "[1, 2]"], "input_data: $: expected a JSON object, got list [1, 2]"),
        (["chain", "--input", "{}", "--agents", "MISSING"], "agents: no agent for chain/third"),
    ],
)
def test_bad_submit_input_is_refused_in_one_line_and_stores_nothing(
    url: str, tmp_path: Path, args: list[str], match: str
) -> None:
    args = [str(agents_file(tmp_path, ["first", "second"])) if a == "MISSING" else a for a in args]
    result = cli(url, "submit", *args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert match in lines[0], lines[0]
    assert counts(url) == (0, 0)


def test_submitted_executions_are_run_by_the_worker_command(url: str, tmp_path: Path) -> None:
    agents = str(agents_file(tmp_path, ["first", "second", "third"]))
    ids = [
        ok(url, "submit", "chain", "--input", f'{{"n": {n}}}', "--agents", agents)["execution_id"]
        for n in range(3)
    ]
    assert counts(url) == (3, 3)
    queued = ok(url, "workers")
    assert [(lease["owner"], lease["ready"]) for lease in queued] == [(None, True)] * 3
    stats = ok(
        url, "worker", "--agents", agents, "--until-idle", "--name", "cli-worker", "--concurrency", "2"
    )
    assert stats["worker"] == "cli-worker"
    assert stats["finished"] == {"completed": 3}
    assert ok(url, "workers") == []
    done = ok(url, "executions", "list", "--status", "completed")["items"]
    assert sorted(e["id"] for e in done) == sorted(ids)


def test_the_worker_command_refuses_conflicting_agent_options(url: str, tmp_path: Path) -> None:
    result = cli(url, "worker", "--llm", "--agents", str(agents_file(tmp_path, ["first"])))
    assert result.exit_code == 2
    assert "--llm and --agents both choose the agents" in result.stderr


async def _responses(url: str, execution_id: str) -> tuple[ExecutionStatus, int, int]:
    from uuid import UUID

    async with open_store(url) as store:
        ident = UUID(execution_id)
        page = await store.messages.list(ident, limit=MAX_LIMIT)
        answered = sum(1 for m in page.items if m.message_type is MessageType.RESPONSE)
        return (await store.executions.get(ident)).status, answered, len(await store.leases.list())


def test_a_cancel_from_another_process_stops_the_run_within_one_step(any_url: str, tmp_path: Path) -> None:
    url = any_url
    # Long enough that the cancel command (a new process: its start-up takes seconds on a
    # loaded machine) lands before the last two steps are done.
    step = 2.5
    agents = str(agents_file(tmp_path, ["first", "second", "third"], delay=step))
    execution_id = ok(url, "submit", "chain", "--input", "{}")["execution_id"]
    worker = subprocess.Popen(
        [CLI, "--store", url, "worker", "--agents", agents, "--lease", "3", "--name", "busy"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        status, answered, _ = asyncio.run(_responses(url, execution_id))
        for _ in range(200):
            status, answered, _ = asyncio.run(_responses(url, execution_id))
            if answered >= 1:
                break
            time.sleep(0.02)
        assert (status, answered) == (ExecutionStatus.RUNNING, 1)
        cancel = subprocess.run(
            [CLI, "--store", url, "executions", "cancel", execution_id],
            capture_output=True,
            text=True,
            check=False,
        )
        assert cancel.returncode == 0, cancel.stderr
        cancelled_at = time.monotonic()
        leases = 1
        for _ in range(200):  # the worker lets go of it within one step (or one heartbeat)
            _, _, leases = asyncio.run(_responses(url, execution_id))
            if leases == 0:
                break
            time.sleep(0.02)
        assert leases == 0
        assert time.monotonic() - cancelled_at < step + 0.6
        time.sleep(2 * step)  # had it gone on, the next stages would have answered by now
        status, after, _ = asyncio.run(_responses(url, execution_id))
        assert status is ExecutionStatus.CANCELLED
        assert after <= 2  # at most the step in flight when the cancel came
    finally:
        worker.terminate()
        out, err = worker.communicate(timeout=20)
    assert worker.returncode == 0, err
    assert "busy: claimed 1" in out
