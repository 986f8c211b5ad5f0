"""The distribution's shape: a pure domain and a wheel holding only ``qmcp_agents``."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVERS = ("sqlalchemy", "alembic", "pymongo", "motor", "bson", "typer", "rich", "asyncpg", "aiosqlite")
TOP_LEVEL_IMPORTS = (
    "from domain",
    "import domain",
    "from adapters",
    "import adapters",
    "from sync",
    "import sync",
)
LLM_LIBRARIES = ("pydantic_ai", "openai", "anthropic", "httpx", "httpx2")


def test_importing_the_domain_loads_no_driver() -> None:
    code = (
        "import sys, qmcp_agents.domain, qmcp_agents.domain.ports, qmcp_agents.domain.services;"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout.split()
    )
    assert "pydantic" in loaded
    assert loaded.isdisjoint(DRIVERS), loaded & set(DRIVERS)
    assert loaded.isdisjoint(LLM_LIBRARIES), loaded & set(LLM_LIBRARIES)


def test_domain_source_never_imports_adapters() -> None:
    for path in (ROOT / "domain").rglob("*.py"):
        text = path.read_text()
        assert "adapters" not in {
            line.split()[1].split(".")[0].lstrip(".")
            for line in text.splitlines()
            if line.startswith(("import ", "from "))
        }, path


def test_package_sources_import_only_through_qmcp_agents() -> None:
    """``domain``/``adapters`` are not top-level packages once installed."""
    for folder in ("domain", "adapters", "testing", "sync"):
        for path in (ROOT / folder).rglob("*.py"):
            for line in path.read_text().splitlines():
                assert not line.startswith(TOP_LEVEL_IMPORTS), f"{path}: {line}"


@pytest.mark.slow
def test_wheel_contains_only_the_qmcp_agents_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("qmcp_agents-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"qmcp_agents", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    assert "qmcp_agents/domain/__init__.py" in names
    assert "qmcp_agents/domain/py.typed" in names
    assert "qmcp_agents/adapters/memory/__init__.py" in names
    assert "qmcp_agents/adapters/sql/migrations/script.py.mako" in names
    assert "qmcp_agents/adapters/sql/migrations/versions/0001_initial_schema.py" in names
    assert "qmcp_agents/domain/engine/engine.py" in names
    assert "qmcp_agents/adapters/llm/agent.py" in names
    assert "qmcp_agents/testing/conformance.py" in names
    assert "qmcp_agents/sync/__init__.py" in names
    assert "qmcp_agents/sync/py.typed" in names
    assert not any(name.startswith(("domain/", "adapters/", "tests/", "sync/")) for name in names)
