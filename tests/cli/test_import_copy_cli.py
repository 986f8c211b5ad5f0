"""``import`` and ``copy`` refuse in one line, exit 2, and leave the target as it was --
not even creating a SQLite file for a refused import (issue 13)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from qmcp_agents.adapters.cli.transfer_output import NOT_ATOMIC, atomicity
from qmcp_agents.adapters.transfer import Summary
from tests.cli.test_cli import ok, refused, setup_store


def test_a_damaged_export_creates_no_store(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    setup_store(source, tmp_path)
    ok(source, "run", "debate")
    export = tmp_path / "a.jsonl"
    ok(source, "export", str(export))
    lines = export.read_text().splitlines()
    half = tmp_path / "half.jsonl"
    half.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    target = tmp_path / "new.db"
    refused(f"sqlite:///{target}", "import", str(half), match="ends without its trailer")
    assert not target.exists()


def test_an_export_clashing_with_other_entities_is_refused_naming_both(tmp_path: Path) -> None:
    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    for url, names, topology in ((a, ["alpha"], "ta"), (b, ["beta", "gamma"], "tb")):
        ok(url, "init")
        for name in names:
            ok(url, "agent-type", "add", name, "--role", "specialist", "--description", name)
        agents = [part for name in names for part in ("--agent", name)]
        ok(url, "topology", "add", topology, "--type", "chain", "--description", "t", *agents)
    ok(a, "run", "ta")
    export = tmp_path / "a.jsonl"
    ok(a, "export", str(export))
    before = ok(b, "export", str(tmp_path / "b-before.jsonl"))
    refused(
        b,
        "import",
        str(export),
        match="conflict: the target's agent_type 1 'beta' is not the export's agent_type 1 'alpha'",
    )
    after = ok(b, "export", str(tmp_path / "b-after.jsonl"))
    assert (after["counts"], after["checksum"]) == (before["counts"], before["checksum"])
    assert ok(b, "executions", "list")["items"] == []


def test_a_copy_whose_source_breaks_the_domain_touches_no_target(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    setup_store(source, tmp_path)
    ok(source, "run", "debate")
    with sqlite3.connect(tmp_path / "a.db") as conn:
        conn.execute("UPDATE qmcp_messages SET round_number = 2147483648")
    target = tmp_path / "b.db"
    refused(source, "copy", "--from", source, "--to", f"sqlite:///{target}", match="round_number")
    assert not target.exists()


def test_the_output_says_whether_the_write_was_one_transaction(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    setup_store(source, tmp_path)
    export = tmp_path / "a.jsonl"
    ok(source, "export", str(export))
    imported = ok(f"sqlite:///{tmp_path / 'b.db'}", "import", str(export))
    assert imported["atomic"] is True
    assert atomicity(Summary(atomic=True)) == ""
    assert NOT_ATOMIC in atomicity(Summary(atomic=False))
    assert "rerunning the same command completes it" in NOT_ATOMIC
    assert json.loads(export.read_text().splitlines()[-1])["kind"] == "end"
