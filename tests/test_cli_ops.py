"""The operations side of the CLI: ``workers``, ``check``, ``stats --watch``, and a worker's
``--metrics-port``, ``--health-port``, ``--log-level`` and ``--log-format``."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import anyio
import pytest

from jdobb_async_queue import JobStatus

from . import test_cli
from .test_cli import LOOPS, Store, run_cli

store = test_cli.store  # the same fixture: a SQLite file, or a Redis namespace

pytestmark = pytest.mark.skipif(run_cli is None, reason="no CLI")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _until(predicate: object, timeout: float = 30.0) -> None:
    async def poll() -> None:
        with anyio.fail_after(timeout):
            while not predicate():  # type: ignore[operator]
                await anyio.sleep(0.05)

    anyio.run(poll)


def test_check_passes_on_a_store_that_answers(store: Store) -> None:
    store.enqueue("add", "--data", '{"a": 1, "b": 1}')  # a SQLite file exists once written
    result = store.run("check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_check_fails_without_enough_workers(store: Store) -> None:
    store.enqueue("add", "--data", '{"a": 1, "b": 1}')
    result = store.run("check", "--min-workers", "1")
    assert result.returncode == 1
    assert "unhealthy: 0 live worker(s)" in result.stderr


def test_check_fails_on_an_unreachable_store() -> None:
    env = {"JDOBB_QUEUE_URL": f"redis://127.0.0.1:{_free_port()}/0", "PATH": "/usr/bin"}
    result = run_cli("check", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")


@pytest.mark.parametrize("loop", LOOPS)
def test_a_worker_serves_health_and_metrics_and_is_listed(store: Store, loop: str) -> None:
    health, metrics = _free_port(), _free_port()
    worker = store.start_worker(
        "jobs:make_worker",
        "--loop",
        loop,
        "--health-port",
        str(health),
        "--metrics-port",
        str(metrics),
        "--ops-host",
        "127.0.0.1",
    )
    worker.wait_for_line("serving /healthz")
    worker.wait_for_line("serving /metrics")
    _until(lambda: _get(health, "/healthz")[0] == 200)
    job_id = store.enqueue("add", "--data", '{"a": 1, "b": 2}')
    store.wait_for_status(job_id, JobStatus.COMPLETE)
    _until(lambda: 'outcome="complete"' in _get(metrics, "/metrics")[1])
    status, body = _get(metrics, "/metrics")
    assert status == 200
    assert 'jdobb_job_attempts_total{job_type="add",outcome="complete"} 1.0' in body
    assert "jdobb_job_run_seconds_bucket" in body
    listed = store.json("workers")
    assert len(listed) == 1 and listed[0]["job_types"] == ["add", "boom", "sleep"]
    assert store.run("check", "--min-workers", "1").returncode == 0
    table = store.ok("workers")
    assert listed[0]["id"] in table
    worker.signal(__import__("signal").SIGTERM)
    assert worker.wait() == 0
    assert store.json("workers") == []


def test_json_logs_have_one_object_per_line(store: Store) -> None:
    job_id = store.enqueue("add", "--data", '{"a": 1, "b": 1}')
    bad = store.enqueue("boom")
    result = store.run("worker", "jobs:make_worker", "--burst", "--log-format", "json")
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    done = [e for e in entries if e.get("job_id") == job_id]
    assert done and done[0]["outcome"] == "complete" and done[0]["job_type"] == "add"
    assert done[0]["attempt"] == 1 and done[0]["duration"] >= 0
    failed = [e for e in entries if e.get("job_id") == bad]
    assert failed[0]["outcome"] == "failed" and "ValueError" in failed[0]["error"]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)


def test_log_level_warning_hides_completions(store: Store) -> None:
    store.enqueue("add", "--data", '{"a": 1, "b": 1}')
    result = store.run("worker", "jobs:make_worker", "--burst", "--log-level", "warning")
    assert result.returncode == 0, result.stderr
    assert "complete in" not in result.stderr
    assert "started" not in result.stderr


def test_stats_watch_refreshes(store: Store) -> None:
    store.enqueue("add", "--data", '{"a": 1, "b": 1}')
    result = store.run("stats", "--watch", "--interval", "0.1", "--count", "3")
    assert result.returncode == 0, result.stderr
    assert "pending" in result.stdout and "per s" in result.stdout


def test_dashboard_serves_the_queue_until_sigterm(store: Store) -> None:
    import signal
    import subprocess

    from .test_cli import APPS, CLI

    job_id = store.enqueue("add", "--data", '{"a": 1, "b": 2}')
    port = _free_port()
    assert CLI is not None
    process = subprocess.Popen(
        [CLI, "dashboard", "--port", str(port), "--read-only"],
        env=store.env,
        cwd=APPS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _until(lambda: _get(port, "/api/stats")[0] == 200 if _listening(port) else False)
        status, body = _get(port, f"/jobs/{job_id}")
        assert status == 200 and job_id in body
        assert "Cancel" not in body  # read-only: no actions
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
    finally:
        process.kill()
        process.communicate()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
