"""The root command group: global options people put after the subcommand still count.

``qmcp-agents executions list --json`` and ``qmcp-agents init --store sqlite:///x.db`` are
how most command lines are typed (git, kubectl, docker take their global flags anywhere);
Click (vendored by Typer) only reads a group's options before the subcommand, so the root
lifts ``--json`` and ``--store URL`` to the front before parsing.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from typer.core import TyperGroup

ANYWHERE = ("--json",)
"""Flags of the root taken anywhere on the line (before a ``--`` separator).

A flag is lifted even where it would be the value of another option (``--description
--json``): to give such a value, write ``--description=--json``."""

VALUED_ANYWHERE = ("--store",)
"""Options of the root, with a value (``--store URL`` or ``--store=URL``), taken anywhere."""


def _lift_valued(head: list[str]) -> tuple[list[str], list[str]]:
    """``(lifted, rest)``: each ``--store URL`` / ``--store=URL`` of ``head`` taken out.

    A trailing ``--store`` without its value stays where it is, so Click still names it."""
    lifted: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(head):
        arg = head[index]
        if arg in VALUED_ANYWHERE and index + 1 < len(head):
            lifted += [arg, head[index + 1]]
            index += 2
            continue
        if any(arg.startswith(option + "=") for option in VALUED_ANYWHERE):
            lifted.append(arg)
        else:
            rest.append(arg)
        index += 1
    return lifted, rest


def _subcommand(head: list[str]) -> str | None:
    """The first word that is not a root option or its value: the subcommand's name."""
    index = 0
    while index < len(head):
        arg = head[index]
        if arg in VALUED_ANYWHERE:
            index += 2
            continue
        if not arg.startswith("-"):
            return arg
        index += 1
    return None


def lift_global_flags(args: list[str], own_store: Collection[str] = ()) -> list[str]:
    """``args`` with every ``--json`` and ``--store URL`` before ``--`` moved to the front.

    ``own_store`` names the subcommands with a ``--store`` of their own (``serve``,
    ``worker``): theirs is left to them, or a leading ``--store`` would override it."""
    end = args.index("--") if "--" in args else len(args)
    head, tail = args[:end], args[end:]
    lifted = [flag for flag in ANYWHERE if flag in head]
    head = [a for a in head if a not in ANYWHERE]
    if _subcommand(head) not in own_store:
        # A lifted value goes after any leading one: Click keeps the last, the one written later.
        command = _subcommand(head)
        at = head.index(command) if command is not None else len(head)
        moved, after = _lift_valued(head[at:])
        head = [*head[:at], *moved, *after]
    if not lifted:
        return [*head, *tail]
    return [*lifted, *head, *tail]


class RootGroup(TyperGroup):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own (vendored) Context
        if ctx.parent is None:
            own_store = {
                name
                for name, command in self.commands.items()
                if any("--store" in getattr(param, "opts", ()) for param in command.params)
            }
            args = lift_global_flags(list(args), own_store)
        return super().parse_args(ctx, args)
