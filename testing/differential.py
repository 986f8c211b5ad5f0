"""A differential property test: hostile calls give the same answers on every backend.

Hypothesis draws a sequence of repository calls with hostile arguments (int32/int64 edges,
wrong id types, lone surrogates, NUL, tampered cursors, datetimes at the edges of the range
with offsets) and random cancellations. Each call runs on the store under test and on a
memory store (the reference), and both must give the same result or the same error class.
A cancelled append must have written all of its messages or none; the reference then
replays what the store did, so the two stay comparable.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from qmcp_agents.adapters.memory import MemoryStore
from qmcp_agents.domain import (
    AgentInstance,
    AgentRole,
    AgentType,
    Execution,
    Message,
    MessageCreate,
    MessageType,
    Topology,
    TopologyMembership,
    uuid7,
)
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.queries import Page

from .runner import StoreFactory, StoreSession

INT32 = 2**31
INT64 = 2**63
MISSING = UUID("01234567-89ab-7def-8123-456789abcdef")

ints = st.sampled_from(
    [1, 2, 0, -1, INT32 - 1, INT32, INT64 - 1, INT64, -(2**63) - 1, True, "1", 1.0, {"$gt": 0}]
)
hostile_text = st.sampled_from(
    [
        "ok",
        "",
        "\x00",
        "a\x00b",
        "\ud800",
        "\udfff x",
        "\ud83d\ude00",
        "\U0001f600",
        "\u212aelvin",
        " 1",
        "$set",
        "a.b",
    ]
)
names = st.sampled_from(
    ["planner", "PLANNER", "\u212aELVIN", "kelvin", "pl\x00", "", "x" * 65, "a b", "\udc80", 5, None]
)
datetimes = st.sampled_from(
    [
        datetime.max.replace(tzinfo=timezone(-timedelta(hours=5))),
        datetime.max.replace(tzinfo=timezone(timedelta(hours=5))),
        datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),
        datetime.min.replace(tzinfo=UTC),
        datetime.max,
        datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=-14))),
        datetime(2020, 1, 1),
    ]
)
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, INT64 - 1, -INT64, INT64, 1.5, 1e16, float("nan")]),
    hostile_text,
)
payloads = st.dictionaries(hostile_text, st.one_of(json_leaf, st.lists(json_leaf, max_size=3)), max_size=3)


def _tamper(cursor: str, how: int) -> str:
    return [
        cursor,
        " " + cursor,
        "+" + cursor,
        cursor + "0",
        "0" + cursor,
        "-" + cursor,
        cursor.upper(),
        "1_0",
    ][how]


calls = st.one_of(
    st.tuples(st.just("get_type"), ints),
    st.tuples(st.just("find_type_by_name"), names),
    st.tuples(
        st.just("add_type"), names, st.sampled_from(["1.0.0", "1." + "2" * 70 + ".3", "1.0", "1.0.0\x00"])
    ),
    st.tuples(
        st.just("get_execution"), st.sampled_from(["real", "missing", "str", "upper", 5, {"$ne": None}, True])
    ),
    st.tuples(st.just("append"), st.lists(st.tuples(payloads, ints), min_size=0, max_size=3)),
    st.tuples(
        st.just("list_messages"),
        st.sampled_from([None, 0, 1, 2, 3, 4, 5, 6, 7]),
        st.one_of(st.none(), ints),
        st.sampled_from([1, 2, 1000, 0, 1001, True]),
    ),
    st.tuples(st.just("last"), st.sampled_from([1, 3, 1000, 0, 1001, True, "2"])),
    st.tuples(st.just("count_executions"), ints, hostile_text, datetimes),
    st.tuples(st.just("list_executions"), st.sampled_from([None, 0, 1, 2, 3, 4, 5, 6])),
    st.tuples(st.just("cancelled_append"), st.integers(1, 30), st.floats(0, 0.004)),
)


def _summary(value: Any) -> Any:
    """What must be equal across backends: no store-made timestamps."""
    if isinstance(value, Page):
        return ("page", [_summary(item) for item in value.items], value.next_cursor)
    if isinstance(value, list):
        return [_summary(item) for item in value]
    if isinstance(value, Message):  # message ids are made by the store, one per append
        return value.model_dump(mode="json", exclude={"created_at", "id"})
    if isinstance(value, AgentType):  # int ids come from the store's counter; failed adds may
        # consume one (PostgreSQL sequences, the memory store) or not (SQLite), so only equality
        # of everything else is a cross-backend promise
        return value.model_dump(mode="json", exclude={"created_at", "updated_at", "id"})
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude={"created_at", "updated_at"})
    return value


class _Pair:
    """The store under test and the reference, with the same seed entities."""

    def __init__(self, session: StoreSession) -> None:
        self.session = session
        self.store = session.store
        self.reference: Store = MemoryStore()
        self.execution_id = uuid7()
        self.sender = uuid7()
        self.started = datetime.now(UTC)
        self.cursor = "1"
        self.uuid_cursor = str(self.execution_id)
        self.seed_type_ids: dict[int, int] = {}
        self.run(self._seed(self.store), self._seed(self.reference))

    def run(self, *awaitables: Any) -> list[Any]:
        return [self.session.run(a) for a in awaitables]

    async def _seed(self, store: Store) -> None:
        kind = await store.agent_types.add(AgentType(name="planner", description="d", role="planner"))
        assert kind.id is not None
        self.seed_type_ids[id(store)] = kind.id
        team = await store.topologies.add(
            Topology(
                name="team",
                description="d",
                topology_type="ensemble",
                memberships=[TopologyMembership(agent_type_id=kind.id, slot_name="a")],
            )
        )
        assert team.id is not None
        execution = Execution(
            id=self.execution_id, topology_id=team.id, input_data={}, started_at=self.started
        )
        execution.start()
        await store.executions.add(execution)
        await store.agent_instances.add(
            AgentInstance(id=self.sender, agent_type_id=kind.id, execution_id=self.execution_id)
        )

    def drafts(self, specs: list[tuple[dict[str, Any], Any]]) -> list[MessageCreate]:
        # Built without validation, so that the store's own checks are what is compared.
        return [
            MessageCreate.model_construct(
                sender_id=self.sender,
                recipient_id=None,
                message_type=MessageType.BROADCAST,
                content=content,
                round_number=round_number,
            )
            for content, round_number in specs
        ]

    def _type_id(self, store: Store, value: Any) -> Any:
        """Agent type ids are each store's own counter (a refused add consumes one on
        PostgreSQL and memory, not on SQLite or MongoDB), so a small int id names the same
        entity on both sides only for the seed: 1 is the seed's id in each store, 2 an id no
        store has handed out; every other value goes through as it is (hostile ones too)."""
        if type(value) is int and value == 1:
            return self.seed_type_ids[id(store)]
        if type(value) is int and value == 2:
            return INT32 - 2
        return value

    def call(self, store: Store, step: tuple[Any, ...]) -> Any:
        kind, *args = step
        ids = {
            "real": self.execution_id,
            "missing": MISSING,
            "str": str(self.execution_id),
            "upper": str(self.execution_id).upper(),
        }
        if kind == "get_type":
            return store.agent_types.get(self._type_id(store, args[0]))
        if kind == "find_type_by_name":
            return store.agent_types.find_by_name(args[0])
        if kind == "add_type":
            return store.agent_types.add(
                AgentType.model_construct(
                    name=args[0],
                    description="d",
                    role=AgentRole.PLANNER,
                    version=args[1],
                    revision=0,
                    id=None,
                )
            )
        if kind == "get_execution":
            return store.executions.get(ids.get(args[0], args[0]) if isinstance(args[0], str) else args[0])  # type: ignore[arg-type]
        if kind == "append":
            return store.messages.append(self.execution_id, self.drafts(args[0]))
        if kind == "list_messages":
            after = None if args[0] is None else _tamper(self.cursor, args[0])
            return store.messages.list(self.execution_id, after=after, round_number=args[1], limit=args[2])
        if kind == "last":
            return store.messages.last(self.execution_id, args[0])
        if kind == "count_executions":
            return store.executions.count(topology_id=args[0], correlation_id=args[1], started_after=args[2])
        if kind == "list_executions":
            after = None if args[0] is None else _tamper(self.uuid_cursor, args[0])
            return store.executions.list(after=after)
        raise AssertionError(kind)

    def outcome(self, store: Store, step: tuple[Any, ...]) -> Any:
        async def attempt() -> Any:
            try:
                return _summary(await self.call(store, step))
            except Exception as error:
                return ("error", type(error).__name__)

        return self.session.run(attempt())

    def cancelled_append(self, size: int, timeout: float) -> None:
        drafts = self.drafts([({"i": i}, 0) for i in range(size)])

        async def on_store() -> int:
            before = await self.store.messages.count(self.execution_id)
            with suppress(TimeoutError):
                await asyncio.wait_for(self.store.messages.append(self.execution_id, drafts), timeout)
            return await self.store.messages.count(self.execution_id) - before

        written = self.session.run(on_store())
        assert written in (0, size), f"a cancelled append wrote {written} of {size} messages"
        if written:
            self.session.run(self.reference.messages.append(self.execution_id, drafts))

    def step(self, step: tuple[Any, ...]) -> None:
        if step[0] == "cancelled_append":
            self.cancelled_append(step[1], step[2])
            return
        got, expected = self.outcome(self.store, step), self.outcome(self.reference, step)
        assert got == expected, f"{step!r}: store {got!r} != reference {expected!r}"
        if step[0] == "list_messages" and isinstance(got, tuple) and got[0] == "page" and got[2]:
            self.cursor = got[2]


def run_differential(make_store: StoreFactory, examples: int) -> None:
    """Drive ``examples`` random call sequences on a store from ``make_store`` and a reference."""
    session = StoreSession(make_store)
    try:
        pair = _Pair(session)

        @settings(max_examples=examples, suppress_health_check=list(HealthCheck), deadline=None)
        @given(steps=st.lists(calls, min_size=1, max_size=12))
        def check(steps: list[tuple[Any, ...]]) -> None:
            for step in steps:
                pair.step(step)

        check()
    finally:
        session.close()


__all__ = ["run_differential"]
