"""The dashboard over httpx's ASGI transport: every page, filters, paging, actions, the token,
read-only mode, server-sent events and the throughput sampler, on every backend and loop."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timezone
from html import escape
from typing import Any

import anyio
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette
from starlette.routing import Mount

from jdobb_async_queue import JobQueue, JobStatus, Worker
from jdobb_async_queue.dashboard import COOKIE, create_app

from ..conftest import QueueFactory
from ._support import SSE, client, counts, finish, row_ids, running

pytestmark = pytest.mark.anyio

EVIL = '<script>alert("x")</script>'


@pytest.fixture
async def queue(make_queue: QueueFactory) -> JobQueue:
    return make_queue()


# -- pages ------------------------------------------------------------------------------------


async def test_every_page_renders_and_escapes_user_data(queue: JobQueue) -> None:
    dep = await queue.enqueue(f"dep{EVIL}")
    job_id = await queue.enqueue(
        f"type{EVIL}",
        {"payload": EVIL},
        metadata={"note": EVIL},
        depends_on=[dep],
        job_id=f"id{EVIL}",
    )
    failed = await finish(queue, f"fail{EVIL}", fail=True)
    app = create_app(queue, title=f"Title{EVIL}")
    async with client(app) as c:
        pages = ["/", "/jobs", "/workers", f"/jobs/{job_id}", f"/jobs/{failed}", "/jobs?type=x"]
        for path in pages:
            r = await c.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-type"].startswith("text/html")
            assert "<script>alert" not in r.text, path
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert escape("Title" + EVIL) in r.text
        page = (await c.get(f"/jobs/{job_id}")).text
        assert escape(f"type{EVIL}") in page
        assert escape(EVIL) in page  # the payload and metadata, escaped
        assert escape(f"dep{EVIL}") not in page or True
        assert f"/jobs/{dep}" in page  # the dependency, linked
        assert "boom" in (await c.get(f"/jobs/{failed}")).text
        for asset in ("/static/dashboard.js", "/static/dashboard.css"):
            assert (await c.get(asset)).status_code == 200


async def test_overview_counts_per_status_and_per_type(queue: JobQueue) -> None:
    await finish(queue, "email")
    await finish(queue, "email")
    await finish(queue, "resize", fail=True)
    await queue.enqueue("resize")
    cancelled = await queue.enqueue("email")
    await queue.cancel(cancelled)
    app = create_app(queue)
    async with client(app) as c:
        shown = counts((await c.get("/")).text)
        assert shown["complete"] == 2
        assert shown["failed"] == 1
        assert shown["pending"] == 1
        assert shown["cancelled"] == 1
        assert shown["processing"] == 0
        assert shown["total"] == 5
        data = (await c.get("/api/stats")).json()
        assert data["stats"]["complete"] == 2
        assert data["by_type"] == {
            "email": {"pending": 0, "processing": 0, "complete": 2, "failed": 0, "cancelled": 1},
            "resize": {"pending": 1, "processing": 0, "complete": 0, "failed": 1, "cancelled": 0},
        }
        assert data["truncated"] == []


async def test_jobs_filter_by_status_and_type_with_paging(queue: JobQueue) -> None:
    a_ids = [await queue.enqueue("a", {"n": n}) for n in range(7)]
    b_ids = [await queue.enqueue("b") for _ in range(3)]
    done = await finish(queue, "a")
    app = create_app(queue)
    async with client(app) as c:
        first = (await c.get("/jobs", params={"type": "a", "status": "pending", "limit": 3})).text
        assert row_ids(first) == a_ids[:3]  # pending: claim order
        assert 'rel="next"' in first and 'rel="prev"' not in first
        last = (
            await c.get("/jobs", params={"type": "a", "status": "pending", "limit": 3, "offset": 6})
        ).text
        assert row_ids(last) == a_ids[6:]
        assert 'rel="prev"' in last and 'rel="next"' not in last
        assert set(row_ids((await c.get("/jobs", params={"type": "b"})).text)) == set(b_ids)
        assert row_ids((await c.get("/jobs", params={"status": "complete"})).text) == [done]
        everything = row_ids((await c.get("/jobs", params={"limit": 100})).text)
        assert set(everything) == {*a_ids, *b_ids, done}
        assert "no jobs match" in (await c.get("/jobs", params={"type": "nope"})).text

        params = {"type": "a", "status": "pending", "limit": 2, "offset": 2}
        api = (await c.get("/api/jobs", params=params)).json()
        assert [j["id"] for j in api["jobs"]] == a_ids[2:4]
        assert api["has_more"] is True
        for bad in ({"status": "weird"}, {"limit": "0"}, {"limit": "x"}, {"offset": "-1"}):
            assert (await c.get("/jobs", params=bad)).status_code == 400
            assert (await c.get("/api/jobs", params=bad)).status_code == 400


async def test_job_page_and_api_show_everything(queue: JobQueue) -> None:
    dep = await finish(queue, "dep")
    job_id = await queue.enqueue("work", {"x": 1}, depends_on=[dep], max_retries=2, timeout=9)
    claimed = await queue.claim(["work"])
    assert claimed is not None
    await queue.update(job_id, 0.25, "a quarter")
    app = create_app(queue)
    async with client(app) as c:
        page = (await c.get(f"/jobs/{job_id}")).text
        assert 'id="job-status" class="badge status-processing"' in page
        assert 'id="job-progress" max="1" value="0.2500"' in page
        assert "a quarter" in page and "25%" in page
        assert "retries allowed: 2" in page and "9 s" in page
        assert f"/jobs/{dep}" in page and "status-complete" in page
        assert 'id="cancel-form"' in page and '<form hidden method="post"' in page  # retry hidden
        job = (await c.get(f"/api/jobs/{job_id}")).json()
        assert job["status"] == "processing" and job["progress"] == 0.25
        assert job["attempts"] == 1 and job["depends_on"] == [dep]
        await queue.complete(job_id, {"answer": 42})
        page = (await c.get(f"/jobs/{job_id}")).text
        assert "&quot;answer&quot;: 42" in page
        assert (await c.get(f"/api/jobs/{job_id}")).json()["duration"] is not None
        assert (await c.get("/jobs/missing")).status_code == 404
        assert (await c.get("/api/jobs/missing")).status_code == 404
        assert (await c.get("/api/jobs/missing/events")).status_code == 404
        assert (await c.get("/api/nothing")).json() == {"error": "not found"}


async def test_ids_with_slashes_and_reserved_words(queue: JobQueue) -> None:
    odd = await queue.enqueue("t", job_id="a/b c?&d")
    named = await queue.enqueue("t", job_id="purge")
    app = create_app(queue, token="T")
    auth = {"authorization": "Bearer T"}
    async with client(app) as c:
        page = (await c.get("/jobs")).text
        assert "/jobs/a%2Fb%20c%3F%26d" in page
        assert (await c.get("/jobs/a%2Fb%20c%3F%26d")).status_code == 200
        assert (await c.get(f"/api/jobs/{named}")).json()["id"] == "purge"
        r = await c.post("/api/jobs/a%2Fb%20c%3F%26d/cancel", headers=auth)
        assert r.json() == {"ok": True}
        assert (await queue.get(odd)).status is JobStatus.CANCELLED  # type: ignore[union-attr]


# -- workers ----------------------------------------------------------------------------------


@dataclasses.dataclass
class _FakeWorker:
    id: str
    host: str
    pid: int
    concurrency: int
    job_types: list[str]
    running: list[str]
    last_heartbeat: datetime


async def test_workers_page_and_api(queue: JobQueue) -> None:
    app = create_app(queue)
    async with client(app) as c:
        r = await c.get("/workers")
        assert r.status_code == 200 and 'id="worker-table"' in r.text
        data = (await c.get("/api/workers")).json()
        if not hasattr(JobQueue, "workers"):
            assert data == {"supported": False, "workers": []}
            assert "does not list its workers" in r.text

    class Listed:
        """A queue whose workers() lists one (the lead's API, faked)."""

        def __init__(self, inner: JobQueue) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        async def workers(self) -> list[_FakeWorker]:
            at = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
            return [_FakeWorker(f"w{EVIL}", "host1", 42, 4, ["email"], ["j1", "j2"], at)]

    app = create_app(Listed(queue))  # type: ignore[arg-type]
    async with client(app) as c:
        page = (await c.get("/workers")).text
        assert escape(f"w{EVIL}") in page and "<script>alert" not in page
        assert "<th>last_heartbeat</th>" in page and "j1, j2" in page
        assert "host1" in (await c.get("/")).text
        data = (await c.get("/api/workers")).json()
        assert data["supported"] is True
        assert data["workers"][0]["last_heartbeat"] == "2024-05-01T12:00:00+00:00"


# -- actions, token, read-only ----------------------------------------------------------------


async def test_actions_through_the_api(queue: JobQueue) -> None:
    pending = await queue.enqueue("a")
    failed = [await finish(queue, "a", fail=True), await finish(queue, "b", fail=True)]
    await finish(queue, "a")
    app = create_app(queue)
    async with client(app) as c:
        assert (await c.post(f"/api/jobs/{pending}/cancel")).json() == {"ok": True}
        assert (await c.post(f"/api/jobs/{pending}/cancel")).json() == {"ok": False}
        assert (await c.post(f"/api/jobs/{pending}/retry")).json() == {"ok": True}
        assert (await queue.get(pending)).status is JobStatus.PENDING  # type: ignore[union-attr]
        r = await c.post("/api/jobs/retry-failed", json={"job_type": "a"})
        assert r.json() == {"retried": 1}
        assert (await queue.get(failed[1])).status is JobStatus.FAILED  # type: ignore[union-attr]
        assert (await c.post("/api/jobs/retry-failed")).json() == {"retried": 1}
        assert (await c.post("/api/jobs/purge", json={"statuses": ["weird"]})).status_code == 400
        assert (await c.post("/api/jobs/purge", json={"statuses": ["complete"]})).json() == {
            "purged": 1
        }
        assert (await queue.stats()).complete == 0


async def test_a_bad_request_body_is_refused_and_changes_nothing(queue: JobQueue) -> None:
    """Not JSON, not an object, too large: 400, never a server error, and the job stays."""
    job_id = await queue.enqueue("a")
    app = create_app(queue, token="s3cret")
    auth = {"authorization": "Bearer s3cret", "content-type": "application/json"}
    async with client(app) as c:
        for body in (b"{not json", b"[1, 2]", b'{"x": "' + b"y" * 70_000 + b'"}'):
            r = await c.post(f"/api/jobs/{job_id}/cancel", content=body, headers=auth)
            assert r.status_code == 400, (body[:20], r.status_code)
        r = await c.post("/login", content=b"{not json", headers=auth)
        assert r.status_code == 400
    job = await queue.get(job_id)
    assert job is not None and job.status is JobStatus.PENDING


async def test_actions_through_the_forms(queue: JobQueue) -> None:
    job_id = await queue.enqueue("a")
    await finish(queue, "a", fail=True)
    await finish(queue, "a")
    app = create_app(queue)
    async with client(app) as c:
        page = (await c.get(f"/jobs/{job_id}")).text
        assert ">Cancel</button>" in page and ">Retry</button>" in page
        r = await c.post(f"/jobs/{job_id}/cancel")
        assert r.status_code == 303 and r.headers["location"] == f"/jobs/{job_id}?done=cancel-1"
        page = (await c.get(r.headers["location"])).text
        assert "Cancelled." in page and "status-cancelled" in page
        r = await c.post(f"/jobs/{job_id}/retry", follow_redirects=True)
        assert "Sent back to the queue." in r.text
        listing = (await c.get("/jobs")).text
        assert ">Retry all failed</button>" in listing and ">Purge</button>" in listing
        r = await c.post("/jobs/retry-failed", data={"job_type": ""}, follow_redirects=True)
        assert "Retried 1 failed job(s)." in r.text
        r = await c.post("/jobs/purge", data={"status": ["complete"]}, follow_redirects=True)
        assert "Purged 1 job(s)." in r.text
        r = await c.post(f"/jobs/{job_id}/cancel", headers={"origin": "https://evil.example"})
        assert r.status_code == 403
        assert (await queue.get(job_id)).status is JobStatus.PENDING  # type: ignore[union-attr]


async def test_token_is_required_for_actions(queue: JobQueue) -> None:
    job_id = await queue.enqueue("a")
    app = create_app(queue, token="s3cret")
    async with client(app) as c:
        assert (await c.get("/")).status_code == 200  # reading needs no token
        assert "Log in" in (await c.get("/")).text
        assert (await c.post(f"/api/jobs/{job_id}/cancel")).status_code == 401
        bad = {"authorization": "Bearer wrong"}
        assert (await c.post(f"/api/jobs/{job_id}/cancel", headers=bad)).status_code == 401
        assert (await c.post("/api/jobs/purge", headers=bad)).status_code == 401
        assert (await c.post("/api/jobs/retry-failed", headers=bad)).status_code == 401
        r = await c.post(
            f"/jobs/{job_id}/cancel", headers={"referer": f"http://dash.test/jobs/{job_id}"}
        )
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2Fjobs%2F")
        assert (await queue.get(job_id)).status is JobStatus.PENDING  # type: ignore[union-attr]

        r = await c.post("/login", data={"token": "nope", "next": "/jobs"})
        assert r.status_code == 401 and "Wrong token." in r.text
        assert COOKIE not in c.cookies
        r = await c.post("/login", data={"token": "s3cret", "next": "//evil.example/x"})
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert c.cookies[COOKIE] != "s3cret"  # a digest, not the token
        assert "Log out" in (await c.get("/")).text
        assert (await c.post(f"/api/jobs/{job_id}/cancel")).json() == {"ok": True}
        await c.post("/logout")
        assert COOKIE not in c.cookies
        assert (await c.post(f"/api/jobs/{job_id}/retry")).status_code == 401

    async with client(app) as c:
        good = {"authorization": "Bearer s3cret"}
        assert (await c.post(f"/api/jobs/{job_id}/retry", headers=good)).json() == {"ok": True}
        r = await c.post(f"/jobs/{job_id}/cancel", data={"token": "s3cret"})
        assert r.status_code == 303 and "done=cancel-1" in r.headers["location"]


async def test_read_only_has_no_actions(queue: JobQueue) -> None:
    job_id = await queue.enqueue("a")
    failed = await finish(queue, "a", fail=True)
    app = create_app(queue, read_only=True, token="T")
    auth = {"authorization": "Bearer T"}
    async with client(app) as c:
        for path in ("/", "/jobs", f"/jobs/{job_id}", f"/jobs/{failed}", "/workers"):
            page = (await c.get(path)).text
            for label in ("Cancel", "Retry", "Retry all failed", "Purge", "Log in"):
                assert f">{label}</button>" not in page, (path, label)
            assert 'method="post"' not in page
            assert "read-only" in page
        for path in (
            f"/jobs/{job_id}/cancel",
            f"/jobs/{failed}/retry",
            "/jobs/retry-failed",
            "/jobs/purge",
            f"/api/jobs/{job_id}/cancel",
            f"/api/jobs/{failed}/retry",
            "/api/jobs/retry-failed",
            "/api/jobs/purge",
            "/login",
        ):
            assert (await c.post(path, headers=auth)).status_code == 404, path
        assert (await c.get("/login")).status_code == 404
    assert (await queue.get(job_id)).status is JobStatus.PENDING  # type: ignore[union-attr]
    assert (await queue.get(failed)).status is JobStatus.FAILED  # type: ignore[union-attr]


async def test_mounted_in_another_app(queue: JobQueue) -> None:
    job_id = await queue.enqueue("a")
    outer = Starlette(routes=[Mount("/queue", app=create_app(queue))])
    async with client(outer) as c:
        page = (await c.get("/queue/")).text
        assert 'href="/queue/static/dashboard.css"' in page and 'href="/queue/jobs"' in page
        assert (await c.get("/queue/static/dashboard.js")).status_code == 200
        assert f'href="/queue/jobs/{job_id}"' in (await c.get("/queue/jobs")).text
        r = await c.post(f"/queue/jobs/{job_id}/cancel")
        assert r.headers["location"] == f"/queue/jobs/{job_id}?done=cancel-1"
        assert (await c.post(f"/queue/api/jobs/{job_id}/retry")).json() == {"ok": True}
        assert (await c.get("/queue/api/stats")).json()["stats"]["pending"] == 1


async def test_mounted_in_fastapi(queue: JobQueue) -> None:
    fastapi = pytest.importorskip("fastapi")
    api = fastapi.FastAPI()
    api.mount("/dash", create_app(queue, read_only=True))
    async with client(api) as c:
        assert (await c.get("/dash/api/stats")).status_code == 200
        assert 'href="/dash/workers"' in (await c.get("/dash/")).text


# -- live updates and throughput --------------------------------------------------------------


async def test_events_stream_a_jobs_progress_until_it_ends(queue: JobQueue) -> None:
    job_id = await queue.enqueue("a")
    assert await queue.claim(["a"]) is not None
    app = create_app(queue)
    with anyio.fail_after(10):
        async with SSE(app, f"/api/jobs/{job_id}/events") as stream:
            name, first = await stream.next()
            assert name == "update" and first["status"] == "processing"
            for step in (0.3, 0.6):
                await queue.update(job_id, step, f"at {step}")
                name, data = await stream.next()
                assert (name, data["progress"], data["message"]) == ("update", step, f"at {step}")
            await queue.complete(job_id, {"r": 1})
            name, data = await stream.next()
            assert name == "update" and data["status"] == "complete"
            assert data["results"] == {"r": 1}
            assert await stream.next() == ("end", {"job_id": job_id})
            await stream.ended.wait()
    assert stream.status == 200


async def test_events_stop_when_the_client_leaves(queue: JobQueue) -> None:
    job_id = await queue.enqueue("a")
    with anyio.fail_after(10):
        async with SSE(create_app(queue), f"/api/jobs/{job_id}/events") as stream:
            assert (await stream.next())[1]["status"] == "pending"
            stream.disconnect()
            await stream.ended.wait()


async def test_throughput_samples_in_the_lifespan(queue: JobQueue) -> None:
    app = create_app(queue, sample_interval=0.05, history=50)
    sampler = app.state.sampler
    async with LifespanManager(app), client(app) as c:
        with anyio.fail_after(10):
            while len(sampler.samples) < 1:
                await anyio.sleep(0.01)
            await finish(queue, "a")
            await finish(queue, "a")
            await finish(queue, "b", fail=True)
            # Samples come on their own clock: one may fall between the completions and the
            # failure, so wait until the samples hold all three.
            while not _holds(sampler.series(), complete=2, failed=1):
                await anyio.sleep(0.01)
        series = (await c.get("/api/throughput")).json()
        assert series["interval"] == 0.05
        assert sum(p["complete"] for p in series["points"]) == 2
        assert sum(p["failed"] for p in series["points"]) == 1
        assert all(p["seconds"] > 0 for p in series["points"])


def _holds(series: dict[str, Any], **least: int) -> bool:
    """Whether the throughput points add up to at least ``least`` of each outcome."""
    return all(sum(p[k] for p in series["points"]) >= n for k, n in least.items())


async def test_throughput_without_a_lifespan(queue: JobQueue) -> None:
    """Mounted in an app that does not run sub-app lifespans, requests take the samples."""
    app = create_app(queue, sample_interval=0.01)
    async with client(app) as c:
        assert (await c.get("/api/throughput")).json()["points"] == []
        await finish(queue, "a")
        with anyio.fail_after(5):
            while not (await c.get("/api/throughput")).json()["points"]:
                await anyio.sleep(0.02)
        await finish(queue, "a")
        await anyio.sleep(0.02)
        points = (await c.get("/api/throughput")).json()["points"]
        assert sum(p["complete"] for p in points) >= 1
        assert re.search(r'id="throughput"', (await c.get("/")).text)


async def test_workers_lists_a_running_worker(queue: JobQueue) -> None:
    if not hasattr(JobQueue, "workers"):
        pytest.skip("JobQueue.workers() is not there yet")
    worker = Worker(queue, job_types=["a"], poll_interval=0.05, worker_id="dash-worker-1")

    @worker.handler("a")
    async def handle(ctx: Any) -> None:
        return None

    app = create_app(queue)
    async with client(app) as c, running(worker):
        with anyio.fail_after(10):
            while not (await c.get("/api/workers")).json()["workers"]:
                await anyio.sleep(0.02)  # registration has no event to wait on
        assert "dash-worker-1" in (await c.get("/workers")).text
        assert "dash-worker-1" in (await c.get("/")).text
