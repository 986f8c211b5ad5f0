"""``qmcp-agents executions purge``: retention that shows what it will delete and asks first.

``--dry-run`` lists what would go and deletes nothing; without ``--yes`` the command asks
before deleting (a script passes ``--yes``). The listing follows the store's purge rule: a
final execution completed before the cutoff goes with its children, and a tree with an
execution still live is kept whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import typer
from rich.console import Console

from qmcp_agents.domain import Execution, ExecutionRead, ExecutionStatus, utc_now
from qmcp_agents.domain.enums import FINAL_STATUSES
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import MAX_LIMIT, PurgeRequest, all_pages

from .durations import parse_age

FINAL_NAMES = ", ".join(sorted(s.value for s in FINAL_STATUSES))


def check_statuses(statuses: list[ExecutionStatus] | None) -> frozenset[ExecutionStatus]:
    """The statuses to purge; a live one is refused in words (a live run is never purged)."""
    chosen = frozenset(statuses or FINAL_STATUSES)
    live = sorted(s.value for s in chosen - FINAL_STATUSES)
    if live:
        raise ValueError(
            f"--status {', '.join(live)}: purge deletes only finished executions ({FINAL_NAMES}); "
            "a live one is never purged"
        )
    return chosen


async def _tree(store: Store, root: Execution) -> list[Execution]:
    tree, queue = [root], [root.id]
    while queue:
        parent = queue.pop()
        children = await all_pages(
            lambda a, p=parent: store.executions.list(parent_id=p, limit=MAX_LIMIT, after=a)  # type: ignore[misc]
        )
        tree.extend(children)
        queue.extend(c.id for c in children)
    return tree


async def plan(store: Store, older_than: datetime, statuses: frozenset[ExecutionStatus]) -> list[Execution]:
    """What ``purge`` would delete now: matching executions with their whole trees, oldest first."""
    request = PurgeRequest(older_than=older_than, statuses=statuses)
    matching: list[Execution] = []
    for status in sorted(statuses, key=lambda s: s.value):
        found = await all_pages(
            lambda a, s=status: store.executions.list(  # type: ignore[misc]
                status=s, started_before=older_than, limit=MAX_LIMIT, after=a
            )
        )
        matching.extend(e for e in found if request.matches(e))
    going: dict[UUID, Execution] = {}
    for execution in sorted(matching, key=lambda e: e.id):
        if execution.id in going:
            continue
        tree = await _tree(store, execution)
        if all(e.status in FINAL_STATUSES for e in tree):
            going.update((e.id, e) for e in tree)
    return sorted(going.values(), key=lambda e: e.id)


def register(executions_app: typer.Typer) -> None:
    @executions_app.command("purge")
    def executions_purge(
        older_than: Annotated[
            str,
            typer.Option(help="Age: finished executions completed longer ago go (30d, 12h, 45min)."),
        ],
        status: Annotated[
            list[ExecutionStatus] | None,
            typer.Option(metavar="STATUS", help=f"Only these final statuses ({FINAL_NAMES}; repeatable)."),
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="List what would be deleted; delete nothing.")
        ] = False,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    ) -> None:
        """Delete old finished executions with everything they own (retention)."""
        from . import render
        from .app import _one_line, console, emit, fail, run_async, settings

        try:
            cutoff = utc_now() - parse_age(older_than, "--older-than")
            statuses = check_statuses(status)
        except ValueError as error:
            fail(_one_line(error))

        async def preview(store: Store) -> tuple[list[Execution], dict[int, str]]:
            going = await plan(store, cutoff, statuses)
            names = {t.id: t.name for t in (await store.topologies.list(limit=MAX_LIMIT)).items if t.id}
            return going, names

        going, names = run_async(preview)
        reads = [ExecutionRead.from_entity(e) for e in going]
        when = f"completed before {cutoff:%Y-%m-%d %H:%M} UTC"
        if dry_run:

            def pretty(c: Console) -> None:
                if reads:
                    c.print(render.executions_table(reads, names, c.width))
                c.print(f"{len(reads)} execution(s) {when} would be deleted")
                c.print("dry run: nothing deleted")

            emit({"dry_run": True, "would_delete": len(reads), "items": reads}, pretty)
            return
        if not going:
            emit({"deleted": 0}, lambda c: c.print(f"0 execution(s) deleted: none {when}"))
            return
        if not yes:
            if not settings.as_json:
                console().print(render.executions_table(reads, names, console().width))
            if not typer.confirm(
                f"delete these {len(reads)} execution(s) with their messages, results and instances?",
                default=False,
                err=True,
            ):
                typer.echo("nothing deleted", err=True)
                raise typer.Exit(1)
        deleted = run_async(lambda store: store.executions.purge(older_than=cutoff, statuses=statuses))
        emit({"deleted": deleted}, lambda c: c.print(f"{deleted} execution(s) deleted"))
