"""``qmcp-agents run --llm`` and ``demo --llm``: offline with ``--model test``, and refusals
that name what to set and store nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from qmcp_agents.adapters.cli.demo import INPUTS, TOPOLOGIES
from tests.cli.test_cli import cli, ok, refused


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'llm-cli.db'}"


def counts(store_url: str) -> dict[str, int]:
    """How much the store holds (first pages are enough for these small stores)."""
    executions = ok(store_url, "executions", "list", "--limit", "1000")["items"]
    return {
        "agent_types": len(ok(store_url, "agent-type", "list", "--limit", "1000")["items"]),
        "topologies": len(ok(store_url, "topology", "list", "--limit", "1000")["items"]),
        "executions": len(executions),
    }


def demo(store_url: str, *options: str) -> list[dict[str, Any]]:
    """``demo`` with ``options``; its JSON documents, one per topology run."""
    result = cli(store_url, "demo", *options, json_output=True)
    assert result.exit_code == 0, result.output
    decoder, text, documents = json.JSONDecoder(), result.stdout, []
    index = 0
    while text[index:].strip():
        document, index = decoder.raw_decode(text, len(text) - len(text[index:].lstrip()))
        documents.append(document)
    return documents


@pytest.mark.parametrize("topology", [t.name for t in TOPOLOGIES])
def test_run_each_demo_topology_with_the_offline_model(store_url: str, topology: str) -> None:
    demo(store_url)  # registers the demo's agent types and topologies
    given = json.dumps(INPUTS[topology])
    result = ok(store_url, "run", topology, "--input", given, "--llm", "--model", "test")
    assert result["status"] == "completed", result
    shown = ok(store_url, "executions", "show", result["id"])
    results: list[dict[str, Any]] = shown["results"]
    assert results
    for answered in results:
        usage = answered["token_usage"]
        assert usage["requests"] == 1
        assert usage["input"] > 0
        assert usage["output"] > 0
        assert answered["output"]["answer"] == 1  # what the offline model answers
    totals = shown["execution"]["metadata"]["token_usage"]
    assert totals["requests"] == len(results)
    assert totals["input"] == sum(r["token_usage"]["input"] for r in results)


def test_demo_with_the_offline_model(store_url: str) -> None:
    runs = [shown["execution"] for shown in demo(store_url, "--llm", "--model", "test")]
    assert [r["status"] for r in runs] == ["completed"] * 3
    assert all(r["metadata"]["token_usage"]["requests"] > 0 for r in runs)


def test_without_a_key_run_exits_2_naming_the_variable_and_stores_nothing(store_url: str) -> None:
    demo(store_url)
    before = counts(store_url)
    refused(store_url, "run", "proposal-debate", "--llm", match="set ANTHROPIC_API_KEY")
    refused(store_url, "run", "forecast-ensemble", "--llm", "--model", "gpt-4o", match="set OPENAI_API_KEY")
    assert counts(store_url) == before


def test_without_a_key_demo_registers_nothing(store_url: str) -> None:
    ok(store_url, "init")
    refused(store_url, "demo", "--llm", match="set ANTHROPIC_API_KEY")
    assert counts(store_url) == {"agent_types": 0, "topologies": 0, "executions": 0}


def test_model_without_llm_and_llm_with_agents_are_refused(store_url: str, tmp_path: Path) -> None:
    demo(store_url)
    before = counts(store_url)
    refused(store_url, "run", "proposal-debate", "--model", "test", match="add --llm")
    agents = tmp_path / "agents.yaml"
    agents.write_text("optimist: [{output: {answer: 1}}]\n")
    refused(store_url, "run", "proposal-debate", "--llm", "--agents", str(agents), match="give one of them")
    refused(store_url, "demo", "--model", "test", match="add --llm")
    assert counts(store_url) == before


def test_the_results_table_counts_tokens_not_requests(store_url: str) -> None:
    (run,) = [d["execution"] for d in demo(store_url, "--llm", "--model", "test")][2:]
    shown = ok(store_url, "executions", "show", run["id"])
    usage = shown["results"][0]["token_usage"]
    pretty = cli(store_url, "executions", "show", run["id"]).stdout
    found = re.search(r"forecaster\s+│\s+0\.75\s+│\s+(\d+)\s+│", pretty)
    assert found is not None, pretty
    assert int(found.group(1)) == usage["input"] + usage["output"]
