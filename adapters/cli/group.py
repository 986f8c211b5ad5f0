"""The root command group: global options people put after the subcommand still count.

``qmcp-agents executions list --json`` is how most command lines are typed (git, kubectl,
docker take their output flags anywhere); Click (vendored by Typer) only reads a group's options before the
subcommand, so the root lifts ``--json`` to the front before parsing.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup

ANYWHERE = ("--json",)
"""Flags of the root taken anywhere on the line (before a ``--`` separator).

A flag is lifted even where it would be the value of another option (``--description
--json``): to give such a value, write ``--description=--json``."""


def lift_global_flags(args: list[str]) -> list[str]:
    """``args`` with every ``--json`` before ``--`` moved to the front (once)."""
    end = args.index("--") if "--" in args else len(args)
    head, tail = args[:end], args[end:]
    lifted = [flag for flag in ANYWHERE if flag in head]
    if not lifted:
        return args
    return [*lifted, *(a for a in head if a not in ANYWHERE), *tail]


class RootGroup(TyperGroup):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own (vendored) Context
        if ctx.parent is None:
            args = lift_global_flags(list(args))
        return super().parse_args(ctx, args)
