"""Prometheus metrics and health probes, on every backend and both loops."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jdobb_async_queue import JobQueue, Worker
from jdobb_async_queue.health import check_store, serve_http, worker_health
from jdobb_async_queue.metrics import CONTENT_TYPE, QueueMetrics
from jdobb_async_queue.testing.contract._support import WAIT, finished, running

pytestmark = pytest.mark.anyio


def _samples(metrics: QueueMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


async def test_attempts_are_counted_and_timed(make_queue: Any) -> None:
    queue: JobQueue = make_queue()
    metrics = QueueMetrics(queue)
    worker = Worker(queue, max_concurrent=2, poll_interval=0.05)
    metrics.instrument(worker)

    @worker.handler("ok")
    async def ok(ctx: Any) -> None:
        return None

    @worker.handler("bad")
    async def bad(ctx: Any) -> None:
        raise RuntimeError("no")

    ids = [await queue.enqueue("ok") for _ in range(3)]
    ids.append(await queue.enqueue("bad", max_retries=1, retry_delay=0.0))
    async with running(worker):
        for job_id in ids:
            await finished(queue, job_id)
    got = _samples(metrics)
    assert got[("jdobb_job_attempts_total", (("job_type", "ok"), ("outcome", "complete")))] == 3
    assert got[("jdobb_job_attempts_total", (("job_type", "bad"), ("outcome", "retrying")))] == 1
    assert got[("jdobb_job_attempts_total", (("job_type", "bad"), ("outcome", "failed")))] == 1
    assert got[("jdobb_job_run_seconds_count", (("job_type", "ok"),))] == 3
    assert got[("jdobb_job_queue_wait_seconds_count", (("job_type", "ok"),))] == 3


async def test_gauges_follow_the_store(make_queue: Any) -> None:
    queue: JobQueue = make_queue()
    metrics = QueueMetrics(queue)
    await queue.enqueue("a")
    await queue.enqueue("a", delay=3600)
    done = await queue.enqueue("b")
    await queue.cancel(done)
    await metrics.refresh()
    got = _samples(metrics)
    assert got[("jdobb_jobs", (("status", "pending"),))] == 2
    assert got[("jdobb_jobs", (("status", "scheduled"),))] == 1
    assert got[("jdobb_jobs", (("status", "cancelled"),))] == 1
    assert got[("jdobb_jobs", (("status", "processing"),))] == 0


async def _get(port: int, path: str) -> tuple[int, bytes, str]:
    with anyio.fail_after(WAIT):
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            await stream.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            reply = b""
            try:
                while True:
                    reply += await stream.receive()
            except anyio.EndOfStream:
                pass
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    kind = next((h.split(": ", 1)[1] for h in lines if h.lower().startswith("content-type")), "")
    return int(lines[0].split()[1]), body, kind


async def test_healthz_and_metrics_over_http(make_queue: Any) -> None:
    queue: JobQueue = make_queue()
    worker = Worker(queue, poll_interval=0.05, drain_timeout=0.5)
    metrics = QueueMetrics(queue)

    @worker.handler("t")
    async def t(ctx: Any) -> None:
        return None

    async def serve_metrics() -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE, metrics.exposition()

    routes = {"/healthz": worker_health(worker), "/metrics": serve_metrics}
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_http, routes, "127.0.0.1", 0)
        status, body, _ = await _get(port, "/healthz")
        assert status == 503 and b"not claiming" in body  # not started yet
        async with running(worker):
            with anyio.fail_after(WAIT):
                while not worker.is_claiming:
                    await anyio.sleep(0.01)
            status, body, _ = await _get(port, "/healthz")
            assert (status, body) == (200, b"ok\n")
            status, body, kind = await _get(port, "/metrics")
            assert status == 200 and b"jdobb_job_attempts_total" in body
            assert kind.startswith("text/plain")
            assert (await _get(port, "/nope"))[0] == 404
        status, _, _ = await _get(port, "/healthz")
        assert status == 503
        tg.cancel_scope.cancel()


async def test_a_closed_store_is_unhealthy(make_queue: Any) -> None:
    queue: JobQueue = make_queue()
    assert await check_store(queue) is None
    await queue.close()
    problem = await check_store(queue)
    assert problem is not None and "closed" in problem
