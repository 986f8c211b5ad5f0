"""A refused import leaves the target exactly as it was (issue 13), on SQLite, PostgreSQL
and MongoDB: damaged, truncated, re-ordered, tampered or wrong-version exports, records
out of the domain's bounds, and ids or names the target holds for other entities.

Every case compares the target's counts and checksum (``transfer.fingerprint``) before and
after. A failure of the target itself mid-write is the one case that differs by backend:
with transactions nothing stays; without (MongoDB standalone) what was written stays, the
error says so, and rerunning completes it (docs/backends.md).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.transfer import ExportRefused, export_store, fingerprint, import_store
from qmcp_agents.domain import IntegrityError, StoreUnavailable
from qmcp_agents.domain.engine import Engine, ScriptedAgent, reply
from qmcp_agents.domain.ports import Store
from qmcp_agents.testing.builders import agent_type
from qmcp_agents.testing.builders import register_topology as build

from .servers import backend_store, mongo_store

pytestmark = pytest.mark.asyncio
BACKENDS = ["sqlite", "postgresql", "mongodb", "mongodb-standalone"]
"""``mongodb-standalone``: the test server supports transactions, so the store is told it
does not, as its probe says on a standalone server: the path docs/backends.md describes."""


@asynccontextmanager
async def target_store(kind: str, folder: Path) -> AsyncIterator[Store]:
    if not kind.startswith("mongodb"):
        async with backend_store(kind, folder) as store:
            yield store
        return
    async with mongo_store(standalone=kind == "mongodb-standalone") as mongo:
        yield mongo


async def populate(store: Store, prefix: str = "", runs: int = 2) -> None:
    members = [f"{prefix}pro", f"{prefix}con", f"{prefix}judge"]
    await build(store, f"{prefix}debate", "debate", members, {"mediator_agent_name": f"{prefix}judge"})
    agents = {
        f"{prefix}pro": ScriptedAgent([reply({"answer": "a"}, 0.9)]),
        f"{prefix}con": ScriptedAgent([reply({"answer": "b"}, 0.4)]),
        f"{prefix}judge": ScriptedAgent([reply({"answer": "a"}, 1.0)]),
    }
    for i in range(runs):
        await Engine(store, agents).run(f"{prefix}debate", {"i": i})


async def exported(folder: Path, fill: Callable[[Store], Any] = populate) -> Path:
    path = folder / "export.jsonl"
    async with open_store("memory://") as source:
        await fill(source)
        with path.open("w", encoding="utf-8") as out:
            await export_store(source, out)
    return path


async def after_other_ids(store: Store) -> None:
    """``populate`` with ids above the ones a target's own first entities get, so a target
    with data of its own holds nothing the file clashes with."""
    await build(store, "burn", "chain", ["b1", "b2", "b3"], {})
    burnt = await store.topologies.get_by_name("burn")
    assert burnt.id is not None
    await store.topologies.delete(burnt.id)
    for name in ("b1", "b2", "b3"):
        stored = await store.agent_types.get_by_name(name)
        assert stored.id is not None
        await store.agent_types.delete(stored.id)
    await populate(store)


def rewrite(path: Path, change: Callable[[list[str]], list[str]], name: str) -> Path:
    lines = path.read_text(encoding="utf-8").splitlines()
    damaged = path.with_name(name)
    damaged.write_text("\n".join(change(lines)) + "\n", encoding="utf-8")
    return damaged


def first(lines: list[str], kind: str) -> int:
    return next(i for i, text in enumerate(lines) if json.loads(text).get("kind") == kind)


def edit(lines: list[str], kind: str, change: Callable[[dict[str, Any]], None]) -> list[str]:
    at = first(lines, kind)
    record = json.loads(lines[at])
    change(record["data"])
    return [*lines[:at], json.dumps(record), *lines[at + 1 :]]


def message_before_results(lines: list[str]) -> list[str]:
    at, results = first(lines, "message"), first(lines, "result")
    return [*lines[:results], lines[at], *lines[results:at], *lines[at + 1 :]]


def two_messages_swapped(lines: list[str]) -> list[str]:
    at = first(lines, "message")
    return [*lines[:at], lines[at + 1], lines[at], *lines[at + 2 :]]


def with_version(lines: list[str], version: object) -> list[str]:
    header = json.loads(lines[0])
    header["version"] = version
    return [json.dumps(header), *lines[1:]]


def set_round(data: dict[str, Any]) -> None:
    data["round_number"] = 2**31


def set_description(data: dict[str, Any]) -> None:
    data["description"] = "edited by hand"


DAMAGES: dict[str, tuple[Callable[[list[str]], list[str]], str]] = {
    "truncated half-way": (lambda lines: lines[: len(lines) // 2], "ends without its trailer"),
    "cut mid-line": (lambda lines: [*lines[:20], lines[20][:30]], "line 21: not JSON"),
    "trailer only removed": (lambda lines: lines[:-1], "ends without its trailer"),
    "one description edited": (
        lambda lines: edit(lines, "agent_type", set_description),
        "checksum does not match",
    ),
    "a message before the results": (message_before_results, "result after message records"),
    "two messages swapped": (two_messages_swapped, r"expects 1 \(the export is out of order\)"),
    "wrong version": (lambda lines: with_version(lines, 2), "export version 2 is not 1"),
    "version true": (lambda lines: with_version(lines, True), "export version True is not 1"),
    "version 1.0": (lambda lines: with_version(lines, 1.0), "export version 1.0 is not 1"),
    "out-of-range round_number": (lambda lines: edit(lines, "message", set_round), "round_number"),
    "a record twice": (lambda lines: [*lines[:-1], lines[-2], lines[-1]], "appears twice"),
    "content after the trailer": (lambda lines: [*lines, lines[1]], "after the trailer"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("kind", BACKENDS)
async def test_a_damaged_export_writes_nothing(kind: str, damage: str, tmp_path: Path) -> None:
    change, reason = DAMAGES[damage]
    path = rewrite(await exported(tmp_path, after_other_ids), change, "damaged.jsonl")
    async with target_store(kind, tmp_path) as target:
        await populate(target, prefix="mine-", runs=1)  # data of its own, with other ids than the file's
        before = await fingerprint(target)
        with pytest.raises(ExportRefused, match=reason):
            await import_store(target, path, batch_size=3)
        after = await fingerprint(target)
        assert (after.counts, after.checksum) == (before.counts, before.checksum)


async def fill_a(store: Store) -> None:
    """Store A of the issue: agent type ``alpha`` (id 1), topology ``ta`` (id 1), one run."""
    await build(store, "ta", "chain", ["alpha"], {})
    await Engine(store, {"alpha": ScriptedAgent([reply({"answer": "a"}, 0.9)])}).run("ta", {})


@pytest.mark.parametrize("kind", BACKENDS)
async def test_ids_of_other_entities_are_a_conflict_naming_both(kind: str, tmp_path: Path) -> None:
    path = await exported(tmp_path, fill_a)
    async with target_store(kind, tmp_path) as target:
        await build(target, "tb", "chain", ["beta", "gamma"], {})  # B: beta (id 1), tb (id 1)
        before = await fingerprint(target)
        with pytest.raises(ExportRefused, match="conflict") as refused:
            await import_store(target, path)
        assert "'beta'" in str(refused.value)
        assert "'alpha'" in str(refused.value)
        after = await fingerprint(target)
        assert (after.counts, after.checksum) == (before.counts, before.checksum)
        execution = (await target.executions.list()).items
        assert execution == []


@pytest.mark.parametrize("kind", BACKENDS)
async def test_a_name_held_under_another_id_is_a_conflict(kind: str, tmp_path: Path) -> None:
    path = await exported(tmp_path, fill_a)
    async with target_store(kind, tmp_path) as target:
        placeholder = await target.agent_types.add(agent_type("zeta"))
        alpha = await target.agent_types.add(agent_type("alpha"))
        assert placeholder.id is not None
        assert alpha.id is not None
        await target.agent_types.delete(placeholder.id)
        before = await fingerprint(target)
        with pytest.raises(ExportRefused, match=f"'alpha' belongs to the target's agent_type {alpha.id}"):
            await import_store(target, path)
        after = await fingerprint(target)
        assert (after.counts, after.checksum) == (before.counts, before.checksum)


@pytest.mark.parametrize("kind", BACKENDS)
async def test_the_same_export_again_is_skipped_not_a_conflict(kind: str, tmp_path: Path) -> None:
    path = await exported(tmp_path)
    async with target_store(kind, tmp_path) as target:
        first_import = await import_store(target, path, batch_size=4)
        assert first_import.written == first_import.counts
        again = await import_store(target, path, batch_size=4)
        assert sum(again.written.values()) == 0
        assert again.checksum == first_import.checksum


class Broken(StoreUnavailable):
    pass


@pytest.mark.parametrize("kind", BACKENDS)
async def test_a_target_failing_mid_write(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With transactions nothing stays; without, the error says what stays and that a rerun
    completes it, and the rerun does."""
    path = await exported(tmp_path)
    async with target_store(kind, tmp_path) as target:
        restore = target.messages.restore_many

        async def fail(messages: Any) -> int:
            raise Broken("the connection dropped")

        monkeypatch.setattr(target.messages, "restore_many", fail)
        with pytest.raises(Broken) as failure:
            await import_store(target, path)
        left = await fingerprint(target)
        assert target.capabilities.transactions == (kind != "mongodb-standalone")
        if target.capabilities.transactions:
            assert sum(left.counts.values()) == 0
            assert "rerun" not in str(failure.value)
        else:
            assert left.counts["execution"] > 0
            assert left.counts["message"] == 0
            assert "rerun the same command to complete it" in str(failure.value)
        monkeypatch.setattr(target.messages, "restore_many", restore)
        done = await import_store(target, path)
        assert sum(done.written.values()) == sum(done.counts.values()) - sum(left.counts.values())
        assert (await fingerprint(target)).counts == done.counts


async def test_an_unknown_reference_is_refused_before_writing(tmp_path: Path) -> None:
    def orphan(data: dict[str, Any]) -> None:
        data["topology_id"] = 999

    path = rewrite(await exported(tmp_path), lambda lines: edit(lines, "execution", orphan), "orphan.jsonl")
    async with target_store("sqlite", tmp_path) as target:
        with pytest.raises(IntegrityError, match="topology_id 999 is neither earlier in the export"):
            await import_store(target, path)
        assert sum((await fingerprint(target)).counts.values()) == 0
