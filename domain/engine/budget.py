"""What a run spends (tokens, requests, tool calls, running time) and the limits on it.

The totals live in the execution's ``metadata`` (keys below), written with every status
move the engine makes, so ``executions show`` and any reader of the execution see them on
every backend without a schema change:

* ``token_usage``: ``{"input", "output", "requests", "tool_calls"}`` (and any other key an
  agent reports), summed over every reply of the run, including replies that asked a
  person a question, and over a compound's child executions. Replayed calls cost nothing.
* ``limits``: ``{"token_budget", "time_limit_seconds"}`` as the run was started with; a
  resumed run keeps them.
* ``running_seconds``: time spent running (paused time excluded), across resumes.

``token_budget`` caps ``input + output`` tokens; ``time_limit_seconds`` caps running time.
Going over either fails the run with ``error_details["limit"]`` naming it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .failures import TopologyFailed

TOKEN_KEYS = ("input", "output", "requests", "tool_calls")
USAGE_KEY = "token_usage"
LIMITS_KEY = "limits"
RUNNING_KEY = "running_seconds"
TOKEN_BUDGET = "token_budget"
TIME_LIMIT = "time_limit_seconds"


def empty_usage() -> dict[str, int]:
    return dict.fromkeys(TOKEN_KEYS, 0)


def add_usage(total: dict[str, int], more: Mapping[str, Any] | None) -> None:
    """Add an agent's reported usage to ``total`` (ints only; anything else is not a count)."""
    for key, value in (more or {}).items():
        if isinstance(key, str) and type(value) is int and value >= 0:
            total[key] = total.get(key, 0) + value


def tokens_of(usage: Mapping[str, int]) -> int:
    """The tokens a budget counts: input plus output."""
    return int(usage.get("input", 0)) + int(usage.get("output", 0))


def usage_of(metadata: Mapping[str, Any]) -> dict[str, int]:
    """An execution's recorded totals (zeros if it has none yet)."""
    total = empty_usage()
    recorded = metadata.get(USAGE_KEY)
    add_usage(total, recorded if isinstance(recorded, Mapping) else None)
    return total


class LimitExceeded(TopologyFailed):
    """The run went over its token budget or its time limit."""

    def __init__(self, limit: str, allowed: float, used: float) -> None:
        what = "tokens (input + output)" if limit == TOKEN_BUDGET else "seconds of running time"
        super().__init__(
            f"{limit} exceeded: the run used {used:g} {what}, the limit is {allowed:g}",
            {"limit": limit, limit: allowed, "used": used},
        )
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Limits:
    """A run's caps; None means no cap."""

    token_budget: int | None = None
    time_limit_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.token_budget is not None and (type(self.token_budget) is not int or self.token_budget < 0):
            raise ValueError(f"token_budget must be an int >= 0, got {self.token_budget!r}")
        seconds = self.time_limit_seconds
        if seconds is not None and (not isinstance(seconds, int | float) or not seconds > 0):
            raise ValueError(f"time_limit_seconds must be a number > 0, got {seconds!r}")

    def to_json(self) -> dict[str, Any]:
        return {TOKEN_BUDGET: self.token_budget, TIME_LIMIT: self.time_limit_seconds}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Limits:
        stored = metadata.get(LIMITS_KEY) or {}
        return cls(stored.get(TOKEN_BUDGET), stored.get(TIME_LIMIT))


@dataclass
class Budget:
    """One drive of an execution: what it has spent so far, against its limits."""

    limits: Limits = field(default_factory=Limits)
    usage: dict[str, int] = field(default_factory=empty_usage)
    earlier_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def running_seconds(self) -> float:
        return self.earlier_seconds + (time.monotonic() - self.started)

    def remaining_seconds(self) -> float | None:
        if self.limits.time_limit_seconds is None:
            return None
        return self.limits.time_limit_seconds - self.running_seconds()

    def remaining_tokens(self) -> int | None:
        if self.limits.token_budget is None:
            return None
        return max(0, self.limits.token_budget - tokens_of(self.usage))

    def add(self, usage: Mapping[str, Any] | None) -> None:
        add_usage(self.usage, usage)

    def check_tokens(self) -> None:
        """Raise :class:`LimitExceeded` once the run has spent more than its budget."""
        budget = self.limits.token_budget
        if budget is not None and tokens_of(self.usage) > budget:
            raise LimitExceeded(TOKEN_BUDGET, budget, tokens_of(self.usage))

    def over_time(self) -> LimitExceeded:
        seconds = self.limits.time_limit_seconds
        assert seconds is not None
        return LimitExceeded(TIME_LIMIT, seconds, round(self.running_seconds(), 3))

    def exceeded(self, limit: str) -> LimitExceeded:
        """This run's own figures for ``limit`` (a child hit it: so has its parent)."""
        if limit == TOKEN_BUDGET and self.limits.token_budget is not None:
            return LimitExceeded(TOKEN_BUDGET, self.limits.token_budget, tokens_of(self.usage))
        return self.over_time()

    def child_limits(self) -> Limits:
        """What a child execution may still spend: the rest of this run's budget and time."""
        remaining = self.remaining_seconds()
        return Limits(self.remaining_tokens(), None if remaining is None else max(remaining, 1e-3))

    def record(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """``metadata`` with this drive's totals and running time written in."""
        out = {**metadata, USAGE_KEY: dict(self.usage), RUNNING_KEY: round(self.running_seconds(), 3)}
        if self.limits != Limits():
            out[LIMITS_KEY] = self.limits.to_json()
        return out


__all__ = [
    "LIMITS_KEY",
    "RUNNING_KEY",
    "TIME_LIMIT",
    "TOKEN_BUDGET",
    "TOKEN_KEYS",
    "USAGE_KEY",
    "Budget",
    "LimitExceeded",
    "Limits",
    "add_usage",
    "empty_usage",
    "tokens_of",
    "usage_of",
]
