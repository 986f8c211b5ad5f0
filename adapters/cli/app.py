"""The ``qmcp-agents`` command: any store by URL, Rich output on a terminal, ``--json`` for scripts.

Errors a person can fix (a bad name, malformed JSON, an unreachable store) are printed as
one line on stderr with exit code 2, and leave the store as it was.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar
from uuid import UUID

import typer
from pydantic import ValidationError
from rich.console import Console

from qmcp_agents.adapters import open_store, transfer
from qmcp_agents.domain import (
    AgentRole,
    AgentTypeCreate,
    AgentTypeRead,
    AgentTypeUpdate,
    ExecutionRead,
    ExecutionStatus,
    QmcpError,
    TopologyCreate,
    TopologyRead,
    TopologyType,
    services,
    utc_now,
)
from qmcp_agents.domain.capabilities import check_agent_config
from qmcp_agents.domain.capabilities import registry as capability_registry
from qmcp_agents.domain.engine import Engine
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import MAX_LIMIT, all_pages

from . import admin, purge, render, transfer_output
from . import demo as demo_module
from . import llm as llm_cli
from . import progress as progress_bars
from .durations import parse_age
from .files import default_agent, load_agents, parse_json, read_document, read_mapping, topology_fields
from .group import RootGroup
from .ids import AmbiguousId, resolve_execution_id

DEFAULT_STORE = "sqlite:///qmcp-agents.db"
T = TypeVar("T")

app = typer.Typer(
    name="qmcp-agents",
    help="Model, run and inspect multi-agent LLM topologies on any store"
    " (memory, SQLite, PostgreSQL, MongoDB)."
    " Store URL: --store or QMCP_STORE_URL (default: sqlite:///qmcp-agents.db).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help is plain text: Rich markup would eat `[a-z0-9_-]`
    add_completion=False,
    cls=RootGroup,  # --json also after the subcommand
)
agent_type_app = typer.Typer(
    help="Register and manage agent types.", no_args_is_help=True, rich_markup_mode=None
)
topology_app = typer.Typer(
    help="Create, inspect and validate topologies.", no_args_is_help=True, rich_markup_mode=None
)
executions_app = typer.Typer(
    help="List, inspect and purge executions.", no_args_is_help=True, rich_markup_mode=None
)
db_app = typer.Typer(help="Schema management.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(agent_type_app, name="agent-type")
app.add_typer(topology_app, name="topology")
app.add_typer(executions_app, name="executions")
app.add_typer(db_app, name="db")


class Settings:
    store_url: str = DEFAULT_STORE
    as_json: bool = False


settings = Settings()


def console() -> Console:
    """A console on the current stdout (colours only on a terminal; NO_COLOR is honoured)."""
    return Console(highlight=False, soft_wrap=False)


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _one_line(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        parts = []
        for item in error.errors():
            where = ".".join(str(p) for p in item["loc"]) or type(error).__name__
            parts.append(f"{where}: {item['msg']} (got {item.get('input')!r})")
        return f"invalid {error.title}: " + "; ".join(parts)
    return " ".join(str(error).split()) or type(error).__name__


def run_async(work: Callable[[Store], Awaitable[T]], url: str | None = None) -> T:
    """Open the store, run ``work`` on it, and turn every expected failure into one line."""

    async def main() -> T:
        async with open_store(url or settings.store_url) as store:
            return await work(store)

    try:
        return asyncio.run(main())
    except AmbiguousId as error:  # one line, then the ids it could be
        typer.echo(f"error: {error}", err=True)
        for match in error.matches:
            typer.echo(f"  {match}", err=True)
        raise typer.Exit(2) from None
    except (QmcpError, ValidationError, ValueError, LookupError, TypeError, ImportError, OSError) as error:
        fail(_one_line(error))


def emit(value: Any, pretty: Callable[[Console], None]) -> None:
    if settings.as_json:
        typer.echo(render.dumps(value))
    else:
        pretty(console())


@app.callback()
def main(
    store: Annotated[
        str,
        typer.Option(
            "--store",
            envvar="QMCP_STORE_URL",
            help="Store URL: memory://, sqlite:///file.db, postgresql://..., mongodb://...",
        ),
    ] = DEFAULT_STORE,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print JSON instead of tables (for scripts); also after the subcommand."),
    ] = False,
) -> None:
    """qmcp-agents: agent types, topologies, executions and their transcripts."""
    settings.store_url = store
    settings.as_json = as_json


# --- schema ---------------------------------------------------------------------------------


@app.command()
def init() -> None:
    """Create the schema in the store (or bring it up to date). Safe to run again."""

    async def work(store: Store) -> None:
        await store.create_schema()

    run_async(work)
    emit(
        {"store": settings.store_url, "schema": "ready"},
        lambda c: c.print(f"schema ready in {settings.store_url}"),
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the store's schema to this release (same as init)."""
    init()


# --- agent types ----------------------------------------------------------------------------


def _agent_type_input(file: Path | None, fields: dict[str, Any]) -> dict[str, Any]:
    data = read_mapping(file, "agent type fields") if file is not None else {}
    config = dict(data.pop("config", {}) or {})
    for key in ("model", "temperature", "max_tokens", "system_prompt", "timeout_seconds", "max_retries"):
        if fields.get(key) is not None:
            config[key] = fields.pop(key)
        fields.pop(key, None)
    capabilities = [{"name": c} for c in fields.pop("capability", None) or []]
    skills = fields.pop("skill", None)
    if skills:
        capabilities.append({"name": "skills", "config": {"tags": skills}})
    if capabilities:
        config["capabilities"] = capabilities
    data.update({k: v for k, v in fields.items() if v is not None})
    if config:
        data["config"] = config
    return data


@agent_type_app.command("add")
def agent_type_add(
    name: Annotated[
        str | None, typer.Argument(help="Agent type name ([a-z0-9_-], case-insensitive).")
    ] = None,
    role: Annotated[AgentRole | None, typer.Option(help="Primary role.")] = None,
    description: Annotated[str | None, typer.Option(help="What the agent does.")] = None,
    version: Annotated[str | None, typer.Option(help="MAJOR.MINOR.PATCH.")] = None,
    model: Annotated[str | None, typer.Option(help="LLM model.")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 to 2.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="> 0.")] = None,
    system_prompt: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    timeout_seconds: Annotated[int | None, typer.Option(help="Per-call timeout.")] = None,
    max_retries: Annotated[int | None, typer.Option(help="Retries after a failed call.")] = None,
    capability: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME",
            help="A registered capability, default config (repeatable; see `capabilities list`).",
        ),
    ] = None,
    skill: Annotated[
        list[str] | None,
        typer.Option(metavar="TAG", help="A skill tag delegation routes by (repeatable)."),
    ] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="YAML/JSON file with the fields.")] = None,
) -> None:
    """Register an agent type, from flags or a file."""
    try:
        data = _agent_type_input(
            file,
            {
                "name": name,
                "role": role.value if role else None,
                "description": description,
                "version": version,
                "model": model,
                "temperature": temperature,
                "max_tokens": max_tokens,
                "system_prompt": system_prompt,
                "timeout_seconds": timeout_seconds,
                "max_retries": max_retries,
                "capability": capability,
                "skill": skill,
            },
        )
        create = AgentTypeCreate.model_validate(data)
        check_agent_config(create.config, capability_registry)
    except (ValueError, ValidationError) as error:
        fail(_one_line(error))
    read = run_async(lambda store: services.register_agent_type(store, create))
    emit(read, lambda c: c.print(f"agent type [bold]{read.name}[/bold] registered (id {read.id})"))


@agent_type_app.command("list")
def agent_type_list(
    role: Annotated[AgentRole | None, typer.Option(help="Only this role.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT)] = 50,
    after: Annotated[str | None, typer.Option(help="Cursor from the previous page.")] = None,
) -> None:
    """List agent types (paged)."""
    page = run_async(lambda store: store.agent_types.list(role=role, limit=limit, after=after))

    def pretty(c: Console) -> None:
        c.print(render.agent_types_table(page.items))
        if page.next_cursor:
            c.print(f"more: --after {page.next_cursor}")

    emit(
        {"items": [AgentTypeRead.from_entity(t) for t in page.items], "next_cursor": page.next_cursor}, pretty
    )


@agent_type_app.command("show")
def agent_type_show(name: Annotated[str, typer.Argument(help="Agent type name.")]) -> None:
    """Show one agent type with its whole configuration."""
    entity = run_async(lambda store: store.agent_types.get_by_name(name))
    emit(AgentTypeRead.from_entity(entity), lambda c: c.print(render.agent_type_detail(entity)))


@agent_type_app.command("update")
def agent_type_update(
    name: Annotated[str, typer.Argument(help="Agent type name.")],
    description: Annotated[str | None, typer.Option()] = None,
    role: Annotated[AgentRole | None, typer.Option()] = None,
    version: Annotated[str | None, typer.Option()] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="YAML/JSON with the fields to change.")
    ] = None,
) -> None:
    """Change an agent type's description, role, version or config."""
    try:
        data: dict[str, Any] = dict(read_document(file) or {}) if file else {}
        data.update(
            {
                k: v
                for k, v in {
                    "description": description,
                    "role": role.value if role else None,
                    "version": version,
                }.items()
                if v is not None
            }
        )
        change = AgentTypeUpdate.model_validate(data)
    except (ValueError, ValidationError) as error:
        fail(_one_line(error))
    read = run_async(lambda store: services.update_agent_type(store, name, change))
    emit(read, lambda c: c.print(f"agent type [bold]{read.name}[/bold] updated"))


@agent_type_app.command("delete")
def agent_type_delete(name: Annotated[str, typer.Argument(help="Agent type name.")]) -> None:
    """Delete an agent type (refused while a topology or an instance uses it, naming them)."""
    run_async(lambda store: admin.delete_agent_type(store, name))
    emit({"deleted": name}, lambda c: c.print(f"agent type {name} deleted"))


# --- topologies ------------------------------------------------------------------------------


def _topology_input(
    file: Path | None,
    name: str | None,
    kind: TopologyType | None,
    description: str | None,
    config: str | None,
    agent: list[str] | None,
) -> TopologyCreate:
    data = topology_fields(file, config)
    data.update(
        {
            k: v
            for k, v in {
                "name": name,
                "topology_type": kind.value if kind else None,
                "description": description,
                "agent_names": agent,
            }.items()
            if v is not None
        }
    )
    return TopologyCreate.model_validate(data)


@topology_app.command("add")
def topology_add(
    name: Annotated[str | None, typer.Argument(help="Topology name.")] = None,
    kind: Annotated[TopologyType | None, typer.Option("--type", help="Collaboration pattern.")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    config: Annotated[str | None, typer.Option(help="Typed config as JSON.")] = None,
    agent: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="A member's agent type name (repeatable, in order)."),
    ] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="YAML/JSON file with the fields.")] = None,
) -> None:
    """Create a topology with its members, from flags or a file."""
    try:
        create = _topology_input(file, name, kind, description, config, agent)
    except (ValueError, ValidationError) as error:
        fail(_one_line(error))
    read = run_async(lambda store: services.create_topology(store, create))
    emit(
        read,
        lambda c: c.print(f"topology [bold]{read.name}[/bold] created with {read.agent_count} member(s)"),
    )


@topology_app.command("list")
def topology_list(
    kind: Annotated[TopologyType | None, typer.Option("--type", help="Only this type.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT)] = 50,
    after: Annotated[str | None, typer.Option(help="Cursor from the previous page.")] = None,
) -> None:
    """List topologies (paged)."""
    page = run_async(lambda store: store.topologies.list(topology_type=kind, limit=limit, after=after))

    def pretty(c: Console) -> None:
        c.print(render.topologies_table(page.items))
        if page.next_cursor:
            c.print(f"more: --after {page.next_cursor}")

    emit(
        {"items": [TopologyRead.from_entity(t) for t in page.items], "next_cursor": page.next_cursor}, pretty
    )


@topology_app.command("show")
def topology_show(name: Annotated[str, typer.Argument(help="Topology name.")]) -> None:
    """Draw a topology: its config, members and slots."""

    async def work(store: Store) -> tuple[Any, dict[int, str]]:
        topology = await store.topologies.get_by_name(name)
        names = {
            m.agent_type_id: (await store.agent_types.get(m.agent_type_id)).name for m in topology.memberships
        }
        return topology, names

    topology, names = run_async(work)
    emit(topology, lambda c: c.print(render.topology_tree(topology, names)))


@topology_app.command("validate")
def topology_validate(file: Annotated[Path, typer.Argument(help="YAML/JSON topology definition.")]) -> None:
    """Check a topology definition against its type's config and the store's agent types,
    without saving it."""
    try:
        create = _topology_input(file, None, None, None, None, None)
    except (ValueError, ValidationError) as error:
        fail(_one_line(error))

    class Checked(Exception):
        pass

    async def work(store: Store) -> None:
        try:
            async with store.transaction():  # rolled back: nothing is saved
                await services.create_topology(store, create)
                raise Checked
        except Checked:
            return

    run_async(work)
    emit({"valid": True, "name": create.name}, lambda c: c.print(f"topology {create.name} is valid"))


# --- runs ------------------------------------------------------------------------------------


@app.command()
def run(
    topology: Annotated[str, typer.Argument(help="Topology name.")],
    input_json: Annotated[str, typer.Option("--input", help="The execution's input, a JSON object.")] = "{}",
    agents: Annotated[
        Path | None, typer.Option(help="YAML/JSON file of scripted agents (default: every agent answers ok).")
    ] = None,
    timeout_scale: Annotated[
        float, typer.Option(help="Multiply agents' timeouts (simulations).", min=0.0001)
    ] = 1.0,
    llm: Annotated[bool, typer.Option("--llm", help="LLM agents from the agent types' configs.")] = False,
    model: Annotated[
        str | None, typer.Option(help="With --llm: every agent's model (test runs offline).")
    ] = None,
) -> None:
    """Run a topology with scripted agents (no LLM needed) or LLM agents, with live progress."""
    if problem := llm_cli.check_options(llm, model, agents is not None):
        fail(problem)
    try:
        data = parse_json(input_json, "--input")
        if not isinstance(data, dict):
            raise ValueError(f"--input must be a JSON object, got {input_json}")
        scripted = load_agents(agents) if agents else None
    except ValueError as error:
        fail(_one_line(error))
    out = console()

    async def work(store: Store) -> tuple[ExecutionRead, list[Any], list[Any], dict[UUID, str]]:
        def lookup(agent_type: Any, slot: str) -> Any:
            if scripted is None:
                return default_agent(slot)
            return scripted.get(slot) or scripted.get(agent_type.name)

        players = await llm_cli.agents(store, [topology], model) if llm else lookup
        with progress_bars.progress_display(out, disable=settings.as_json) as progress:
            task = progress.add_task(f"running {topology}", total=None)

            def observe(event: dict[str, Any]) -> None:
                what = "answered" if event["event"] == "answer" else f"failed: {event.get('error')}"
                progress.update(
                    task, advance=1, description=f"round {event['round']} · {event['slot']} {what}"
                )

            result = await Engine(store, players, timeout_scale=timeout_scale, observer=observe).run(
                topology, data
            )
        return (result, *await _transcript(store, result.id))

    result, messages, results, names = run_async(work)
    emit(result, lambda c: render.transcript(c, result, topology, messages, results, names))
    if result.status is ExecutionStatus.FAILED:
        raise typer.Exit(1)


async def _transcript(store: Store, execution_id: UUID) -> tuple[list[Any], list[Any], dict[UUID, str]]:
    messages = await all_pages(lambda a: store.messages.list(execution_id, limit=MAX_LIMIT, after=a))
    results = await all_pages(
        lambda a: store.results.list(execution_id=execution_id, limit=MAX_LIMIT, after=a)
    )
    names: dict[UUID, str] = {}
    for instance in await all_pages(
        lambda a: store.agent_instances.list(execution_id=execution_id, limit=MAX_LIMIT, after=a)
    ):
        names[instance.id] = str(
            instance.metadata.get("slot") or (await store.agent_types.get(instance.agent_type_id)).name
        )
    return messages, results, names


# --- executions --------------------------------------------------------------------------------


@executions_app.command("list")
def executions_list(
    status: Annotated[ExecutionStatus | None, typer.Option(help="Only this status.")] = None,
    topology: Annotated[str | None, typer.Option(help="Only this topology.")] = None,
    since: Annotated[str | None, typer.Option(help="Only started within this age (30d, 12h, 45min).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT)] = 50,
    after: Annotated[str | None, typer.Option(help="Cursor from the previous page.")] = None,
    ids_only: Annotated[
        bool, typer.Option("--ids", "-q", help="Print only the ids, one a line (for shell scripts).")
    ] = False,
) -> None:
    """List executions (paged, oldest first)."""
    try:
        started_after = utc_now() - parse_age(since, "--since") if since else None
    except ValueError as error:
        fail(_one_line(error))

    async def work(store: Store) -> tuple[Any, dict[int, str]]:
        topology_id = (await store.topologies.get_by_name(topology)).id if topology else None
        page = await store.executions.list(
            status=status, topology_id=topology_id, started_after=started_after, limit=limit, after=after
        )
        names = {
            t.id: t.name for t in (await store.topologies.list(limit=MAX_LIMIT)).items if t.id is not None
        }
        return page, names

    page, names = run_async(work)
    reads = [ExecutionRead.from_entity(e) for e in page.items]
    if ids_only:
        for read in reads:
            typer.echo(str(read.id))
        return

    def pretty(c: Console) -> None:
        c.print(render.executions_table(reads, names, c.width))
        if page.next_cursor:
            c.print(f"more: --after {page.next_cursor}")

    emit({"items": reads, "next_cursor": page.next_cursor}, pretty)


@executions_app.command("show")
def executions_show(
    execution_id: Annotated[str, typer.Argument(help="Execution id, or a unique start of it.")],
) -> None:
    """The transcript: messages by round, senders, recipients, confidences, tokens, duration."""

    async def work(store: Store) -> tuple[ExecutionRead, str, list[Any], list[Any], dict[UUID, str]]:
        ident = await resolve_execution_id(store, execution_id)
        execution = await store.executions.get(ident)
        topology = await store.topologies.get(execution.topology_id)
        return (ExecutionRead.from_entity(execution), topology.name, *await _transcript(store, ident))

    execution, topology, messages, results, names = run_async(work)
    emit(
        {"execution": execution, "messages": messages, "results": results},
        lambda c: render.transcript(c, execution, topology, messages, results, names),
    )


# --- moving data -----------------------------------------------------------------------------


def _progress(label: str, totals: dict[str, int] | None = None) -> Any:
    return progress_bars.bars(console(), label, totals, disable=settings.as_json)


def _summary(summary: transfer.Summary) -> dict[str, Any]:
    return transfer_output.as_json(summary)


@app.command("export")
def export(
    file: Annotated[Path, typer.Argument(help="JSON Lines file to write.")],
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite FILE if it exists (refused otherwise).")
    ] = False,
) -> None:
    """Export everything in the store to a versioned JSON Lines file. An existing FILE is
    kept unless --force is given."""
    if file.is_dir():
        fail(f"{file} is a directory: give the path of the file to write")
    if file.exists() and not force:
        fail(f"{file} already exists: pass --force to overwrite it")
    temporary = file.with_name(file.name + ".partial")

    async def work(store: Store) -> transfer.Summary:
        totals = await transfer.record_counts(store)
        try:
            with _progress("exporting", totals) as progress, temporary.open("w", encoding="utf-8") as out:
                summary = await transfer.export_store(store, out, progress=progress)
        except BaseException:
            temporary.unlink(missing_ok=True)  # a failed export leaves no file behind
            raise
        os.replace(temporary, file)
        return summary

    summary = run_async(work)
    emit(
        {
            "file": str(file),
            "counts": summary.counts,
            "written": summary.counts,
            "checksum": summary.checksum,
        },
        lambda c: c.print(f"exported {sum(summary.counts.values())} records to {file}"),
    )


@app.command("import")
def import_(file: Annotated[Path, typer.Argument(help="JSON Lines export to read.")]) -> None:
    """Import an export into the store (rerunnable: what is there already is skipped)."""
    if not file.exists():
        fail(f"{file} does not exist")

    async def work(store: Store) -> transfer.Summary:
        with _progress("importing", progress_bars.file_totals(file)) as progress:
            return await transfer.import_store(store, file, progress=progress, create_schema=True)

    summary = run_async(work)
    emit(
        _summary(summary),
        lambda c: c.print(
            f"imported {sum(summary.written.values())} new of {sum(summary.counts.values())} records "
            f"from {file}{transfer_output.atomicity(summary)}"
        ),
    )


@app.command()
def copy(
    source: Annotated[str, typer.Option("--from", help="Store URL to copy from.")],
    target: Annotated[str, typer.Option("--to", help="Store URL to copy into.")],
    batch_size: Annotated[int, typer.Option(min=1, max=MAX_LIMIT)] = 500,
) -> None:
    """Copy a whole store into another backend, in batches, verifying counts and checksums.

    Rerunnable after an interruption: what the target already has is skipped."""

    async def work(origin: Store) -> transfer.Summary:
        async with open_store(target) as destination:
            with _progress("copying", await transfer.record_counts(origin)) as progress:
                return await transfer.copy_store(
                    origin, destination, batch_size=batch_size, progress=progress, create_schema=True
                )

    summary = run_async(work, source)
    emit(
        _summary(summary),
        lambda c: c.print(
            f"copied {sum(summary.written.values())} new of {sum(summary.counts.values())} records; "
            f"checksum {summary.checksum[:16]} matches{transfer_output.atomicity(summary)}"
        ),
    )


# --- the demo ---------------------------------------------------------------------------------


@app.command()
def demo(
    llm: Annotated[bool, typer.Option("--llm", help="LLM agents from the agent types' configs.")] = False,
    model: Annotated[
        str | None, typer.Option(help="With --llm: every agent's model (test runs offline).")
    ] = None,
) -> None:
    """Register agent types, create a debate, a pipeline and an ensemble, run each with
    scripted agents (or LLM agents), and print their transcripts."""
    if problem := llm_cli.check_options(llm, model, False):
        fail(problem)
    out = console()

    async def work(store: Store) -> None:
        await store.create_schema()
        async with store.transaction():  # with --llm: nothing is registered if a model is out of reach
            prepared = await demo_module.prepare(store)
            players = await llm_cli.agents(store, [n for n, _ in prepared], model) if llm else None
        for name, agents in prepared:
            result = await Engine(store, players or agents).run(name, demo_module.INPUTS[name])
            messages, results, names = await _transcript(store, result.id)
            if settings.as_json:
                typer.echo(render.dumps({"execution": result, "messages": messages}))
            else:
                render.transcript(out, result, name, messages, results, names)
                out.print()

    run_async(work)


from . import capabilities as _capabilities  # noqa: E402 - registers its commands on `app`
from . import serve as _serve  # noqa: E402 - registers `serve` on `app`
from . import worker as _worker  # noqa: E402 - registers submit, worker, workers, executions cancel

_capabilities.register(app)
admin.register(topology_app)
purge.register(executions_app)
_serve.register(app)
_worker.register(app, executions_app)


def entry() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
