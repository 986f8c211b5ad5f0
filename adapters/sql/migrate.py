"""Alembic, driven programmatically on a connection the store already holds."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from .schema import VERSION_TABLE, metadata

SCRIPT_LOCATION = "qmcp_agents.adapters.sql:migrations"


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


def current_revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def drop_all(connection: Connection) -> None:
    metadata.drop_all(connection)
    connection.execute(text(f"DROP TABLE IF EXISTS {VERSION_TABLE}"))


def unknown_revision(connection: Connection) -> str | None:
    """The database's revision if this release's migrations do not include it (a newer
    release wrote it), else None."""
    current = current_revision(connection)
    if current is None:
        return None
    scripts = ScriptDirectory.from_config(alembic_config(connection))
    try:
        known = scripts.get_revision(current)
    except Exception:  # alembic raises several types for an unknown revision
        return current
    return None if known is not None else current
