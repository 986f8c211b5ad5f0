"""``submit``, ``worker``, ``workers`` and ``executions cancel``: executions run by any number
of worker processes sharing one store (issue 16; see docs/scaling.md)."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from qmcp_agents.domain.engine import Engine
from qmcp_agents.domain.engine.worker import Worker
from qmcp_agents.domain.execution import ExecutionRead
from qmcp_agents.domain.leases import DEFAULT_LEASE_SECONDS
from qmcp_agents.domain.ports import Store

from . import llm as llm_cli
from .files import default_agent, load_agents, parse_json


def register(app: typer.Typer, executions_app: typer.Typer) -> None:
    from .app import _one_line, emit, fail, run_async, settings
    from .ids import resolve_execution_id

    @app.command()
    def submit(
        topology: Annotated[str, typer.Argument(help="Topology name.")],
        input_json: Annotated[
            str, typer.Option("--input", help="The execution's input, a JSON object.")
        ] = "{}",
        agents: Annotated[
            Path | None,
            typer.Option(help="The workers' scripted agents file: refuse the submit if it misses a slot."),
        ] = None,
        correlation_id: Annotated[str | None, typer.Option(help="Your id for the execution.")] = None,
    ) -> None:
        """Store a pending execution for the workers and print its id (nothing runs here)."""
        try:
            data = parse_json(input_json, "--input")
            scripted = load_agents(agents) if agents else None
        except ValueError as error:
            fail(_one_line(error))

        async def work(store: Store) -> Any:
            engine = Engine(store, scripted if scripted is not None else default_agent_lookup)
            return await engine.submit(topology, data, correlation_id=correlation_id)

        execution_id = run_async(work)
        emit({"execution_id": execution_id, "status": "pending"}, lambda c: c.print(str(execution_id)))

    @app.command()
    def worker(
        store: Annotated[
            str | None, typer.Option("--store", help="Store URL (default: the global --store).")
        ] = None,
        concurrency: Annotated[int, typer.Option(help="Executions run at once.", min=1, max=10_000)] = 10,
        agents: Annotated[
            Path | None,
            typer.Option(help="YAML/JSON file of scripted agents (default: every agent answers ok)."),
        ] = None,
        llm: Annotated[bool, typer.Option("--llm", help="LLM agents from the agent types' configs.")] = False,
        model: Annotated[str | None, typer.Option(help="With --llm: every agent's model.")] = None,
        lease: Annotated[
            float,
            typer.Option(help="Lease seconds: a dead worker's runs are taken over after this.", min=0.1),
        ] = DEFAULT_LEASE_SECONDS,
        grace: Annotated[
            float, typer.Option(help="On SIGTERM, seconds to finish before handing runs back.", min=0)
        ] = 10.0,
        name: Annotated[str | None, typer.Option(help="Worker name (default host:pid:random).")] = None,
        until_idle: Annotated[
            bool, typer.Option("--until-idle", help="Exit once nothing is left to run.")
        ] = False,
    ) -> None:
        """Claim submitted executions and run them until SIGTERM / Ctrl-C (graceful stop)."""
        if problem := llm_cli.check_options(llm, model, agents is not None):
            fail(problem)
        try:
            scripted = load_agents(agents) if agents else None
        except ValueError as error:
            fail(_one_line(error))

        async def work(opened: Store) -> dict[str, Any]:
            players: Any = scripted if scripted is not None else default_agent_lookup
            if llm:
                players = await llm_cli.agents(opened, [], model)
            runner = Worker(
                Engine(opened, players),
                name=name,
                concurrency=concurrency,
                lease_seconds=lease,
                grace_seconds=grace,
            )
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, runner.stop)
            typer.echo(f"worker {runner.name} on {store or settings.store_url}", err=True)
            stats = await runner.run(until_idle=until_idle)
            return {"worker": runner.name, **asdict(stats)}

        stats = run_async(work, store)
        emit(stats, lambda c: c.print(_stats_line(stats)))

    @app.command()
    def workers() -> None:
        """Who holds which execution since when, and what waits in the queue."""

        async def work(opened: Store) -> list[dict[str, Any]]:
            return [asdict(lease) for lease in await opened.leases.list()]

        leases = run_async(work)

        def pretty(c: Any) -> None:
            held = [lease for lease in leases if lease["owner"] is not None]
            waiting = len(leases) - len(held)
            for owner in sorted({lease["owner"] for lease in held}):
                mine = [lease for lease in held if lease["owner"] == owner]
                c.print(f"[bold]{owner}[/bold]: {len(mine)} running")
                for lease in mine:
                    c.print(
                        f"  {lease['execution_id']}  since {lease['claimed_at']:%H:%M:%S}"
                        f"  expires {lease['expires_at']:%H:%M:%S}  attempt {lease['attempts']}"
                    )
            c.print(f"{waiting} waiting for a worker")

        emit(leases, pretty)

    @executions_app.command("cancel")
    def executions_cancel(
        execution_id: Annotated[str, typer.Argument(help="Execution id, or a unique start of it.")],
    ) -> None:
        """Cancel an execution; the worker running it stops at its next step."""

        async def work(store: Store) -> ExecutionRead:
            return await Engine(store, {}).cancel(await resolve_execution_id(store, execution_id))

        read = run_async(work)
        emit(read, lambda c: c.print(f"execution {read.id} cancelled"))


def default_agent_lookup(agent_type: Any, slot: str) -> Any:
    return default_agent(slot)


def _stats_line(stats: dict[str, Any]) -> str:
    finished = ", ".join(f"{count} {outcome}" for outcome, count in sorted(stats["finished"].items()))
    return (
        f"worker {stats['worker']}: claimed {stats['claimed']}, finished {finished or 'none'},"
        f" lost {stats['lost']}, handed back {stats['handed_back']}"
    )


__all__ = ["register"]
