"""The real HTTP path: an OpenAI-compatible ``/v1/chat/completions`` served on 127.0.0.1 by the
test itself, called through pydantic-ai's OpenAI chat model and the OpenAI SDK. Nothing
leaves the machine."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from qmcp_agents.adapters.llm import LLMAgent, check_topology
from qmcp_agents.domain import ExecutionStatus
from qmcp_agents.domain.engine import Engine
from qmcp_agents.domain.ports import Store
from qmcp_agents.testing.builders import register_topology

pytestmark = pytest.mark.asyncio


def tool_call(name: str, arguments: dict[str, Any], prompt: int, completion: int) -> dict[str, Any]:
    """A chat completion whose answer is one tool call, with the usage figures to report."""
    return {
        "id": f"chatcmpl-{name}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "local-model",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"call-{name}-{prompt}",
                            "type": "function",
                            "function": {"name": name, "arguments": json.dumps(arguments)},
                        }
                    ],
                },
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


@dataclass
class Served:
    """Canned answers, served in order (an int is an HTTP error status), and what came in."""

    answers: list[dict[str, Any] | int]
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def served() -> Iterator[Served]:
    state = Served(answers=[])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append({"path": self.path, **json.loads(body)})
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
            answer = state.answers.pop(0) if state.answers else 500
            if isinstance(answer, int):
                payload = json.dumps({"error": {"message": f"canned {answer}", "type": "canned"}}).encode()
                self.send_response(answer)
            else:
                payload = json.dumps(answer).encode()
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def solo(store: Store, served: Served, **config: Any) -> None:
    model = f"openai:local-model@{served.url}"
    await register_topology(
        store,
        "t",
        "pipeline",
        ["solo"],
        {"retry_failed_stages": False},
        agent_config={"solo": {"model": model, "system_prompt": "Be brief.", **config}},
    )


async def test_tokens_recorded_equal_the_usage_the_server_reported(any_store: Store, served: Served) -> None:
    await solo(any_store, served, temperature=0.3, max_tokens=123)
    served.answers = [
        tool_call("ask_human", {"question": "Which year?"}, 50, 7),
        tool_call("ask_human", {"question": "Which year?"}, 60, 8),
        tool_call("final_result", {"text": "It was 1969.", "answer": 1969, "confidence": 0.8}, 80, 20),
    ]
    agent = LLMAgent(env={"OPENAI_COMPATIBLE_API_KEY": "local-key"})
    assert [c.base_url for c in (await check_topology(any_store, "t", agent)).values()] == [served.url]
    engine = Engine(any_store, agent.lookup)

    paused = await engine.run("t", {"q": "When did people land on the moon?"})
    assert paused.status is ExecutionStatus.PAUSED, paused.error_details
    assert (await any_store.executions.get(paused.id)).metadata["awaiting_human"]["question"] == "Which year?"
    done = await engine.resume(paused.id, "the first landing")

    assert done.status is ExecutionStatus.COMPLETED, done.error_details
    (result,) = (await any_store.results.list(execution_id=done.id)).items
    assert result.output == {"text": "It was 1969.", "answer": 1969}
    assert result.confidence == 0.8
    assert result.token_usage == {"input": 60 + 80, "output": 8 + 20, "requests": 2, "tool_calls": 1}
    totals = (await any_store.executions.get(done.id)).metadata["token_usage"]
    assert totals == {"input": 50 + 60 + 80, "output": 7 + 8 + 20, "requests": 3, "tool_calls": 1}

    # What went over the wire: the config as request fields, instructions, tools and the answer.
    assert len(served.requests) == 3
    first = served.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["model"] == "local-model"
    assert first["temperature"] == 0.3
    assert first.get("max_tokens", first.get("max_completion_tokens")) == 123
    assert first["messages"][0]["role"] == "system"
    assert first["messages"][0]["content"].startswith("Be brief.")
    assert "When did people land on the moon?" in first["messages"][-1]["content"]
    assert {t["function"]["name"] for t in first["tools"]} == {"ask_human", "final_result"}
    assert all(h["authorization"] == "Bearer local-key" for h in served.headers)
    tool_reply = served.requests[2]["messages"][-1]
    assert tool_reply["role"] == "tool"
    assert tool_reply["content"] == "the first landing"


async def test_a_server_error_is_retried_once_per_attempt(store: Store, served: Served) -> None:
    await solo(store, served, max_retries=1)
    served.answers = [503, tool_call("final_result", {"text": "ok", "confidence": 0.5}, 10, 2)]
    run = await Engine(store, LLMAgent(env={}).lookup).run("t", {})
    assert run.status is ExecutionStatus.COMPLETED, run.error_details
    assert len(served.requests) == 2  # the SDK itself never retried: the engine's attempts did
    assert all(h["authorization"] == "Bearer api-key-not-set" for h in served.headers)


async def test_a_refused_key_is_reported_once_naming_the_variable(store: Store, served: Served) -> None:
    await solo(store, served, max_retries=3)
    served.answers = [401]
    run = await Engine(store, LLMAgent(env={}).lookup).run("t", {})
    assert run.status is ExecutionStatus.FAILED
    assert len(served.requests) == 1
    assert run.error_details is not None
    (error,) = run.error_details["errors"]
    assert "agent type 'solo', model 'local-model@http://127.0.0.1:" in error
    assert "check OPENAI_COMPATIBLE_API_KEY" in error
