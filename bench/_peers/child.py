"""The two processes of one measurement: the producer and the worker, each started by
``bench/compare.py`` and coordinated through the control Redis (``record``'s keys).

Producer: ``setup``; one warm-up enqueue (joins the backlog); sequential single enqueues until
``jobs`` or ``enqueue_budget`` seconds; pushes its figures to ``ENQUEUED``; waits for
``LATENCY_GO``; then one job at a time with the worker idle, from just before the enqueue call
to the start time the handler pushes to ``STARTS``; prints its result as one JSON line.

Worker: imports the library and connects its control client; pushes ``WORKER_READY``; waits
for ``GO`` (the backlog's size); notes its start time and CPU time in ``STARTED``; runs the
library's worker until terminated.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from . import Env, record

RESULT_MARK = "COMPARE-RESULT "


@dataclass
class ProducerConfig:
    """How much the producer does."""

    jobs: int
    enqueue_budget: float
    samples: int
    latency_budget: float
    seed: int


def _latency(lat: list[float]) -> dict[str, Any]:
    if not lat:
        return {"samples": 0}
    lat.sort()
    return {
        "samples": len(lat),
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }


def _gap(mod: ModuleType, rng: random.Random) -> float:
    # A fixed-period poller would be phase-locked to this loop (each job starts on a poll, the
    # next is enqueued just after it, so every sample would wait a whole period): for it the
    # gap is uniform over one period, so the samples are those of jobs arriving at random times.
    return rng.uniform(0, mod.POLL_PERIOD) if mod.POLL_PERIOD else rng.uniform(0.005, 0.010)


async def _async_producer(mod: ModuleType, env: Env, cfg: ProducerConfig) -> dict[str, Any]:
    import anyio

    ctl = await record.AsyncRedis.connect(env.control)
    rng = random.Random(cfg.seed)
    out: dict[str, Any] = {"notes": []}
    await mod.setup(env)
    async with mod.producer(env) as enqueue:
        await enqueue(0)  # warm-up: connections, scripts; part of the backlog
        n, t0 = 0, time.monotonic()
        deadline = t0 + cfg.enqueue_budget
        while n < cfg.jobs and (n % 64 or time.monotonic() < deadline):
            await enqueue(0)
            n += 1
        out["enqueue_per_s"] = n / (time.monotonic() - t0)
        out["enqueued"] = n
        await ctl.call("RPUSH", record.ENQUEUED, json.dumps({"backlog": n + 1}))
        go = await ctl.call("BLPOP", record.LATENCY_GO, 900)
        if go is None:
            raise SystemExit("no LATENCY_GO from the conductor")
        lat: list[float] = []
        deadline = time.monotonic() + (cfg.latency_budget if go[1] == b"1" else 0)
        while len(lat) < cfg.samples and time.monotonic() < deadline:
            await anyio.sleep(_gap(mod, rng))
            t = time.monotonic()
            await enqueue(1)
            reply = await ctl.call("BLPOP", record.STARTS, 10)
            if reply is None:
                out["notes"].append(f"a latency sample timed out after 10 s ({len(lat)} taken)")
                break
            lat.append((float(reply[1]) - t) * 1000)
    await ctl.aclose()
    return out | _latency(lat)


def _sync_producer(mod: ModuleType, env: Env, cfg: ProducerConfig) -> dict[str, Any]:
    ctl = record.sync_client(env.control)
    rng = random.Random(cfg.seed)
    out: dict[str, Any] = {"notes": []}
    mod.setup(env)
    with mod.producer(env) as enqueue:
        enqueue(0)
        n, t0 = 0, time.monotonic()
        deadline = t0 + cfg.enqueue_budget
        while n < cfg.jobs and (n % 64 or time.monotonic() < deadline):
            enqueue(0)
            n += 1
        out["enqueue_per_s"] = n / (time.monotonic() - t0)
        out["enqueued"] = n
        ctl.rpush(record.ENQUEUED, json.dumps({"backlog": n + 1}))
        go = ctl.blpop([record.LATENCY_GO], timeout=900)
        if go is None:
            raise SystemExit("no LATENCY_GO from the conductor")
        lat: list[float] = []
        deadline = time.monotonic() + (cfg.latency_budget if go[1] == b"1" else 0)
        while len(lat) < cfg.samples and time.monotonic() < deadline:
            time.sleep(_gap(mod, rng))
            t = time.monotonic()
            enqueue(1)
            reply = ctl.blpop([record.STARTS], timeout=10)
            if reply is None:
                out["notes"].append(f"a latency sample timed out after 10 s ({len(lat)} taken)")
                break
            lat.append((float(reply[1]) - t) * 1000)
    ctl.close()
    return out | _latency(lat)


def run_producer(mod: ModuleType, env: Env, cfg: ProducerConfig) -> None:
    """The producer process's main."""
    if mod.ASYNC:
        import anyio

        out = anyio.run(_async_producer, mod, env, cfg, backend=env.loop)
    else:
        out = _sync_producer(mod, env, cfg)
    print(RESULT_MARK + json.dumps(out), flush=True)


def _wait_go(env: Env) -> None:
    ctl = record.sync_client(env.control)
    ctl.rpush(record.WORKER_READY, "1")
    reply = ctl.blpop([record.GO], timeout=300)
    if reply is None:
        raise SystemExit("no GO from the conductor")
    record.target = int(reply[1])
    ctl.rpush(record.STARTED, f"{time.monotonic()!r} {time.process_time()!r}")
    ctl.close()


async def _async_worker(mod: ModuleType, env: Env) -> None:
    await record.open_async(env.control)
    _wait_go(env)  # blocks the loop on purpose: nothing else runs in it yet
    await mod.serve(env)


def run_worker(mod: ModuleType, env: Env) -> None:
    """The worker process's main: runs until terminated."""
    record.open_sync(env.control)
    if mod.ASYNC:
        import anyio

        anyio.run(_async_worker, mod, env, backend=env.loop)
    else:
        _wait_go(env)
        mod.serve(env)
    sys.exit(0)
