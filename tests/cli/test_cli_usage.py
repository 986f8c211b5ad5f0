"""The command as people use commands: --json anywhere, whole ids and id prefixes, topology
update/delete, explained refusals, a purge that shows and asks, and help text intact."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.core import TyperGroup
from typer.testing import CliRunner, Result

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.cli import progress
from qmcp_agents.adapters.cli.app import app
from qmcp_agents.adapters.cli.durations import parse_age
from qmcp_agents.adapters.cli.group import lift_global_flags
from qmcp_agents.adapters.transfer import record_counts
from qmcp_agents.testing.inspect import dump_store

runner = CliRunner()
AGENTS = "agents:\n  pro: {replies: [{output: {answer: yes}, confidence: 0.9}]}\n"


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    ok(url, "init")
    for name, role in (("pro", "specialist"), ("con", "critic"), ("spare", "observer")):
        ok(url, "agent-type", "add", name, "--role", role, "--description", name)
    ok(url, "topology", "add", "panel", "--type", "ensemble", "--description", "p",
       "--config", '{"aggregation_method": "vote"}', "--agent", "pro", "--agent", "con")  # fmt: skip
    ok(url, "topology", "add", "solo", "--type", "pipeline", "--description", "s", "--agent", "pro")
    return url


def cli(url: str, *args: str, **kwargs: Any) -> Result:
    return runner.invoke(app, ["--store", url, *args], **kwargs)


def ok(url: str, *args: str, **kwargs: Any) -> Any:
    result = cli(url, *args, "--json", **kwargs)  # --json after the subcommand, every time
    assert result.exit_code == 0, (args, result.output)
    return json.loads(result.stdout) if result.stdout.strip() else None


def refused(url: str, *args: str, match: str, **kwargs: Any) -> list[str]:
    result = cli(url, *args, **kwargs)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert match in lines[0], lines[0]
    return lines


def snapshot(url: str) -> Any:
    async def dump() -> Any:
        async with open_store(url) as store:
            return await dump_store(store)

    return asyncio.run(dump())


def run_panel(url: str, times: int = 1) -> list[str]:
    return [ok(url, "run", "panel")["id"] for _ in range(times)]


# --- --json anywhere -------------------------------------------------------------------------


def test_json_after_the_subcommand_is_the_same_as_before_it(store: str) -> None:
    run_panel(store)
    for args in (
        ("executions", "list"),
        ("agent-type", "list"),
        ("agent-type", "show", "pro"),
        ("topology", "show", "panel"),
        ("topology", "list", "--type", "ensemble"),
        ("capabilities", "list"),
    ):
        before = runner.invoke(app, ["--store", store, "--json", *args])
        after = runner.invoke(app, ["--store", store, *args, "--json"])
        middle = runner.invoke(app, ["--store", store, args[0], "--json", *args[1:]])
        assert before.exit_code == after.exit_code == middle.exit_code == 0, (args, after.output)
        assert json.loads(after.stdout) == json.loads(before.stdout) == json.loads(middle.stdout)


def test_json_is_lifted_only_before_a_double_dash() -> None:
    assert lift_global_flags(["executions", "list", "--json"]) == ["--json", "executions", "list"]
    assert lift_global_flags(["run", "x", "--", "--json"]) == ["run", "x", "--", "--json"]
    assert lift_global_flags(["init"]) == ["init"]


# --- ids -------------------------------------------------------------------------------------


def test_tables_show_whole_ids_on_a_narrow_terminal(store: str) -> None:
    ids = run_panel(store, 2)
    table = cli(store, "executions", "list", env={"COLUMNS": "50"})
    assert table.exit_code == 0
    for execution_id in ids:
        assert execution_id in table.stdout
    assert cli(store, "executions", "list", "--ids").stdout.split() == ids


def test_a_unique_prefix_finds_the_execution(store: str) -> None:
    first, second = run_panel(store, 2)
    common = next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)
    for text in (first, first[: common + 1], first[: common + 1].upper(), first.replace("-", "")[:30]):
        if len(text.replace("-", "")) < 4:
            continue
        shown = ok(store, "executions", "show", text)
        assert shown["execution"]["id"] == first, text


def test_an_ambiguous_prefix_lists_the_matches(store: str) -> None:
    first, second = run_panel(store, 2)
    common = next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)
    assert common >= 4  # time-ordered ids of one second share their first digits
    lines = refused(store, "executions", "show", first[:common], match="is ambiguous")
    assert lines[1:] == [f"  {first}", f"  {second}"]


def test_an_unknown_or_malformed_id_is_one_line(store: str) -> None:
    run_panel(store)
    assert len(refused(store, "executions", "show", "ffff", match="no execution id starts with 'ffff'")) == 1
    assert len(refused(store, "executions", "show", "0", match="at least 4 characters")) == 1
    assert len(refused(store, "executions", "show", "xyz!", match="is not an id")) == 1


# --- topology update and delete; agent-type delete ---------------------------------------------


def test_topology_update_changes_only_what_is_given(store: str) -> None:
    updated = ok(store, "topology", "update", "panel", "--description", "two views", "--version", "1.1.0")
    assert (updated["description"], updated["version"]) == ("two views", "1.1.0")
    assert updated["config"] == {"aggregation_method": "vote"}
    changed = ok(store, "topology", "update", "panel", "--config", '{"aggregation_method": "concat"}')
    assert changed["config"] == {"aggregation_method": "concat"}
    before = snapshot(store)
    refused(store, "topology", "update", "panel", "--config", '{"aggregation_method": "loud"}', match="loud")
    refused(store, "topology", "update", "panel", match="nothing to change")
    refused(store, "topology", "update", "nope", "--description", "x", match="'nope' does not exist")
    assert snapshot(store) == before


def test_topology_delete_refuses_while_it_has_executions_unless_asked(store: str) -> None:
    run_panel(store, 3)
    before = snapshot(store)
    refused(store, "topology", "delete", "panel", match="'panel' has 3 execution(s); pass --with-executions")
    assert snapshot(store) == before
    assert ok(store, "topology", "delete", "solo") == {"deleted": "solo", "executions_deleted": 0}
    done = ok(store, "topology", "delete", "panel", "--with-executions")
    assert done == {"deleted": "panel", "executions_deleted": 3}
    after = snapshot(store)
    for kind in ("topologies", "executions", "messages", "results", "agent_instances"):
        assert after[kind] == [], kind
    assert len(after["agent_types"]) == 3


def test_topology_delete_refuses_a_sub_topology(store: str) -> None:
    ok(store, "topology", "add", "both", "--type", "compound", "--description", "b",
       "--config", '{"sub_topologies": ["solo"]}')  # fmt: skip
    before = snapshot(store)
    refused(store, "topology", "delete", "solo", match="sub-topology of compound 'both'")
    assert snapshot(store) == before


def test_agent_type_delete_says_what_uses_it(store: str) -> None:
    run_panel(store, 2)
    before = snapshot(store)
    lines = refused(store, "agent-type", "delete", "pro", match="'pro' is in use by 2 topology(ies)")
    assert "'panel', 'solo'" in lines[0]
    assert "2 agent instance(s)" in lines[0]
    assert snapshot(store) == before
    ok(store, "agent-type", "delete", "spare")
    assert [t["name"] for t in ok(store, "agent-type", "list")["items"]] == ["pro", "con"]


def test_agent_type_show_honours_table_and_json(store: str) -> None:
    shown = ok(store, "agent-type", "show", "pro")
    assert shown["name"] == "pro"
    table = cli(store, "agent-type", "show", "pro")
    assert table.exit_code == 0
    assert "config.temperature" in table.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(table.stdout)


# --- purge -----------------------------------------------------------------------------------


def test_purge_dry_run_lists_and_deletes_nothing(store: str) -> None:
    ids = run_panel(store, 2)
    before = snapshot(store)
    listed = ok(store, "executions", "purge", "--older-than", "0s", "--dry-run")
    assert listed["would_delete"] == 2
    assert [e["id"] for e in listed["items"]] == ids
    table = cli(store, "executions", "purge", "--older-than", "0s", "--dry-run")
    assert "2 execution(s) completed before" in table.stdout
    assert "dry run: nothing deleted" in table.stdout
    assert ids[0] in table.stdout
    assert snapshot(store) == before


def test_purge_asks_unless_yes(store: str) -> None:
    run_panel(store, 2)
    before = snapshot(store)
    declined = cli(store, "executions", "purge", "--older-than", "0s", input="n\n")
    assert declined.exit_code == 1
    assert "nothing deleted" in declined.stderr
    assert snapshot(store) == before
    assert cli(store, "executions", "purge", "--older-than", "0s", input="").exit_code != 0  # no answer
    assert snapshot(store) == before
    accepted = cli(store, "executions", "purge", "--older-than", "0s", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "2 execution(s) deleted" in accepted.stdout
    run_panel(store)
    assert ok(store, "executions", "purge", "--older-than", "0s", "--yes") == {"deleted": 1}
    assert snapshot(store)["executions"] == []


def test_purge_refuses_a_live_status_in_words(store: str) -> None:
    run_panel(store)
    before = snapshot(store)
    line = refused(
        store, "executions", "purge", "--older-than", "1d", "--status", "running", match="--status"
    )[0]
    assert "purge deletes only finished executions (cancelled, completed, failed)" in line
    for repr_marker in ("frozenset", "ExecutionStatus", "datetime", "{"):
        assert repr_marker not in line
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * 86400),
        ("12h", 12 * 3600),
        ("45min", 45 * 60),
        ("90s", 90),
        ("2w", 14 * 86400),
        ("1D", 86400),
    ],
)
def test_durations_with_units(text: str, seconds: int) -> None:
    assert parse_age(text, "--older-than").total_seconds() == seconds


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("5m", "ambiguous"),
        ("5", "a number and a unit"),
        ("5y", "unknown unit 'y'"),
        ("-1d", "number and a unit"),
    ],
)
def test_ambiguous_or_unknown_durations_are_refused(store: str, text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_age(text, "--older-than")
    run_panel(store)
    before = snapshot(store)
    refused(store, "executions", "purge", "--older-than", text, "--yes", match=match)
    refused(store, "executions", "list", "--since", text, match=match)
    assert snapshot(store) == before


# --- help, progress, export counts -----------------------------------------------------------


def _commands(group: TyperGroup, path: list[str]) -> list[list[str]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, TyperGroup):
            found += _commands(command, [*path, name])
        else:
            found.append([*path, name])
    return found


def test_help_keeps_brackets_and_shows_no_bool_placeholders() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    commands = _commands(root, [])
    assert ["topology", "delete"] in commands
    assert ["topology", "update"] in commands
    for command in commands:
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (command, result.output)
        assert "<bool>" not in result.output, command
        assert "list[str]" not in result.output, command
    add = runner.invoke(app, ["agent-type", "add", "--help"], env={"COLUMNS": "200"}).output
    assert "[a-z0-9_-]" in add
    assert "--capability NAME" in add
    assert "--json" in runner.invoke(app, ["--help"]).output


def test_progress_bars_name_kinds_in_plural_with_totals() -> None:
    assert progress.plural("topology") == "topologies"
    assert progress.plural("agent_type") == "agent types"
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with progress.bars(console, "exporting", {"topology": 7}) as advance:
        advance("topology", 3)
        console.print("")  # let the live display render at least once
    text = out.getvalue()
    assert "exporting topologies" in text
    assert "3/7" in text
    assert "topologys" not in text


def test_export_reports_real_counts_and_progress_totals(store: str, tmp_path: Path) -> None:
    run_panel(store, 2)
    dump = tmp_path / "dump.jsonl"
    summary = ok(store, "export", str(dump))
    trailer = json.loads(dump.read_text().splitlines()[-1])
    assert summary["counts"] == summary["written"] == trailer["counts"]
    assert summary["counts"]["execution"] == 2
    assert summary["counts"]["topology"] == 2
    assert progress.file_totals(dump) == trailer["counts"]

    async def totals() -> dict[str, int]:
        async with open_store(store) as opened:
            return await record_counts(opened)

    assert asyncio.run(totals()) == trailer["counts"]
    (tmp_path / "cut.jsonl").write_text("\n".join(dump.read_text().splitlines()[:-1]))
    assert progress.file_totals(tmp_path / "cut.jsonl") == {}
