"""Every failure to open or use a store is one short line naming the URL (password
masked), the cause and the fix, with exit code 2 -- never a traceback (issue 13).

PostgreSQL cases need the server of ``tests/run-with-services``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from qmcp_agents.adapters.cli.app import app
from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.adapters.sql.errors import translate
from qmcp_agents.adapters.sql.schema import VERSION_TABLE
from qmcp_agents.adapters.sql.store import async_url
from qmcp_agents.domain import SchemaMissing, SchemaTooNew, StoreUnavailable
from tests.stores.servers import POSTGRES_URL, unique_schema, with_database

runner = CliRunner()


def one_line(url: str, *args: str) -> str:
    result = runner.invoke(app, ["--store", url, *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert len(lines[0]) < 300, lines[0]
    return lines[0]


def with_user(url: str, user: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest.rpartition('@')[2]}"


def not_sqlite(folder: Path) -> str:
    path = folder / "notes.db"
    path.write_text("these are my notes, not a database\n")
    return f"sqlite:///{path}"


def sqlite_without_schema(folder: Path) -> str:
    path = folder / "bare.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE unrelated (a INTEGER)")
    return f"sqlite:///{path}"


def missing_sqlite(folder: Path) -> str:
    return f"sqlite:///{folder / 'absent.db'}"


def missing_folder(folder: Path) -> str:
    return f"sqlite:///{folder / 'no-such-folder' / 'x.db'}"


def missing_database(_: Path) -> str:
    return with_database(POSTGRES_URL, f"qmcp_absent_{uuid.uuid4().hex[:8]}")


def missing_role(_: Path) -> str:
    return with_user(POSTGRES_URL, f"qmcp_nobody_{uuid.uuid4().hex[:6]}", "s3cret-pw")


def closed_postgres_port(_: Path) -> str:
    return "postgresql://postgres@127.0.0.1:1/test"


def unreachable_mongo(_: Path) -> str:
    return "mongodb://me:s3cret-pw@127.0.0.1:1/app?serverSelectionTimeoutMS=300"


def password_in_query(_: Path) -> str:
    return with_database(POSTGRES_URL, f"qmcp_absent_{uuid.uuid4().hex[:8]}") + "?password=s3cret-pw"


def postgres_unknown_option(_: Path) -> str:
    return POSTGRES_URL + "?bogus=1&password=s3cret-pw"


def mongo_bad_option_value(_: Path) -> str:
    return "mongodb://me:s3cret-pw@127.0.0.1:1/app?serverSelectionTimeoutMS=abc"


def mongo_configuration_error(_: Path) -> str:
    return "mongodb://127.0.0.1:1/app?authMechanism=PLAIN"


CASES: dict[str, tuple[Callable[[Path], str], list[str]]] = {
    "a password in the query string": (password_in_query, ["does not exist", "password=***"]),
    "an option PostgreSQL does not take": (postgres_unknown_option, ["unknown PostgreSQL option", "bogus"]),
    "a MongoDB option with a bad value": (mongo_bad_option_value, ["invalid MongoDB URL", "***"]),
    "a MongoDB URL PyMongo refuses": (
        mongo_configuration_error,
        ["invalid MongoDB URL", "requires a username"],
    ),
    "PostgreSQL database that does not exist": (missing_database, ["does not exist", "createdb"]),
    "PostgreSQL role that does not exist": (missing_role, ["role", "does not exist", "***"]),
    "PostgreSQL port closed": (closed_postgres_port, ["unreachable", "host and port"]),
    "a file that is not SQLite": (not_sqlite, ["not a SQLite database"]),
    "a SQLite file with no schema": (sqlite_without_schema, ["schema is missing", "qmcp-agents init"]),
    "a SQLite file that does not exist": (missing_sqlite, ["does not exist", "qmcp-agents init"]),
    "MongoDB unreachable": (unreachable_mongo, ["MongoDB is unreachable", "***", "host and port"]),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize(
    "command", [["agent-type", "list"], ["executions", "list"], ["topology", "show", "x"]]
)
def test_one_line_naming_url_cause_and_fix(case: str, command: list[str], tmp_path: Path) -> None:
    make, expected = CASES[case]
    url = make(tmp_path)
    line = one_line(url, *command)
    assert line.startswith("error: store "), line
    assert url.split("://")[0] in line
    assert "s3cret-pw" not in line
    for part in expected:
        assert part in line, line


@pytest.mark.parametrize(
    "command",
    [
        ["agent-type", "list"],
        ["agent-type", "show", "x"],
        ["topology", "list"],
        ["executions", "list"],
        ["executions", "show", "0190a000-0000-7000-8000-000000000000"],
        ["run", "x"],
        ["export", "out.jsonl"],
        ["copy", "--from", "@", "--to", "memory://"],
    ],
)
def test_commands_on_a_missing_sqlite_file_create_nothing(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = "sqlite:///qmcp-agents.db"
    command = [url if part == "@" else part for part in command]
    line = one_line(url, *command)
    assert "qmcp-agents init" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_init_creates_the_file_that_the_other_commands_refuse_to(tmp_path: Path) -> None:
    url = missing_sqlite(tmp_path)
    one_line(url, "agent-type", "list")
    assert runner.invoke(app, ["--store", url, "init"]).exit_code == 0
    assert runner.invoke(app, ["--store", url, "agent-type", "list"]).exit_code == 0


def test_init_in_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    line = one_line(missing_folder(tmp_path), "init")
    assert "no-such-folder does not exist; create it or fix the path" in line


def test_a_schema_written_by_a_newer_release_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'future.db'}"

    async def create() -> None:
        async with SqlStore(url) as store:
            await store.create_schema()

    asyncio.run(create())
    with sqlite3.connect(tmp_path / "future.db") as conn:
        conn.execute(f"UPDATE {VERSION_TABLE} SET version_num = 'f0f0f0f0f0f0'")
    with pytest.raises(SchemaTooNew, match=r"revision 'f0f0f0f0f0f0'.*upgrade qmcp-agents"):
        asyncio.run(create())
    line = one_line(url, "init")
    assert "upgrade qmcp-agents" in line


@pytest.mark.asyncio
async def test_a_postgresql_schema_never_created_is_schema_missing() -> None:
    async with SqlStore(POSTGRES_URL, schema=unique_schema()) as store:
        with pytest.raises(SchemaMissing, match="qmcp-agents init") as missing:
            await store.agent_types.count()
    assert isinstance(missing.value, StoreUnavailable)


def test_a_server_refusing_more_connections_is_one_line() -> None:
    refusal = asyncpg.TooManyConnectionsError("sorry, too many clients already")
    error = translate(refusal)
    assert isinstance(error, StoreUnavailable)
    assert str(error) == (
        "the server refuses the connection (sorry, too many clients already); retry later, "
        "or lower pool_size / raise the server's max_connections"
    )


def test_libpq_sslmode_is_taken_as_asyncpg_ssl() -> None:
    url = async_url("postgresql://u@h/db?sslmode=disable")
    assert dict(url.query) == {"ssl": "disable"}
    assert url.drivername == "postgresql+asyncpg"
