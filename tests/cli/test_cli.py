"""Every command of ``qmcp-agents`` through Typer's test runner, on a SQLite file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from qmcp_agents.adapters.cli.app import app

runner = CliRunner()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def cli(store_url: str, *args: str, json_output: bool = False) -> Result:
    return runner.invoke(app, ["--store", store_url, *(["--json"] if json_output else []), *args])


def ok(store_url: str, *args: str) -> Any:
    result = cli(store_url, *args, json_output=True)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if result.stdout.strip() else None


def refused(store_url: str, *args: str, match: str) -> None:
    result = cli(store_url, *args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert match in lines[0], lines[0]


def setup_store(store_url: str, tmp_path: Path) -> None:
    ok(store_url, "init")
    assert ok(store_url, "db", "upgrade") == {"store": store_url, "schema": "ready"}
    ok(store_url, "agent-type", "add", "pro", "--role", "specialist", "--description", "argues for")
    ok(
        store_url,
        "agent-type",
        "add",
        "con",
        "--role",
        "critic",
        "--description",
        "argues against",
        "--temperature",
        "0.2",
        "--capability",
        "tool_use",
        "--skill",
        "rebuttal",
    )
    spec = tmp_path / "judge.yaml"
    spec.write_text("name: judge\nrole: reviewer\ndescription: decides\nconfig:\n  max_tokens: 512\n")
    ok(store_url, "agent-type", "add", "--file", str(spec))
    ok(
        store_url,
        "topology",
        "add",
        "debate",
        "--type",
        "debate",
        "--description",
        "d",
        "--config",
        '{"max_rounds": 2, "mediator_agent_name": "judge"}',
        "--agent",
        "pro",
        "--agent",
        "con",
        "--agent",
        "judge",
    )


def test_help_on_every_command() -> None:
    commands = [
        [],
        ["init"],
        ["db", "upgrade"],
        ["agent-type", "add"],
        ["agent-type", "list"],
        ["agent-type", "show"],
        ["agent-type", "update"],
        ["agent-type", "delete"],
        ["topology", "add"],
        ["topology", "list"],
        ["topology", "show"],
        ["topology", "validate"],
        ["run"],
        ["executions", "list"],
        ["executions", "show"],
        ["executions", "purge"],
        ["export"],
        ["import"],
        ["copy"],
        ["demo"],
    ]
    for command in commands:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert "Usage" in result.output


def test_agent_types(store_url: str, tmp_path: Path) -> None:
    setup_store(store_url, tmp_path)
    listing = ok(store_url, "agent-type", "list")
    assert [t["name"] for t in listing["items"]] == ["pro", "con", "judge"]
    assert ok(store_url, "agent-type", "list", "--role", "critic")["items"][0]["config"]["temperature"] == 0.2
    shown = ok(store_url, "agent-type", "show", "JUDGE")
    assert shown["config"]["max_tokens"] == 512
    updated = ok(
        store_url, "agent-type", "update", "pro", "--description", "argues hard", "--version", "1.1.0"
    )
    assert (updated["description"], updated["version"]) == ("argues hard", "1.1.0")
    refused(store_url, "agent-type", "delete", "pro", match="in use")
    ok(store_url, "agent-type", "add", "spare", "--role", "observer", "--description", "x")
    ok(store_url, "agent-type", "delete", "spare")
    refused(store_url, "agent-type", "show", "spare", match="'spare' does not exist")
    table = cli(store_url, "agent-type", "list")
    assert table.exit_code == 0
    assert "rebuttal" in table.stdout


def test_topologies(store_url: str, tmp_path: Path) -> None:
    setup_store(store_url, tmp_path)
    assert [t["name"] for t in ok(store_url, "topology", "list", "--type", "debate")["items"]] == ["debate"]
    drawing = cli(store_url, "topology", "show", "debate")
    assert drawing.exit_code == 0
    assert "slot" in drawing.stdout
    assert "judge" in drawing.stdout
    good = tmp_path / "ensemble.yaml"
    good.write_text(
        "name: panel\ndescription: p\ntopology_type: ensemble\nagent_names: [pro, con]\n"
        "config:\n  aggregation_method: vote\n"
    )
    assert ok(store_url, "topology", "validate", str(good)) == {"valid": True, "name": "panel"}
    assert ok(store_url, "topology", "list", "--type", "ensemble")["items"] == []  # validate saves nothing
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "name": "x",
                "description": "d",
                "topology_type": "debate",
                "agent_names": ["pro"],
                "config": {"mediator_agent_name": "judge"},
            }
        )
    )
    refused(store_url, "topology", "validate", str(bad), match="mediator_agent_name 'judge' is not a member")
    ok(store_url, "topology", "add", "--file", str(good))
    assert ok(store_url, "topology", "list", "--type", "ensemble")["items"][0]["agent_count"] == 2


def test_run_show_list_and_purge(store_url: str, tmp_path: Path) -> None:
    setup_store(store_url, tmp_path)
    script = tmp_path / "agents.yaml"
    script.write_text(
        "agents:\n"
        "  pro: {replies: [{output: {answer: adopt}, confidence: 0.8, token_usage: {input: 5, output: 1}}]}\n"
        "  con: {replies: [{output: {answer: reject}, confidence: 0.7},\n"
        "                  {output: {answer: adopt}, confidence: 0.9}]}\n"
        "  judge: {replies: [{output: {answer: adopt}, confidence: 1.0}]}\n"
    )
    run = ok(store_url, "run", "debate", "--input", '{"q": "?"}', "--agents", str(script))
    assert run["status"] == "completed"
    assert run["output_data"]["decision"] == "adopt"
    shown = ok(store_url, "executions", "show", run["id"])
    assert [m["sequence_number"] for m in shown["messages"]] == [1, 2, 3, 4, 5]
    assert len(shown["results"]) == 5
    pretty = cli(store_url, "executions", "show", run["id"])
    assert pretty.exit_code == 0
    assert "round 2" in pretty.stdout
    assert "tokens input 10, output 2" in pretty.stdout  # pro answered in both rounds
    default = ok(store_url, "run", "debate")
    assert default["status"] == "completed"
    listing = ok(
        store_url,
        "executions",
        "list",
        "--status",
        "completed",
        "--topology",
        "debate",
        "--since",
        "1h",
        "--limit",
        "1",
    )
    assert len(listing["items"]) == 1
    assert listing["next_cursor"] is not None
    second = ok(store_url, "executions", "list", "--limit", "1", "--after", listing["next_cursor"])
    assert second["items"][0]["id"] != listing["items"][0]["id"]
    assert ok(store_url, "executions", "purge", "--older-than", "1d") == {"deleted": 0}
    failing = tmp_path / "failing.yaml"
    failing.write_text(
        "agents:\n  pro: {replies: [{error: boom}]}\n  con: {replies: [{output: {}}]}\n"
        "  judge: {replies: [{output: {}}]}\n"
    )
    failed = cli(store_url, "run", "debate", "--agents", str(failing))
    assert failed.exit_code == 1
    assert "boom" in failed.stdout


def test_bad_input_is_one_line_exit_2_and_changes_nothing(store_url: str, tmp_path: Path) -> None:
    setup_store(store_url, tmp_path)
    before = ok(store_url, "agent-type", "list")
    refused(store_url, "run", "nope", match="topology named 'nope' does not exist")
    refused(store_url, "run", "debate", "--input", "{not json", match="--input is not valid JSON")
    refused(
        store_url,
        "topology",
        "add",
        "t2",
        "--type",
        "debate",
        "--description",
        "d",
        "--config",
        '{"max_rounds": 99}',
        match="max_rounds",
    )
    refused(
        store_url, "agent-type", "add", "bad name!", "--role", "critic", "--description", "d", match="name"
    )
    refused(
        store_url,
        "agent-type",
        "add",
        "hot",
        "--role",
        "critic",
        "--description",
        "d",
        "--temperature",
        "3",
        match="temperature",
    )
    refused(store_url, "executions", "show", "not-a-uuid", match="is not an id or the start of one")
    refused(store_url, "executions", "purge", "--older-than", "soon", match="--older-than")
    refused(store_url, "import", str(tmp_path / "missing.jsonl"), match="does not exist")
    refused("postgresql://nobody@127.0.0.1:1/none", "agent-type", "list", match="unreachable")
    refused("ftp://example", "agent-type", "list", match="unknown scheme")
    assert ok(store_url, "agent-type", "list") == before
    assert ok(store_url, "topology", "list")["items"][0]["name"] == "debate"
    assert len(ok(store_url, "topology", "list")["items"]) == 1


def test_export_import_and_copy(store_url: str, tmp_path: Path) -> None:
    setup_store(store_url, tmp_path)
    ok(store_url, "run", "debate")
    export = tmp_path / "dump.jsonl"
    exported = ok(store_url, "export", str(export))
    assert exported["counts"]["message"] == 3  # default agents agree in round 1
    lines = export.read_text().splitlines()
    assert json.loads(lines[0])["format"] == "qmcp-agents-export"
    assert json.loads(lines[-1])["kind"] == "end"
    other = f"sqlite:///{tmp_path / 'other.db'}"
    imported = ok(other, "import", str(export))
    assert imported["written"] == imported["counts"]
    assert imported["checksum"] == exported["checksum"]
    again = ok(other, "import", str(export))
    assert sum(again["written"].values()) == 0
    third = f"sqlite:///{tmp_path / 'third.db'}"
    copied = ok(store_url, "copy", "--from", store_url, "--to", third, "--batch-size", "2")
    assert copied["checksum"] == exported["checksum"]
    rerun = ok(store_url, "copy", "--from", store_url, "--to", third)
    assert sum(rerun["written"].values()) == 0
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("\n".join(lines[:-1]) + "\n")
    refused(f"sqlite:///{tmp_path / 'fourth.db'}", "import", str(truncated), match="incomplete")


def test_demo(store_url: str) -> None:
    result = cli(store_url, "demo")
    assert result.exit_code == 0, result.output
    for name in ("proposal-debate", "article-pipeline", "forecast-ensemble"):
        assert name in result.stdout
    executions = ok(store_url, "executions", "list")["items"]
    assert [e["status"] for e in executions] == ["completed"] * 3
    again = cli(store_url, "demo")  # rerunnable: three more executions
    assert again.exit_code == 0, again.output
    assert len(ok(store_url, "executions", "list")["items"]) == 6
