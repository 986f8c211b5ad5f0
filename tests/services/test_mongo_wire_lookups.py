"""The tests' MongoDB wire server finds by lookup what mongoeco finds by reading the whole
collection: duplicates of unique keys (``UniqueLookups`` in ``mongo_wire_server.py``) and
the documents of an ``_id: {$in: [...]}`` filter (``IdInLookup``), exactly as mongoeco does.

Each scenario runs on two servers of its own: the patched one, and one started with
``--mongoeco-scans`` (mongoeco's own code). Both must answer every command alike (the same
results; the same refusals, with the same error, code, message and key) and end with the
same documents; the expected outcomes are asserted too, so that a scenario cannot pass by
both servers doing nothing. Each scenario names its own fields: the patched server
remembers for good which indexed fields ever held an array (it then scans for them).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from bson import Binary, Int64, ObjectId
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from tests.services.test_mongo_wire_server import LONG, PYTHON, SERVER, wire_server

pytestmark = pytest.mark.asyncio

Collection = Any  # an AsyncCollection of documents
Outcome = Any  # "ok", a refusal (see attempt), or what a command returned


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    folder = tmp_path_factory.mktemp("unique")
    with wire_server(folder, LONG) as lookup, wire_server(folder, LONG, "--mongoeco-scans") as scan:
        yield {"lookup": lookup, "scan": scan}


async def attempt(write: Awaitable[Any]) -> Outcome:
    """``ok``, or what the refusal says."""
    try:
        await write
    except OperationFailure as error:
        details = error.details or {}
        fields = (details.get(key) for key in ("errmsg", "keyPattern", "keyValue"))
        return (type(error).__name__, error.code, *fields)
    return "ok"


def refused(outcome: Outcome) -> bool:
    return isinstance(outcome, tuple) and outcome[:2] == ("DuplicateKeyError", 11000)


Scenario = Callable[[Collection], Awaitable[list[Outcome]]]


async def on_both(servers: dict[str, str], scenario: Scenario) -> list[Outcome]:
    """Run ``scenario`` on a fresh collection of each server (of one name: refusals name
    it); both must agree."""
    outcomes, contents = {}, {}
    name = f"unique_{uuid.uuid4().hex[:10]}"
    for mode, url in servers.items():
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, uuidRepresentation="standard")
        try:
            collection = client[name]["c"]
            outcomes[mode] = await scenario(collection)
            contents[mode] = await collection.find({}).sort("_id", 1).to_list(None)
        finally:
            await client.drop_database(name)
            await client.close()
    assert outcomes["lookup"] == outcomes["scan"]
    assert contents["lookup"] == contents["scan"]
    return outcomes["lookup"]


def fields() -> tuple[str, str]:
    """Two field names no other scenario indexes."""
    tag = uuid.uuid4().hex[:6]
    return f"a{tag}", f"b{tag}"


async def test_a_compound_duplicate_of_scalars_is_refused(servers: dict[str, str]) -> None:
    a, b = fields()

    async def scenario(c: Collection) -> list[Outcome]:
        await c.create_index([(a, 1), (b, -1)], unique=True)
        return [
            await attempt(c.insert_one({"_id": 1, a: 1, b: "x"})),
            await attempt(c.insert_one({"_id": 2, a: 1, b: "y"})),
            await attempt(c.insert_one({"_id": 3, a: 1, b: "x"})),
            await attempt(c.insert_one({"_id": 4, a: 1.0, b: "x"})),  # 1 and 1.0 are one key
            await attempt(c.insert_one({"_id": 5, a: {"n": 1}, b: "x"})),
            await attempt(c.insert_one({"_id": 6, a: {"n": Int64(1)}, b: "x"})),
            await attempt(c.insert_one({"_id": 7, a: 2, b: "x"})),
        ]

    outcomes = await on_both(servers, scenario)
    assert [refused(o) for o in outcomes] == [False, False, True, True, False, True, False]


async def test_a_missing_field_and_null_are_one_key(servers: dict[str, str]) -> None:
    a, b = fields()

    async def scenario(c: Collection) -> list[Outcome]:
        await c.create_index([(a, 1), (b, 1)], unique=True)
        return [
            await attempt(c.insert_one({"_id": 1, a: 1})),
            await attempt(c.insert_one({"_id": 2, a: 1, b: None})),
            await attempt(c.insert_one({"_id": 3})),
            await attempt(c.insert_one({"_id": 4, a: None})),
            await attempt(c.insert_one({"_id": 5, b: None})),
            await attempt(c.insert_one({"_id": 6, a: None, b: 1})),
            await attempt(c.insert_one({"_id": 7, b: 1})),
        ]

    outcomes = await on_both(servers, scenario)
    assert [refused(o) for o in outcomes] == [False, True, False, True, True, False, True]


async def test_arrays_make_duplicates_of_each_of_their_values(servers: dict[str, str]) -> None:
    a, b = fields()

    async def scenario(c: Collection) -> list[Outcome]:
        await c.create_index([(a, 1), (b, 1)], unique=True)
        return [
            await attempt(c.insert_one({"_id": 1, a: 1, b: 3})),
            await attempt(c.insert_one({"_id": 2, a: 1, b: [4, 5]})),
            await attempt(c.insert_one({"_id": 3, a: 1, b: 5})),  # a stored array's second value
            await attempt(c.insert_one({"_id": 4, a: 1, b: [6, 3]})),  # a candidate's second value
            await attempt(c.insert_one({"_id": 5, a: 1, b: 6})),
            await attempt(c.insert_one({"_id": 6, a: [1, 2], b: 7})),
            await attempt(c.insert_one({"_id": 7, a: 2, b: 7})),
        ]

    outcomes = await on_both(servers, scenario)
    assert [refused(o) for o in outcomes] == [False, False, True, True, False, False, True]


async def test_arrays_stored_before_the_index_was_built_count(servers: dict[str, str]) -> None:
    a, b = fields()

    async def scenario(c: Collection) -> list[Outcome]:
        await c.insert_one({"_id": 1, a: 1, b: [{"k": 1}, {"k": 2}]})
        await c.create_index([(a, 1), (f"{b}.k", 1)], unique=True)
        return [
            await attempt(c.insert_one({"_id": 2, a: 1, b: {"k": 2}})),
            await attempt(c.insert_one({"_id": 3, a: 1, b: {"k": 3}})),
        ]

    outcomes = await on_both(servers, scenario)
    assert [refused(o) for o in outcomes] == [True, False]


async def test_an_update_into_a_duplicate_is_refused_and_of_the_document_itself_allowed(
    servers: dict[str, str],
) -> None:
    a, b = fields()

    async def scenario(c: Collection) -> list[Outcome]:
        await c.create_index([(a, 1), (b, 1)], unique=True)
        await c.insert_many([{"_id": 1, a: 1, b: 1}, {"_id": 2, a: 1, b: 2}])
        return [
            await attempt(c.update_one({"_id": 2}, {"$set": {b: 1}})),
            await attempt(c.update_one({"_id": 1}, {"$set": {"other": 5}})),
            await attempt(c.update_one({"_id": 1}, {"$set": {b: 1.0}})),
            await attempt(c.replace_one({"_id": 1}, {a: 1, b: 1, "again": True})),
            await attempt(c.replace_one({"_id": 2}, {a: 1, b: 1})),
            await attempt(c.find_one_and_update({"_id": 2}, {"$set": {b: 1}})),
            await attempt(c.update_one({"_id": 3}, {"$set": {a: 1, b: 2}}, upsert=True)),
            await attempt(c.update_one({"_id": 1}, {"$set": {b: 3}})),
            await attempt(c.update_one({"_id": 2}, {"$set": {b: 1}})),  # 1 is free now
        ]

    outcomes = await on_both(servers, scenario)
    assert [refused(o) for o in outcomes] == [True, False, False, False, True, True, True, False, False]


async def test_duplicates_are_refused_in_a_transaction(servers: dict[str, str]) -> None:
    a, b = fields()

    async def scenario(c: Collection) -> list[Outcome]:
        await c.create_index([(a, 1), (b, 1)], unique=True)
        await c.insert_one({"_id": 1, a: 1, b: 1})
        outcomes = []
        for duplicate in ({"_id": 3, a: 2, b: 2}, {"_id": 4, a: 1, b: 1}):  # its own write; a committed one
            async with c.database.client.start_session() as session:
                await session.start_transaction()
                outcomes.append(await attempt(c.insert_one({"_id": 2, a: 2, b: 2}, session=session)))
                outcomes.append(await attempt(c.insert_one(duplicate, session=session)))
                if session.in_transaction:
                    await session.abort_transaction()
        async with c.database.client.start_session() as session:
            await session.start_transaction()
            outcomes.append(await attempt(c.insert_one({"_id": 5, a: 3, b: 3}, session=session)))
            outcomes.append(await attempt(c.update_one({"_id": 5}, {"$set": {"n": 1}}, session=session)))
            await session.commit_transaction()
        return outcomes

    outcomes = await on_both(servers, scenario)
    assert [refused(o) for o in outcomes] == [False, True, False, True, False, False]


async def test_partial_and_sparse_indexes_hold_only_their_members(servers: dict[str, str]) -> None:
    a, b = fields()
    s, t = f"{a}_s", f"{a}_t"

    async def scenario(c: Collection) -> list[Outcome]:
        await c.create_index([(a, 1), (b, 1)], unique=True, partialFilterExpression={a: {"$gt": 0}})
        await c.create_index([(s, 1), (t, 1)], unique=True, sparse=True)
        return [
            await attempt(c.insert_one({"_id": 1, a: 0, b: 1})),
            await attempt(c.insert_one({"_id": 2, a: 0, b: 1})),  # outside the filter
            await attempt(c.insert_one({"_id": 3, a: 1, b: 1})),
            await attempt(c.insert_one({"_id": 4, a: 1, b: 1})),
            await attempt(c.update_one({"_id": 1}, {"$set": {a: 1}})),  # into the filter
            await attempt(c.insert_one({"_id": 5, a: 2, b: 2, s: 1})),
            await attempt(c.insert_one({"_id": 6, a: 3, b: 2, s: 1})),
            await attempt(c.insert_one({"_id": 7, a: 4, b: 2})),  # outside the sparse index
            await attempt(c.insert_one({"_id": 8, a: 5, b: 2})),
            await attempt(c.insert_one({"_id": 9, a: 6, b: 2, t: None})),  # inside: (null, null)
            await attempt(c.insert_one({"_id": 10, a: 7, b: 2, s: None})),
        ]

    outcomes = await on_both(servers, scenario)
    expected = [False, False, False, True, True, False, True, False, False, False, True]
    assert [refused(o) for o in outcomes] == expected


async def test_a_collation_index_compares_by_its_collation(servers: dict[str, str]) -> None:
    a, b = fields()

    async def scenario(c: Collection) -> list[Outcome]:
        await c.create_index([(a, 1), (b, 1)], unique=True, collation={"locale": "en", "strength": 2})
        return [
            await attempt(c.insert_one({"_id": 1, a: "X", b: 1})),
            await attempt(c.insert_one({"_id": 2, a: "x", b: 1})),
            await attempt(c.insert_one({"_id": 3, a: "y", b: 1})),
        ]

    outcomes = await on_both(servers, scenario)
    assert [refused(o) for o in outcomes] == [False, True, False]


async def test_a_duplicate_id_is_refused_whatever_its_type(servers: dict[str, str]) -> None:
    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    same = [
        (uuid.UUID(int=7), uuid.UUID(int=7)),
        ("s", "s"),
        (ObjectId("0123456789ab0123456789ab"), ObjectId("0123456789ab0123456789ab")),
        (when, when),
        (1, 1.0),
        (Int64(2), 2),
        ({"k": 1}, {"k": 1.0}),
        (b"xy", Binary(b"xy", 0)),
        (Binary(b"zz", 5), Binary(b"zz", 5)),
    ]
    different = [(True, 3), ("t", b"t"), (Binary(b"ww", 5), Binary(b"ww", 6)), ({"k": 4}, {"k": "4"})]

    async def scenario(c: Collection) -> list[Outcome]:
        outcomes = []
        for first, second in [*same, *different]:
            outcomes.append(await attempt(c.insert_one({"_id": first})))
            outcomes.append(await attempt(c.insert_one({"_id": second})))
        return outcomes

    outcomes = await on_both(servers, scenario)
    assert [refused(o) for o in outcomes] == [False, True] * len(same) + [False, False] * len(different)


async def test_an_id_in_filter_finds_what_a_scan_finds(servers: dict[str, str]) -> None:
    ids = [uuid.UUID(int=n) for n in range(1, 6)]
    oid = ObjectId("0123456789ab0123456789ab")

    async def scenario(c: Collection) -> list[Outcome]:
        await c.insert_many([{"_id": i, "n": n} for n, i in enumerate(ids)])
        await c.insert_many([{"_id": oid, "n": 10}, {"_id": "s", "n": 11}, {"_id": 7, "n": 12}])
        some = {"_id": {"$in": [ids[3], ids[0], uuid.UUID(int=99), oid]}}
        return [
            await c.find(some).to_list(None),  # the natural order, not the $in's
            await c.find({"_id": {"$in": [ids[1], "s", 7.0]}}).to_list(None),  # not all UUIDs
            await c.find({"$and": [some, {"n": {"$gte": 3}}]}).to_list(None),
            await c.count_documents(some),
            (await c.update_one(some, {"$inc": {"n": 100}})).modified_count,  # the first in natural order
            (await c.update_many(some, {"$inc": {"n": 1000}})).modified_count,
            await attempt(c.update_one({"_id": {"$in": [ids[4]]}}, {"$setOnInsert": {"x": 1}}, upsert=True)),
            (
                await c.update_one({"_id": {"$in": [uuid.UUID(int=98)]}}, {"$set": {"x": 1}}, upsert=True)
            ).upserted_id,
            await c.find_one_and_delete({"_id": {"$in": [ids[2]]}}),
            (await c.delete_many({"_id": {"$in": [ids[1], ids[2]]}})).deleted_count,
            await c.find({"_id": {"$in": [ids[0]]}}, collation={"locale": "en", "strength": 2}).to_list(None),
        ]

    outcomes = await on_both(servers, scenario)
    assert outcomes[0] == [{"_id": ids[0], "n": 0}, {"_id": ids[3], "n": 3}, {"_id": oid, "n": 10}]
    assert outcomes[1] == [{"_id": ids[1], "n": 1}, {"_id": "s", "n": 11}, {"_id": 7, "n": 12}]
    assert outcomes[2:8] == [
        [{"_id": ids[3], "n": 3}, {"_id": oid, "n": 10}],
        3,
        1,
        3,
        "ok",
        uuid.UUID(int=98),
    ]
    assert outcomes[8:] == [{"_id": ids[2], "n": 2}, 1, [{"_id": ids[0], "n": 1100}]]


IN_PROCESS = """
import json, sys
sys.argv = sys.argv[:1]
sys.path.insert(0, sys.argv[0])
import mongo_wire_server
from bson import Binary
from mongoeco import MongoClient
from mongoeco.errors import DuplicateKeyError

mongo_wire_server.UniqueLookups.install()
collection = MongoClient().db.c
outcomes = []
pairs = [(b"xy", Binary(b"xy", 0)), (Binary(b"zw", 0), b"zw"), ({"k": b"v"}, {"k": Binary(b"v", 0)})]
for first, second in pairs:
    collection.insert_one({"_id": first})
    try:
        collection.insert_one({"_id": second})
        outcomes.append("ok")
    except DuplicateKeyError:
        outcomes.append("refused")
print(json.dumps([outcomes, collection.count_documents({})]))
"""


async def test_ids_equal_in_bson_under_other_storage_keys_are_refused() -> None:
    """``bytes`` and ``Binary(..., 0)`` are one BSON value stored under two keys. No wire
    client can send both (BSON has one binary subtype 0), so this runs mongoeco in process,
    patched as the server patches it."""
    script = IN_PROCESS.replace("sys.argv[0]", repr(str(SERVER.parent)))
    process = await asyncio.create_subprocess_exec(
        str(PYTHON), "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    assert json.loads(stdout) == [["refused", "refused", "refused"], 3]


@pytest.mark.parametrize(
    "kind",
    ["insert", "insert, compound unique", "update, compound unique", "upsert by _id $in, compound unique"],
)
async def test_a_write_costs_the_server_as_much_at_1000_documents_as_at_100(
    servers: dict[str, str], kind: str
) -> None:
    """The shortest wall time of one write (the server's time, the client's being the same)
    at ~1,000 documents is within 2x of that at ~100. With mongoeco's scans an insert took
    3x as long (no index: the single insert's ``_id`` scan) and 10x (a compound unique
    index), an upsert filtered by ``_id: {$in: ...}`` 4x, and an update of a document itself
    would if its own key counted as a hit."""
    url = servers["lookup"]
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, uuidRepresentation="standard")
    name = f"unique_{uuid.uuid4().hex[:10]}"
    try:
        collection = client[name]["c"]
        if "compound" in kind:
            await collection.create_index([("execution_id", 1), ("first", 1)], unique=True)
        execution_id, times = uuid.uuid4(), []
        for i in range(1100):
            document = {"_id": uuid.uuid4(), "execution_id": execution_id, "first": i, "text": "x" * 200}
            start = time.perf_counter()
            if kind.startswith("upsert"):  # the messages' append (see adapters/mongo/messages.py)
                filter_ = {"_id": {"$in": [execution_id, document["_id"]]}}
                await collection.update_one(filter_, {"$setOnInsert": document}, upsert=True)
            else:
                await collection.insert_one(document)
            if kind.startswith("update"):
                start = time.perf_counter()
                await collection.update_one({"_id": document["_id"]}, {"$set": {"n": i}})
            times.append(time.perf_counter() - start)
        early, late = min(times[100:200]), min(times[1000:1100])  # the least disturbed by load
        assert late < 2 * early, (
            f"{early * 1e3:.2f} ms per write at 100 documents, {late * 1e3:.2f} ms at 1,000"
        )
    finally:
        await client.drop_database(name)
        await client.close()
