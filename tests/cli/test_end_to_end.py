"""The installed ``qmcp-agents`` command as a person runs it, from init to a second store."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from qmcp_agents.adapters import open_store
from qmcp_agents.testing.inspect import dump_store

COMMAND = shutil.which("qmcp-agents", path=str(Path(sys.executable).parent)) or "qmcp-agents"


def run(folder: Path, *args: str, store: str | None = None) -> str:
    env = {**os.environ, "NO_COLOR": "1"}
    if store is not None:
        env["QMCP_STORE_URL"] = store
    done = subprocess.run([COMMAND, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


async def _dumps(first: str, second: str) -> tuple[object, object]:
    async with open_store(first) as a, open_store(second) as b:
        return await dump_store(a), await dump_store(b)


def test_installed_command_round_trip(tmp_path: Path) -> None:
    run(tmp_path, "init")  # the default store: ./qmcp-agents.db
    assert (tmp_path / "qmcp-agents.db").exists()
    run(tmp_path, "agent-type", "add", "scout", "--role", "executor", "--description", "looks around")
    run(tmp_path, "agent-type", "add", "critic", "--role", "critic", "--description", "finds flaws")
    run(
        tmp_path,
        "topology",
        "add",
        "panel",
        "--type",
        "ensemble",
        "--description",
        "two views",
        "--config",
        '{"aggregation_method": "concat"}',
        "--agent",
        "scout",
        "--agent",
        "critic",
    )
    result = json.loads(run(tmp_path, "--json", "run", "panel", "--input", '{"task": "look"}'))
    assert result["status"] == "completed"
    listing = json.loads(run(tmp_path, "--json", "executions", "list"))
    assert [e["id"] for e in listing["items"]] == [result["id"]]
    shown = run(tmp_path, "executions", "show", result["id"])
    assert "round 0" in shown
    assert "scout" in shown
    run(tmp_path, "export", "dump.jsonl")
    second = f"sqlite:///{tmp_path / 'second.db'}"
    run(tmp_path, "import", "dump.jsonl", store=second)
    original, imported = asyncio.run(_dumps(f"sqlite:///{tmp_path / 'qmcp-agents.db'}", second))
    assert original == imported
