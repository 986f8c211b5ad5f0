"""docs/topologies.md lists every config key of every topology type with its real default."""

from __future__ import annotations

import json
from pathlib import Path

from qmcp_agents.domain.enums import TopologyType
from qmcp_agents.domain.topology_configs import CONFIG_TYPES

from .topologies_doc import NOTES, default_of, render

DOC = Path(__file__).resolve().parents[2] / "docs" / "topologies.md"


def test_the_doc_is_what_the_config_classes_generate() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/topologies.md is out of date; regenerate it:"
        " .venv/bin/python -m tests.docs.topologies_doc > docs/topologies.md"
    )


def test_every_type_and_every_key_is_documented_with_its_default() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert set(CONFIG_TYPES) == set(TopologyType)
    for kind, config_class in CONFIG_TYPES.items():
        section = text.split(f"(`{kind.value}`)", 1)[1].split("\n## ", 1)[0]
        for name, field in config_class.model_fields.items():
            row = next(line for line in section.splitlines() if line.startswith(f"| `{name}` |"))
            assert f"`{json.dumps(default_of(field))}`" in row, (kind, name, row)
            assert NOTES[(kind, name)].replace("|", "\\|") in row


def test_no_note_for_a_key_that_does_not_exist() -> None:
    keys = {(kind, name) for kind, config in CONFIG_TYPES.items() for name in config.model_fields}
    assert set(NOTES) == keys
