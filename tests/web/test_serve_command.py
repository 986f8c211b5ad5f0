"""``qmcp-agents serve``: refusals before anything listens, and a real server answering."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from typer.testing import CliRunner

from qmcp_agents.adapters.cli.app import app

from .conftest import Filled

runner = CliRunner()


def test_serve_refuses_a_memory_store_and_an_open_host_without_a_token(tmp_path: Path) -> None:
    memory = runner.invoke(app, ["--store", "memory://", "serve"])
    assert memory.exit_code == 2
    assert "persistent store" in memory.stderr
    url = f"sqlite:///{tmp_path / 'x.db'}"
    open_host = runner.invoke(app, ["--store", url, "serve", "--host", "0.0.0.0"], env={"QMCP_WEB_TOKEN": ""})
    assert open_host.exit_code == 2
    assert "needs a token" in open_host.stderr
    assert len(open_host.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.db").exists()


def test_serve_answers_on_loopback(filled: Filled) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "qmcp_agents.adapters.cli.app",
        "--store",
        filled.url,
        "serve",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(
        [sys.executable, "-c", "from qmcp_agents.adapters.cli.app import entry; entry()", *command[3:]],
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                    assert answer.read() == b'{"status":"ok"}'
                    break
            except OSError:
                assert server.poll() is None, "serve exited"
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert str(filled.debate)[:8] in page.read().decode()
    finally:
        server.terminate()
        server.wait(timeout=10)
