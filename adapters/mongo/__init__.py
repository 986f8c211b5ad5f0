"""MongoDB adapter on PyMongo's async client (Motor database handles accepted)."""

from .store import MongoStore

__all__ = ["MongoStore"]
