"""The conformance suite every store must pass, shipped so new adapters can run it.

Subclass :class:`StoreConformance` in a test module and say how to open a fresh, empty
store; pytest collects every test of the suite for your backend::

    from contextlib import asynccontextmanager
    from qmcp_agents.testing import StoreConformance

    class TestMyStore(StoreConformance):
        @asynccontextmanager
        async def make_store(self):
            async with MyStore(...) as store:
                await store.create_schema()
                yield store
                await store.drop_schema()

Needs ``pytest``, ``pytest-asyncio`` and ``hypothesis`` (the ``[dev]`` extra).
"""

from .conformance import StoreConformance

__all__ = ["StoreConformance"]
