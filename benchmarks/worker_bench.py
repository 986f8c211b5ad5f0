"""Throughput of worker processes on PostgreSQL (issue 16).

    python -m benchmarks.worker_bench [--workers 4] [--concurrency 25] [--executions 800]

Agents take 100 ms per call (``asyncio.sleep``); the topology is a pipeline of
``--stages`` of them. The per-execution time ``T`` is measured first, one execution alone
in this process; the ideal rate is then ``workers x concurrency / T`` executions a second.
The workers are separate processes (``python -m benchmarks.worker_bench worker ...``) on a
schema of their own; the rate is measured between 10% and 90% of the executions completed,
leaving out the start (processes connecting) and the tail (fewer runs than slots left),
polled every 50 ms with one count (the harness shares the cores it measures).
Also reported: the load average at the end, and the workers' CPU time (user and system,
from their start to their exit, idle polling included) per execution.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

from qmcp_agents.adapters.sql import SqlStore
from qmcp_agents.domain import FINAL_STATUSES, ExecutionStatus
from qmcp_agents.domain.engine import AgentContext, AgentReply, Engine, ScriptedAgent, reply
from qmcp_agents.domain.engine.worker import Worker
from qmcp_agents.testing.builders import register_topology

POSTGRES_URL = os.environ.get("QMCP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
CALL_SECONDS = 0.1
POOL_SIZE = os.environ.get("QMCP_BENCH_POOL")
POOL_OPTIONS: dict[str, Any] = {"pool_size": int(POOL_SIZE)} if POOL_SIZE else {}
"""Each worker's connection pool: the store's default (10, no overflow) unless
``QMCP_BENCH_POOL`` says otherwise; a run holds a connection only while it reads or writes."""
ROOT = Path(__file__).resolve().parents[1]


def answering(context: AgentContext) -> AgentReply:
    return reply({"answer": "ok", "call": context.call}, confidence=0.9)


def agents(stages: int) -> dict[str, ScriptedAgent]:
    return {f"s{i}": ScriptedAgent([answering], delay=CALL_SECONDS) for i in range(stages)}


async def work(schema: str, name: str, concurrency: int, stages: int) -> None:
    async with SqlStore(POSTGRES_URL, schema=schema, **POOL_OPTIONS) as store:
        worker = Worker(Engine(store, agents(stages)), name=name, concurrency=concurrency, poll_seconds=0.05)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
        print("ready", flush=True)
        await worker.run()


def start_fleet(schema: str, workers: int, concurrency: int, stages: int) -> list[subprocess.Popen[str]]:
    command = [sys.executable, "-m", "benchmarks.worker_bench", "worker", schema]
    return [
        subprocess.Popen(
            [*command, f"bench-{index}", str(concurrency), str(stages)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for index in range(workers)
    ]


def stop_fleet(fleet: list[subprocess.Popen[str]]) -> None:
    """SIGTERM, then wait (their CPU time is counted once they are waited for)."""
    for process in fleet:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in fleet:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def bench(workers: int, concurrency: int, executions: int, stages: int) -> dict[str, Any]:
    schema = f"qmcp_bench_{uuid.uuid4().hex[:8]}"
    store = SqlStore(POSTGRES_URL, schema=schema)
    await store.create_schema()
    fleet: list[subprocess.Popen[str]] = []
    try:
        await register_topology(store, "bench", "pipeline", [f"s{i}" for i in range(stages)])
        engine = Engine(store, agents(stages))
        alone = []
        for _ in range(5):
            started = time.perf_counter()
            await engine.run("bench", {"warm": True})
            alone.append(time.perf_counter() - started)
        per_execution = statistics.median(alone)
        for n in range(executions):
            await engine.submit("bench", {"n": n})
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        children_cpu = before.ru_utime + before.ru_stime
        fleet.extend(start_fleet(schema, workers, concurrency, stages))
        for process in fleet:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        marks: dict[int, float] = {}
        low, high = executions // 10, executions - executions // 10
        started = time.perf_counter()
        finished = text(
            f'SELECT count(*) FROM "{schema}".qmcp_executions WHERE status IN '
            f"({', '.join(repr(s.value) for s in sorted(FINAL_STATUSES))})"
        )
        while True:
            # One cheap statement a poll: the harness must not steal the CPU it measures.
            async with store.engine.connect() as conn:
                done = int((await conn.execute(finished)).scalar_one())
            now = time.perf_counter()
            for mark in (low, high):
                if done >= mark and mark not in marks:
                    marks[mark] = now
            if done >= executions:
                break
            if now - started > 600:
                raise TimeoutError(f"{done} of {executions} completed after 600 s")
            await asyncio.sleep(0.05)
        total = time.perf_counter() - started
        stop_fleet(fleet)
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        worker_cpu = used.ru_utime + used.ru_stime - children_cpu
        failed = await store.executions.count(status=ExecutionStatus.FAILED)
        errors = sorted(
            {e.error or "" for e in (await store.executions.list(status=ExecutionStatus.FAILED)).items}
        )
        rate = (high - low) / (marks[high] - marks[low])
        ideal = workers * concurrency / per_execution
        return {
            "workers": workers,
            "concurrency": concurrency,
            "stages": stages,
            "call_seconds": CALL_SECONDS,
            "executions": executions,
            "failed": failed,
            "errors": errors[:5],
            "per_execution_seconds": round(per_execution, 4),
            "ideal_per_second": round(ideal, 1),
            "measured_per_second": round(rate, 1),
            "ratio": round(rate / ideal, 3),
            "whole_run_seconds": round(total, 2),
            "whole_run_per_second": round(executions / total, 1),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "worker_cpu_ms_per_execution": round(worker_cpu / executions * 1000, 1),
        }
    finally:
        stop_fleet(fleet)
        async with store.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await store.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        _, _, schema, name, concurrency, stages = sys.argv
        asyncio.run(work(schema, name, int(concurrency), int(stages)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=25)
    parser.add_argument("--executions", type=int, default=800)
    parser.add_argument("--stages", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(bench(args.workers, args.concurrency, args.executions, args.stages))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
