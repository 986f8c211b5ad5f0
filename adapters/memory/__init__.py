"""The in-memory store: the reference implementation of the ports, for tests and demos."""

from .store import MemoryStore

__all__ = ["MemoryStore"]
