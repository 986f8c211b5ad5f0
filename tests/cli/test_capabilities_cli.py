"""``capabilities list`` and capability errors on ``agent-type add``."""

from __future__ import annotations

from pathlib import Path

from .test_cli import cli, ok, refused


def test_capabilities_list_shows_names_versions_dependencies_and_defaults(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    rows = {row["name"]: row for row in ok(url, "capabilities", "list")}
    assert {"tool_use", "human_in_loop", "memory", "structured_output", "reasoning", "skills"} <= set(rows)
    assert rows["human_in_loop"]["depends_on"] == ["tool_use"]
    assert rows["memory"]["version"] == "1.0.0"
    fields = {f["name"]: f for f in rows["memory"]["config"]}
    assert fields["max_memories"]["default"] == 100
    assert fields["decay_half_life_hours"]["default"] == 24.0
    assert {f["name"]: f["required"] for f in rows["structured_output"]["config"]}["output_schema"] is True
    table = cli(url, "capabilities", "list")
    assert table.exit_code == 0
    assert "human_in_loop" in table.stdout
    assert "max_tool_calls_per_turn=5" in table.stdout
    assert not (tmp_path / "c.db").exists()  # listing capabilities never touches a store


def test_agent_type_add_reports_capability_errors_as_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    ok(url, "init")
    add = ("agent-type", "add", "x", "--role", "critic", "--description", "d")
    refused(url, *add, "--capability", "telepathy", match="unknown capability 'telepathy'; registered:")
    refused(url, *add, "--capability", "human_in_loop", match="depends on 'tool_use', which is missing")
    spec = tmp_path / "x.yaml"
    spec.write_text(
        "name: x\nrole: critic\ndescription: d\nconfig:\n  capabilities:\n"
        "    - name: memory\n      config: {max_memories: -3}\n"
    )
    refused(url, "agent-type", "add", "--file", str(spec), match="config.capabilities.0.config.max_memories")
    assert ok(url, "agent-type", "list")["items"] == []
    ok(url, *add, "--capability", "tool_use", "--capability", "human_in_loop", "--skill", "sql")
    (stored,) = ok(url, "agent-type", "list")["items"]
    assert [c["name"] for c in stored["config"]["capabilities"]] == ["tool_use", "human_in_loop", "skills"]
