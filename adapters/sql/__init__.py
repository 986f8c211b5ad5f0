"""SQLAlchemy Core adapter for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from .store import SqlStore

__all__ = ["SqlStore"]
