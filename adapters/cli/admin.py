"""Changing and removing what is stored: ``topology update``, ``topology delete``, and what
``agent-type delete`` says when the type is still in use.

A refusal names what is in the way (which topologies, how many executions or instances)
and the command that clears it, so nobody has to query the store to find out why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from qmcp_agents.domain import AgentType, Topology, TopologyType, TopologyUpdate, services
from qmcp_agents.domain.errors import IntegrityError
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import MAX_LIMIT, all_pages

from .files import topology_fields


def _names(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


async def _topologies(store: Store) -> list[Topology]:
    return await all_pages(lambda a: store.topologies.list(limit=MAX_LIMIT, after=a))


async def agent_type_users(store: Store, agent_type: AgentType) -> str | None:
    """Why ``agent_type`` cannot be deleted, or None when nothing uses it."""
    assert agent_type.id is not None
    topologies = [
        t.name
        for t in await _topologies(store)
        if any(m.agent_type_id == agent_type.id for m in t.memberships)
    ]
    instances = await store.agent_instances.count(agent_type_id=agent_type.id)
    if not topologies and not instances:
        return None
    uses = []
    if topologies:
        uses.append(f"{len(topologies)} topology(ies) ({_names(topologies)})")
    if instances:
        uses.append(f"{instances} agent instance(s) of past executions")
    return (
        f"agent type {agent_type.name!r} is in use by {' and '.join(uses)}; delete those first "
        "(`qmcp-agents topology delete NAME --with-executions`)"
    )


async def delete_agent_type(store: Store, name: str) -> None:
    async with store.transaction():
        entity = await store.agent_types.get_by_name(name)
        if (why := await agent_type_users(store, entity)) is not None:
            raise IntegrityError(why)
        assert entity.id is not None
        await store.agent_types.delete(entity.id)


@dataclass
class Deleted:
    topology: str
    executions: int


async def delete_topology(store: Store, name: str, with_executions: bool) -> Deleted:
    """Delete a topology; its executions only when asked, and never one still live."""
    async with store.transaction():
        topology = await store.topologies.get_by_name(name)
        assert topology.id is not None
        parents = [
            t.name
            for t in await _topologies(store)
            if t.topology_type is TopologyType.COMPOUND and name in t.config.get("sub_topologies", [])
        ]
        if parents:
            raise IntegrityError(
                f"topology {name!r} is a sub-topology of compound {_names(parents)}; "
                "update or delete those first"
            )
        executions = await all_pages(
            lambda a: store.executions.list(topology_id=topology.id, limit=MAX_LIMIT, after=a)
        )
        if executions and not with_executions:
            raise IntegrityError(
                f"topology {name!r} has {len(executions)} execution(s); pass --with-executions to delete "
                "them too (with their messages, results and agent instances)"
            )
        live = [e for e in executions if not e.status.is_final]
        if live:
            raise IntegrityError(
                f"topology {name!r} has {len(live)} execution(s) not finished "
                f"({', '.join(sorted({e.status.value for e in live}))}); let them end or cancel them first"
            )
        gone = {e.id for e in executions}
        for execution in executions:  # a child goes with its parent when both are here
            if execution.parent_id not in gone:
                await store.executions.delete(execution.id)
        await store.topologies.delete(topology.id)
    return Deleted(name, len(executions))


def register(topology_app: typer.Typer) -> None:
    @topology_app.command("update")
    def topology_update(
        name: Annotated[str, typer.Argument(help="Topology name.")],
        description: Annotated[str | None, typer.Option(help="New description.")] = None,
        config: Annotated[
            str | None, typer.Option(help="The whole new config as JSON (replaces the old one).")
        ] = None,
        version: Annotated[str | None, typer.Option(help="MAJOR.MINOR.PATCH.")] = None,
        file: Annotated[
            Path | None, typer.Option("--file", "-f", help="YAML/JSON with the fields to change.")
        ] = None,
    ) -> None:
        """Change a topology's description, config or version (members stay; to change them,
        delete the topology and add it again)."""
        from .app import _one_line, emit, fail, run_async

        try:
            data = topology_fields(file, config)
            # ``is not None``: an empty --description is the model's to refuse, as agent-type update does
            given = {"description": description, "version": version}
            data.update({k: v for k, v in given.items() if v is not None})
            if not data:
                raise ValueError("nothing to change: give --description, --config, --version or --file")
            change = TopologyUpdate.model_validate(data)
        except (ValueError, ValidationError) as error:
            fail(_one_line(error))
        read = run_async(lambda store: services.update_topology(store, name, change))
        emit(read, lambda c: c.print(f"topology {read.name} updated (version {read.version})"))

    @topology_app.command("delete")
    def topology_delete(
        name: Annotated[str, typer.Argument(help="Topology name.")],
        with_executions: Annotated[
            bool,
            typer.Option(
                "--with-executions",
                help="Also delete its finished executions with their messages, results and instances.",
            ),
        ] = False,
    ) -> None:
        """Delete a topology. Refused while it has executions (unless --with-executions), while
        one of them is still running, or while a compound topology names it."""
        from .app import emit, run_async

        done = run_async(lambda store: delete_topology(store, name, with_executions))
        emit(
            {"deleted": done.topology, "executions_deleted": done.executions},
            lambda c: c.print(
                f"topology {done.topology} deleted"
                + (f" with {done.executions} execution(s)" if done.executions else "")
            ),
        )
