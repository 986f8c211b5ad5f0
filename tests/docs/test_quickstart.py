"""docs/quickstart.md, followed literally: its code blocks run in order in a copy of the
checkout, as a new user would run them after cloning.

The copy shares this checkout's ``.venv`` (a symlink; ``make install`` finds it up to date,
so the test takes seconds rather than an install), and the shell starts without the venv on
PATH and without ``QMCP_STORE_URL``: the doc itself must say how ``qmcp-agents`` gets there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "quickstart.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SKIP = shutil.ignore_patterns(
    ".git", ".venv", ".venv-mongo", ".dev", "*.db", "*.db-*", "*.jsonl", "__pycache__",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis", "build", "*.egg-info",
)  # fmt: skip


def blocks(language: str) -> list[str]:
    return [code for lang, code in BLOCK.findall(DOC.read_text(encoding="utf-8")) if lang == language]


def checkout_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "qmcp-agents"
    shutil.copytree(ROOT, folder, ignore=SKIP, symlinks=True)
    venv = Path(sys.prefix)
    stamp = venv / ".installed"
    stale = not stamp.exists() or stamp.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime
    assert not stale, f"{venv} is not an up-to-date `make install` venv: run `make install` first"
    (folder / ".venv").symlink_to(venv, target_is_directory=True)
    return folder


def user_env(venv_bin: Path) -> dict[str, str]:
    """The environment of a shell that has not activated the venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("QMCP_STORE_URL", "VIRTUAL_ENV")}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != venv_bin.resolve()]
    env.update(PATH=os.pathsep.join(path), NO_COLOR="1", COLUMNS="120")
    return env


def test_the_quickstart_runs_as_written(tmp_path: Path) -> None:
    folder = checkout_copy(tmp_path)
    env = user_env(Path(sys.prefix) / "bin")
    assert shutil.which("qmcp-agents", path=env["PATH"]) is None  # only the doc's own steps put it there

    for code in blocks("python"):  # the library example
        done = subprocess.run(
            [str(folder / ".venv" / "bin" / "python"), "-c", code],
            cwd=folder, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "completed" in done.stdout

    commands = blocks("bash")
    assert any("make demo" in c for c in commands)
    script = "\n".join(
        [
            "set -euo pipefail",
            "trap 'echo \"quickstart command failed: $BASH_COMMAND\" >&2' ERR",
            *commands,
        ]
    )
    done = subprocess.run(
        ["bash", "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n--- stdout ---\n{done.stdout[-3000:]}"
    assert "Traceback" not in done.stderr

    # What the doc claims happened, happened: completed runs, an export, an import, a copy.
    assert done.stdout.count("completed") >= 4
    for made in ("quickstart.db", "qmcp-agents.db", "dump.jsonl", "restored.db", "copied.db"):
        assert (folder / made).exists(), made
