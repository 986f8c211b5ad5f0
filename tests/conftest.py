"""Shared test settings: Hypothesis profiles (no deadlines: this machine is shared and noisy)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True, derandomize=False
)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "default")
