"""Shared test settings: Hypothesis profiles (no deadlines: this machine is shared and noisy),
Motor's thread pool, and a MongoDB wire server per pytest-xdist worker."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# Motor runs every PyMongo call on a pool of cpu_count * 5 threads (10 here). The tests' wire
# server makes a transaction wait while another is open (tests/services/mongo_wire_server.py),
# and a waiting call holds its thread: with more waiting transactions than threads, the open
# one cannot send its next command and everything stalls until the server's 5 s limit, over
# and over (the conformance suite runs 24 concurrent transactions). A real MongoDB never makes
# a transaction wait, so this is the test server's need; set before Motor is imported.
os.environ.setdefault("MOTOR_MAX_WORKERS", "64")

# tests/run-with-services starts QMCP_TEST_MONGODB_SERVERS wire servers; pytest-xdist worker
# gwN takes the N-th (set before any test module reads QMCP_TEST_MONGODB_URL).
_MONGODB_URLS = os.environ.get("QMCP_TEST_MONGODB_URLS", "").split()
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_OWN_MONGODB_SERVER = bool(_XDIST_WORKER) and len(_MONGODB_URLS) >= _XDIST_WORKERS
if _OWN_MONGODB_SERVER:
    os.environ["QMCP_TEST_MONGODB_URL"] = _MONGODB_URLS[int(_XDIST_WORKER.removeprefix("gw"))]

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True, derandomize=False
)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "default")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``make test`` runs the suite on two pytest-xdist workers (``--dist loadgroup``): it
    waits on servers and subprocesses about half the time. The tests' MongoDB wire server
    makes a transaction wait while another is open, so two workers must not share one (a
    real MongoDB would not mind): each gets its own (``_OWN_MONGODB_SERVER``), and where
    there are fewer servers than workers, every MongoDB test (one whose id or one of whose
    fixtures names MongoDB or Motor) goes to one worker, one at a time."""
    if not config.pluginmanager.hasplugin("xdist") or _OWN_MONGODB_SERVER:
        return
    for item in items:
        names = [item.nodeid, *getattr(item, "fixturenames", ())]
        if any("mongo" in name.lower() or "motor" in name.lower() for name in names):
            item.add_marker(pytest.mark.xdist_group("mongodb"))
