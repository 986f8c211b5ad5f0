"""Every page and API route of the web view, on a demo-filled SQLite store."""

from __future__ import annotations

import re
from pathlib import Path
from uuid import uuid4

import pytest
from starlette.testclient import TestClient

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.cli import demo
from qmcp_agents.adapters.web import create_app
from qmcp_agents.domain import ExecutionStatus
from qmcp_agents.domain.engine import Engine

from .conftest import HOSTILE, Filled, add_running_message


def test_executions_page_lists_every_execution_with_copyable_ids(client: TestClient, filled: Filled) -> None:
    page = client.get("/")
    assert page.status_code == 200
    for execution_id in (filled.debate, filled.pipeline, filled.ensemble, filled.paused):
        assert f'href="/executions/{execution_id}"' in page.text
        assert f">{str(execution_id)[:8]}</a>" in page.text
    assert page.text.count('class="execution-row') == 6
    api = client.get("/api/executions").json()
    assert {e["id"] for e in api["items"]} >= {str(filled.debate), str(filled.running)}
    assert api["next_cursor"] is None


def test_executions_filters_and_paging(client: TestClient, filled: Filled) -> None:
    paused = client.get("/api/executions?status=paused").json()["items"]
    assert [e["id"] for e in paused] == [str(filled.paused)]
    debate = client.get("/api/executions?topology=proposal-debate").json()["items"]
    assert [e["id"] for e in debate] == [str(filled.debate)]
    assert client.get("/api/executions?since=1d").json()["items"]
    assert client.get("/api/executions?since=2999-01-01").json()["items"] == []
    page = client.get("/?status=completed")
    assert page.text.count('class="execution-row') == 4
    assert 'option value="completed" selected' in page.text


@pytest.mark.asyncio
async def test_executions_keyset_paging_follows_next_cursor(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'many.db'}"
    async with open_store(url) as store:
        await store.create_schema()
        for name, agents in await demo.prepare(store):
            if name == "forecast-ensemble":
                for _ in range(55):
                    await Engine(store, agents).run(name, demo.INPUTS[name])
    with TestClient(create_app(url=url)) as client:
        first = client.get("/api/executions").json()
        assert len(first["items"]) == 50
        assert first["next_cursor"]
        second = client.get("/api/executions", params={"after": first["next_cursor"]}).json()
        assert len(second["items"]) == 5
        assert second["next_cursor"] is None
        assert not {e["id"] for e in first["items"]} & {e["id"] for e in second["items"]}
        html = client.get("/")
        link = re.search(r'id="next-page" href="\?([^"]+)"', html.text)
        assert link is not None
        assert client.get("/?" + link.group(1).replace("&amp;", "&")).text.count('class="execution-row') == 5


def test_execution_page_shows_transcript_results_chart_tokens(client: TestClient, filled: Filled) -> None:
    page = client.get(f"/executions/{filled.debate}")
    assert page.status_code == 200
    assert page.text.count('class="message type-') >= 5
    assert "optimist → " in page.text
    assert "judge" in page.text
    assert f'data="/executions/{filled.debate}/chart.svg"' in page.text
    chart = client.get(f"/executions/{filled.debate}/chart.svg")
    assert chart.headers["content-type"].startswith("image/svg+xml")
    assert chart.text.count("<circle") == 5
    assert "round 1" in chart.text
    assert "round 2" in chart.text
    series = client.get(f"/api/executions/{filled.debate}/chart").json()["series"]
    assert {s["agent"] for s in series} == {"optimist", "skeptic", "judge"}
    ensemble = client.get(f"/api/executions/{filled.ensemble}").json()
    assert ensemble["tokens"]["input"] > 0
    assert len(ensemble["results"]) == 3
    assert client.get(f"/api/executions/{filled.ensemble}/chart").json()["series"]
    pipeline = client.get(f"/executions/{filled.pipeline}").text
    assert "Pipeline checkpoint" in pipeline


def test_paused_execution_shows_its_question(client: TestClient, filled: Filled) -> None:
    page = client.get(f"/executions/{filled.paused}")
    assert 'id="awaiting"' in page.text
    assert "Which colour?" in page.text


def test_hostile_content_is_escaped_everywhere(client: TestClient, filled: Filled) -> None:
    for path in (f"/executions/{filled.hostile}", "/", "/topologies", "/agent-types"):
        text = client.get(path).text
        assert "<script>alert" not in text
        assert "<img src=x" not in text
    text = client.get(f"/executions/{filled.hostile}").text
    assert "&lt;script&gt;" in text
    api = client.get(f"/api/executions/{filled.hostile}").json()
    assert HOSTILE in str(api["messages"])  # JSON carries it as data, unchanged


def test_missing_and_malformed_ids(client: TestClient) -> None:
    ghost = uuid4()
    missing = client.get(f"/executions/{ghost}")
    assert missing.status_code == 404
    assert str(ghost) in missing.text
    assert "Traceback" not in missing.text
    bad = client.get("/executions/not-a-uuid")
    assert bad.status_code == 400
    assert "not an execution id" in bad.text
    assert client.get("/api/executions/not-a-uuid").json()["status"] == 400
    assert client.get(f"/api/executions/{uuid4()}").status_code == 404
    assert client.get("/nowhere").status_code == 404
    assert client.get("/?status=exploded").status_code == 400
    assert client.get("/?since=yesterday").status_code == 400
    assert client.get("/?topology=nope").status_code == 400
    assert client.get("/?after=forged").status_code == 400
    assert client.get(f"/api/executions/{uuid4()}/messages?since=x").status_code == 400


def test_topologies_and_agent_types(client: TestClient) -> None:
    page = client.get("/topologies").text
    assert "proposal-debate" in page
    assert "research" in page
    assert "max_rounds" in page
    api = {t["name"]: t for t in client.get("/api/topologies").json()}
    assert api["proposal-debate"]["config"]["max_rounds"] == 2
    assert api["proposal-debate"]["config"]["consensus_method"]  # defaults filled in
    assert [m["slot"] for m in api["article-pipeline"]["members"]] == ["research", "write", "edit"]
    types = {t["name"] for t in client.get("/api/agent-types").json()}
    assert {"optimist", "judge", "mallory"} <= types
    assert "forecaster" in client.get("/agent-types").text


@pytest.mark.asyncio
async def test_live_messages_after_a_sequence_number(client: TestClient, filled: Filled) -> None:
    before = client.get(f"/api/executions/{filled.running}/messages?since=0").json()
    assert before == {"status": "running", "final": False, "messages": []}
    page = client.get(f"/executions/{filled.running}").text
    assert 'data-live="true"' in page
    await add_running_message(filled.url, filled.running, {"note": "first"})
    await add_running_message(filled.url, filled.running, {"note": "second"})
    fresh = client.get(f"/api/executions/{filled.running}/messages?since=1").json()
    assert [m["content"] for m in fresh["messages"]] == [{"note": "second"}]
    assert 'data-live="false"' in client.get(f"/executions/{filled.debate}").text


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_the_token_is_required_on_every_route(filled: Filled) -> None:
    with TestClient(create_app(url=filled.url, token="s3cret"), raise_server_exceptions=False) as client:
        for path in ("/", "/healthz", "/api/executions", f"/executions/{filled.debate}", "/static/style.css"):
            assert client.get(path).status_code == 401, path
        assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        first = client.get("/?token=s3cret")
        assert first.status_code == 200
        assert client.get("/topologies").status_code == 200  # the cookie carries it on
    with TestClient(create_app(url=filled.url), raise_server_exceptions=False) as open_client:
        assert open_client.get("/").status_code == 200


def test_no_route_writes(client: TestClient, filled: Filled) -> None:
    for path in ("/", "/api/executions", f"/api/executions/{filled.debate}"):
        assert client.post(path).status_code == 405
        assert client.delete(path).status_code == 405


def test_static_files_are_served(client: TestClient) -> None:
    assert "poll" in client.get("/static/live.js").text
    assert client.get("/static/style.css").status_code == 200


@pytest.mark.parametrize("store_status", [ExecutionStatus.COMPLETED])
def test_status_badges(client: TestClient, store_status: ExecutionStatus) -> None:
    assert f'class="badge {store_status.value}"' in client.get("/").text
