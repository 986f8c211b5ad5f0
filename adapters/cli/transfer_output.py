"""What ``import`` and ``copy`` print about how they wrote (issue 13).

Where the target has transactions the whole write is one, and a failure leaves the target
as it was; where it has none (MongoDB standalone) the command says what a failure would
have left and that rerunning completes it, so the user knows before it matters.
"""

from __future__ import annotations

from typing import Any

from qmcp_agents.adapters.transfer import Summary

NOT_ATOMIC = (
    "this store has no transactions: had the write failed half-way, the records written "
    "before the failure would have stayed, and rerunning the same command completes it"
)


def atomicity(summary: Summary) -> str:
    """The end of the command's line: nothing when it wrote in one transaction."""
    return "" if summary.atomic else f" (note: {NOT_ATOMIC})"


def as_json(summary: Summary) -> dict[str, Any]:
    return {
        "counts": summary.counts,
        "written": summary.written,
        "checksum": summary.checksum,
        "atomic": summary.atomic,
    }


__all__ = ["NOT_ATOMIC", "as_json", "atomicity"]
