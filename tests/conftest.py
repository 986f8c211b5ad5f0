"""Shared test settings: Hypothesis profiles (no deadlines: this machine is shared and noisy),
Motor's thread pool, and the MongoDB tests kept on one pytest-xdist worker."""

from __future__ import annotations

import os

import pytest

# Motor runs every PyMongo call on a pool of cpu_count * 5 threads (10 here). The tests' wire
# server makes a transaction wait while another is open (tests/services/mongo_wire_server.py),
# and a waiting call holds its thread: with more waiting transactions than threads, the open
# one cannot send its next command and everything stalls until the server's 5 s limit, over
# and over (the conformance suite runs 24 concurrent transactions). A real MongoDB never makes
# a transaction wait, so this is the test server's need; set before Motor is imported.
os.environ.setdefault("MOTOR_MAX_WORKERS", "64")

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True, derandomize=False
)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "default")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``make test`` runs the suite on two pytest-xdist workers (``--dist loadgroup``): it
    waits on servers and subprocesses about half the time. Every MongoDB test goes to one
    of them: the tests' wire server makes a transaction wait while another is open, so
    MongoDB tests on two workers would wait on each other's transactions (a real MongoDB
    would not). A MongoDB test is one whose id or one of whose fixtures names MongoDB or Motor."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        names = [item.nodeid, *getattr(item, "fixturenames", ())]
        if any("mongo" in name.lower() or "motor" in name.lower() for name in names):
            item.add_marker(pytest.mark.xdist_group("mongodb"))
