"""``qmcp-agents capabilities list``: what agent types may name in ``config.capabilities``."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from qmcp_agents.domain.capabilities import registry


def describe() -> list[dict[str, Any]]:
    """Every registered capability in dependency order, with its config fields."""
    return [
        {
            "name": definition.name,
            "version": definition.version,
            "depends_on": list(definition.depends_on),
            "description": definition.description,
            "config": definition.config_fields(),
        }
        for definition in (registry.get(name) for name in registry.resolve())
    ]


def register(app: typer.Typer) -> None:
    capabilities_app = typer.Typer(help="The capabilities agent types can use.", no_args_is_help=True)
    app.add_typer(capabilities_app, name="capabilities")

    @capabilities_app.command("list")
    def capabilities_list() -> None:
        """Names, versions, dependencies and config fields (with defaults) of every capability."""
        from .app import console, emit  # the command's shared output helpers

        rows = describe()

        def pretty(_: Any) -> None:
            table = Table("capability", "version", "depends on", "config fields (default)")
            for row in rows:
                fields = ", ".join(
                    f"{f['name']}" + (" (required)" if f["required"] else f"={f['default']!r}")
                    for f in row["config"]
                )
                table.add_row(row["name"], row["version"], ", ".join(row["depends_on"]) or "-", fields)
            console().print(table)

        emit(rows, pretty)
