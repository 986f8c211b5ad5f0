"""README.md's tour, followed literally: its Python block saved as ``tour.py`` and run, then
its command block, in a copy of the checkout (see test_quickstart for the set-up)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from .test_quickstart import ROOT, checkout_copy, user_env

BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    blocks = BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    python = [code for lang, code in blocks if lang == "python"]
    commands = [code for lang, code in blocks if lang == "bash" and "QMCP_STORE_URL" in code]
    assert len(python) == 1
    assert "tour.py" in python[0]
    assert len(commands) == 1
    folder = checkout_copy(tmp_path)
    env = user_env(Path(sys.prefix) / "bin")
    assert shutil.which("qmcp-agents", path=env["PATH"]) is None
    (folder / "tour.py").write_text(python[0], encoding="utf-8")

    toured = subprocess.run(
        [str(folder / ".venv" / "bin" / "python"), "tour.py"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert toured.returncode == 0, toured.stderr
    assert toured.stdout.startswith("completed")

    script = "\n".join(["set -euo pipefail", commands[0]])
    done = subprocess.run(
        ["bash", "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n--- stdout ---\n{done.stdout[-3000:]}"
    assert "Traceback" not in done.stderr
    assert "review" in done.stdout
    assert done.stdout.count("completed") >= 2
    assert (folder / "agents-copy.db").exists()
