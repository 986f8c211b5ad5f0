"""Shared test settings: Hypothesis profiles (no deadlines: this machine is shared and noisy),
and Motor's thread pool."""

from __future__ import annotations

import os

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
