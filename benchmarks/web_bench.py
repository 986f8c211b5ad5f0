"""Render time of the web view's pages on a big store (SQLite file).

python -m benchmarks.web_bench [--executions 10000] [--messages 5000] [--repeat 30]

A store with ``--executions`` executions and one execution of ``--messages`` messages; each
page is requested ``--repeat`` times in process (no network), and the median is reported
against the same run's baseline: the store reads the page needs, without rendering.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from qmcp_agents.adapters import open_store
from qmcp_agents.adapters.web import create_app, reads
from qmcp_agents.domain import AgentInstance, Execution, MessageCreate, MessageType
from qmcp_agents.domain.ports import Store
from qmcp_agents.testing.builders import register_topology


async def fill(store: Store, executions: int, messages: int) -> Any:
    await store.create_schema()
    await register_topology(
        store, "bench", "debate", ["pro", "con", "judge"], {"mediator_agent_name": "judge"}
    )
    topology = await store.topologies.get_by_name("bench")
    assert topology.id is not None
    batch: list[Execution] = []
    for _ in range(executions):
        execution = Execution(topology_id=topology.id, input_data={"q": "bench"})
        execution.start()
        execution.mark_complete({"answer": "ok"})
        batch.append(execution)
        if len(batch) == 1000:
            await store.executions.add_many(batch)
            batch = []
    if batch:
        await store.executions.add_many(batch)
    long_run = Execution(topology_id=topology.id, input_data={"q": "long"})
    long_run.start()
    long_run = await store.executions.add(long_run)
    senders = [
        await store.agent_instances.add(
            AgentInstance(
                agent_type_id=t.agent_type_id, execution_id=long_run.id, metadata={"slot": t.slot_name}
            )
        )
        for t in topology.memberships
    ]
    for start in range(0, messages, 1000):
        await store.messages.append(
            long_run.id,
            [
                MessageCreate(
                    sender_id=senders[i % len(senders)].id,
                    message_type=MessageType.RESPONSE,
                    content={"output": {"answer": i % 2}, "confidence": (i % 10) / 10},
                    round_number=i // 30,
                )
                for i in range(start, min(start + 1000, messages))
            ],
        )
    return long_run.id


async def median_of(repeat: int, work: Any) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'web.db'}"
        async with open_store(url) as store:
            started = time.perf_counter()
            long_id = await fill(store, args.executions, args.messages)
            print(
                f"filled {args.executions:,} executions and a {args.messages:,}-message one "
                f"in {time.perf_counter() - started:.1f} s"
            )
            app = create_app(store=store)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

                async def list_page() -> None:
                    assert (await client.get("/")).status_code == 200

                async def execution_page() -> None:
                    assert (await client.get(f"/executions/{long_id}")).status_code == 200

                async def list_reads() -> None:
                    await reads.executions_page(store, status=None, topology=None, since=None, after=None)

                async def execution_reads() -> None:
                    await reads.execution_view(store, long_id)

                async def list_store_only() -> None:
                    await store.executions.list(limit=reads.PAGE)

                async def chart_svg() -> None:
                    assert (await client.get(f"/executions/{long_id}/chart.svg")).status_code == 200

                async def chart_reads() -> None:
                    await reads.chart(store, long_id)

                figures = [
                    (
                        "executions list page (50 of {})".format(f"{args.executions:,}"),
                        list_page,
                        list_store_only,
                    ),
                    (
                        f"execution page ({args.messages:,} messages; 200-row transcript page)",
                        execution_page,
                        execution_reads,
                    ),
                    (
                        f"chart.svg ({args.messages:,} messages, loaded after the page)",
                        chart_svg,
                        chart_reads,
                    ),
                    ("executions list reads (no rendering)", list_reads, list_store_only),
                ]
                print(f"{'page':<72} {'median':>10} {'baseline':>10} {'ratio':>7}")
                for name, work, baseline in figures:
                    await work()
                    ours = await median_of(args.repeat, work)
                    base = await median_of(args.repeat, baseline)
                    print(f"{name:<72} {ours * 1000:>8.1f}ms {base * 1000:>8.1f}ms {ours / base:>6.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=30)
    asyncio.run(main(parser.parse_args()))
