"""Every file under examples/ loads, and every example topology runs to completion through
the command with its scripted agents (one topology per type, every slot with an agent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from qmcp_agents.adapters.cli.app import app
from qmcp_agents.adapters.cli.files import load_agents, read_document
from qmcp_agents.domain import AgentTypeCreate, TopologyCreate, TopologyType

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
runner = CliRunner()


def cli(store: str, *args: str) -> Any:
    result = runner.invoke(app, ["--store", store, "--json", *args])
    assert result.exit_code == 0, (args, result.output)
    return json.loads(result.stdout)


def topologies() -> dict[str, TopologyCreate]:
    files = sorted((EXAMPLES / "topologies").glob("*.yaml"))
    return {t.name: t for t in (TopologyCreate.model_validate(read_document(f)) for f in files)}


def test_every_file_loads() -> None:
    for path in sorted((EXAMPLES / "agent-types").glob("*.yaml")):
        AgentTypeCreate.model_validate(read_document(path))
    assert {t.topology_type for t in topologies().values()} == set(TopologyType)
    assert len(topologies()) == len(TopologyType)  # one file per type
    for path in sorted((EXAMPLES / "agents").glob("*.yaml")):
        assert load_agents(path)
    for path in sorted((EXAMPLES / "inputs").glob("*.json")):
        assert isinstance(json.loads(path.read_text()), dict)
    for path in EXAMPLES.rglob("*.yaml"):
        yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('examples') / 'examples.db'}"
    cli(url, "init")
    for path in sorted((EXAMPLES / "agent-types").glob("*.yaml")):
        cli(url, "agent-type", "add", "-f", str(path))
    for path in sorted((EXAMPLES / "topologies").glob("*.yaml")):  # numbered: subs before the compound
        cli(url, "topology", "add", "-f", str(path))
    return url


def _slots(store: str, name: str) -> set[str]:
    shown = cli(store, "topology", "show", name)
    slots = {m["slot_name"] for m in shown["memberships"]}
    for sub in shown["config"].get("sub_topologies", []):
        slots |= _slots(store, sub)
    return slots


@pytest.mark.parametrize("name", sorted(topologies()))
def test_every_slot_has_an_agent_and_the_topology_completes(store: str, name: str) -> None:
    agents = EXAMPLES / "agents" / f"{name}.yaml"
    scripted = set(load_agents(agents))
    assert _slots(store, name) <= scripted, f"{agents} lacks agents for {_slots(store, name) - scripted}"
    data = (EXAMPLES / "inputs" / f"{name}.json").read_text()
    result = cli(store, "run", name, "--input", data, "--agents", str(agents))
    assert result["status"] == "completed", result
    assert result["error"] is None
