"""Rough edges of the command: --store after the subcommand, a readable executions table at 80
columns, an empty description refused alike everywhere, a careful export, and an edited export
reported as edited."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from qmcp_agents.adapters.cli.app import app
from qmcp_agents.adapters.cli.group import lift_global_flags

from .test_cli_usage import cli, ok, refused, snapshot

runner = CliRunner()


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'polish.db'}"
    ok(url, "init")
    ok(url, "agent-type", "add", "pro", "--role", "specialist", "--description", "pro")
    ok(url, "topology", "add", "panel", "--type", "ensemble", "--description", "p",
       "--config", '{"aggregation_method": "vote"}', "--agent", "pro")  # fmt: skip
    return url


def bare(*args: str, **kwargs: Any) -> Result:
    """The command without the leading ``--store`` the other helpers add."""
    kwargs.setdefault("env", {"QMCP_STORE_URL": None})
    return runner.invoke(app, list(args), **kwargs)


# --- 1. --store after the subcommand ---------------------------------------------------------


def test_store_after_the_subcommand_is_the_store_used(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'after.db'}"
    done = bare("init", "--store", url)
    assert done.exit_code == 0, done.output
    assert (tmp_path / "after.db").exists()
    assert bare("agent-type", "add", "pro", "--role", "specialist", "--description", "d",
                f"--store={url}").exit_code == 0  # fmt: skip
    listed = bare("agent-type", "list", "--store", url, "--json")
    assert listed.exit_code == 0, listed.output
    assert [item["name"] for item in json.loads(listed.stdout)["items"]] == ["pro"]


def test_store_before_the_subcommand_and_the_environment_still_work(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'before.db'}"
    assert bare("--store", url, "init").exit_code == 0
    assert bare("agent-type", "add", "pro", "--role", "specialist", "--description", "d",
                env={"QMCP_STORE_URL": url}).exit_code == 0  # fmt: skip
    listed = bare("--store", url, "agent-type", "list", "--json")
    assert [item["name"] for item in json.loads(listed.stdout)["items"]] == ["pro"]


def test_the_store_written_last_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    assert bare("--store", f"sqlite:///{first}", "init", "--store", f"sqlite:///{second}").exit_code == 0
    assert second.exists()
    assert not first.exists()


def test_store_is_lifted_except_after_a_double_dash_or_for_a_command_with_its_own() -> None:
    assert lift_global_flags(["init", "--store", "x"]) == ["--store", "x", "init"]
    assert lift_global_flags(["executions", "list", "--store=x", "--json"]) == [
        "--json", "--store=x", "executions", "list"]  # fmt: skip
    assert lift_global_flags(["run", "t", "--", "--store", "x"]) == ["run", "t", "--", "--store", "x"]
    assert lift_global_flags(["serve", "--store", "x"], {"serve"}) == ["serve", "--store", "x"]


# --- 3. an empty description -----------------------------------------------------------------


@pytest.mark.parametrize("noun", ["agent-type", "topology"])
def test_an_empty_description_is_refused_the_same_way(store: str, noun: str) -> None:
    name = "pro" if noun == "agent-type" else "panel"
    before = snapshot(store)
    lines = refused(store, noun, "update", name, "--description", "", match="description")
    assert len(lines) == 1
    assert "(got '')" in lines[0]
    assert "nothing to change" not in lines[0]
    assert snapshot(store) == before


# --- 4. export to a directory or over a file ------------------------------------------------


def test_export_to_a_directory_is_refused_before_anything(store: str, tmp_path: Path) -> None:
    lines = refused(store, "export", str(tmp_path), match="is a directory")
    assert len(lines) == 1
    assert str(tmp_path) in lines[0]
    assert "Errno" not in lines[0]
    assert not list(tmp_path.glob("*.partial"))
    assert not (tmp_path.parent / (tmp_path.name + ".partial")).exists()


def test_export_over_an_existing_file_needs_force(store: str, tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("keep me\n")
    lines = refused(store, "export", str(target), match="already exists")
    assert "--force" in lines[0]
    assert target.read_text() == "keep me\n"
    done = cli(store, "export", str(target), "--force")
    assert done.exit_code == 0, done.output
    assert target.read_text().startswith("{")
    assert "--force" in cli(store, "export", "--help").stdout


# --- 5. an edited export imported where the original is --------------------------------------


def test_an_edited_export_is_reported_by_its_checksum_not_as_a_conflict(store: str, tmp_path: Path) -> None:
    ok(store, "run", "panel")
    target = tmp_path / "dump.jsonl"
    assert cli(store, "export", str(target)).exit_code == 0
    lines = target.read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if '"output_data":{' in line and '"result":"ok"' in line)
    lines[number] = lines[number].replace('"result":"ok"', '"result":"ko"', 1)  # output_data edited
    target.write_text("\n".join(lines) + "\n")
    before = snapshot(store)
    refusal = refused(store, "import", str(target), match="checksum does not match")
    assert "conflict" not in refusal[0]
    assert snapshot(store) == before
    # Into an empty store the same file is refused the same way, and nothing is written.
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    refused(empty, "import", str(target), match="checksum does not match")
    assert not (tmp_path / "empty.db").exists()


# --- 2. the executions table at 80 columns ---------------------------------------------------


@pytest.mark.parametrize("columns", ["80", "99"])
def test_the_executions_table_is_readable_at_80_columns(store: str, columns: str) -> None:
    runs = [ok(store, "run", "panel") for _ in range(2)]
    table = cli(store, "executions", "list", env={"COLUMNS": columns})
    assert table.exit_code == 0, table.output
    assert "…" not in table.stdout
    assert all(len(line) <= int(columns) for line in table.stdout.splitlines())
    for run in runs:
        assert run["id"] in table.stdout  # whole, to be copied
        assert run["started_at"][:16].replace("T", " ") in table.stdout  # to the minute, UTC
    assert "completed" in table.stdout
    assert "panel" in table.stdout
    wide = cli(store, "executions", "list", env={"COLUMNS": "140"})
    assert "topology" in wide.stdout.splitlines()[2]  # a wide terminal keeps one line a run
