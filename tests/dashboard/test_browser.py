"""The dashboard in a real browser: Playwright driving Debian's Chromium (``/usr/bin/chromium``,
never a downloaded build), against hypercorn serving the app with a worker running jobs in the
test's event loop (asyncio and trio). The browser runs Playwright's sync API in a worker thread
and calls back into the loop with ``anyio.from_thread``.

Set ``JDOBB_DASHBOARD_SCREENSHOTS=1`` to refresh ``docs/img/dashboard-*.png``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest

from jdobb_async_queue import Broadcaster, JobContext, JobQueue, JobStatus, Worker

from ..conftest import QueueFactory
from ._server import served

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

pytestmark = pytest.mark.anyio

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Longest any one browser step may take, in milliseconds.
STEP_MS = 15_000
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
T = TypeVar("T")

if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)",
        allow_module_level=True,
    )


@pytest.fixture(params=["memory", "sqlite-file"])
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Scene:
    """The jobs the browser watches, and the gates that let the test step them."""

    STEPS = 4

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self.gates = [anyio.Event() for _ in range(self.STEPS)]
        self.flaky_calls = 0
        self.worker = Worker(queue, max_concurrent=8, poll_interval=0.05)
        self.worker.register_handler("quick", self.quick)
        self.worker.register_handler("steps", self.steps)
        self.worker.register_handler("hang", self.hang)
        self.worker.register_handler("flaky", self.flaky)

    async def quick(self, ctx: JobContext) -> dict[str, Any]:
        return {"n": ctx.data.get("n")}

    async def steps(self, ctx: JobContext) -> dict[str, Any]:
        for i, gate in enumerate(self.gates, 1):
            await ctx.update(progress=i / self.STEPS, message=f"step {i} of {self.STEPS}")
            await gate.wait()
        return {"steps": self.STEPS}

    async def hang(self, ctx: JobContext) -> None:
        await ctx.update(progress=0.5, message="waiting forever")
        await anyio.sleep_forever()

    async def flaky(self, ctx: JobContext) -> dict[str, Any]:
        self.flaky_calls += 1
        if self.flaky_calls == 1:
            raise RuntimeError("the first attempt fails")
        return {"attempt": self.flaky_calls}

    async def until(self, job_id: str, status: JobStatus) -> None:
        with anyio.fail_after(10):
            async with aclosing(Broadcaster(self.queue).subscribe(job_id)) as updates:
                async for update in updates:
                    if update.status is status:
                        return
        raise AssertionError(f"{job_id} ended without reaching {status}")


def call(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``fn(*args)`` in the test's event loop, from the browser's thread."""
    return anyio.from_thread.run(fn, *args)


def browse(url: str, scene: Scene, ids: dict[str, str], shots: Path) -> None:
    expect = playwright_api.expect
    expect.set_options(timeout=STEP_MS)
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=STEP_MS * 2)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(STEP_MS)
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on(
                "console",
                lambda msg: problems.append(msg.text) if msg.type == "error" else None,
            )

            # -- the overview: counts change as jobs run, without a reload ------------------
            page.goto(f"{url}/")
            complete = page.locator('.card [data-stat="complete"]')
            expect(complete).to_have_text("0")
            page.evaluate("window.__sameDocument = true")
            for n in range(5):
                call(scene.queue.enqueue, "quick", {"n": n})
            expect(complete).to_have_text("5")
            expect(page.locator("#type-table")).to_contain_text("quick")
            expect(page.locator("#throughput rect").first).to_be_attached()
            assert page.evaluate("window.__sameDocument") is True

            # -- a job: the progress bar moves by server-sent events -----------------------
            page.goto(f"{url}/jobs/{ids['steps']}")
            page.evaluate("window.__sameDocument = true")
            for i, gate in enumerate(scene.gates, 1):
                page.wait_for_function(
                    "v => document.getElementById('job-progress').value >= v - 1e-9",
                    arg=i / Scene.STEPS,
                    timeout=STEP_MS,
                )
                expect(page.locator("#job-message")).to_have_text(f"step {i} of {Scene.STEPS}")
                if i == 2:
                    page.screenshot(path=str(shots / "dashboard-job.png"), full_page=True)
                anyio.from_thread.run_sync(gate.set)
            expect(page.locator("#job-status")).to_have_text("complete")
            expect(page.locator("#job-results")).to_contain_text('"steps": 4')
            expect(page.locator("#live-state")).to_have_text("finished")
            assert page.evaluate("window.__sameDocument") is True

            # -- Cancel: the job ends CANCELLED --------------------------------------------
            page.goto(f"{url}/jobs/{ids['hang']}")
            expect(page.locator("#job-status")).to_have_text("processing")
            expect(page.locator("#job-progress-text")).to_have_text("50%")
            page.get_by_role("button", name="Cancel", exact=True).click()
            expect(page.locator("#job-status")).to_have_text("cancelled")
            expect(page.locator(".notice")).to_have_text("Cancelled.")
            expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_hidden()
            job = call(scene.queue.get, ids["hang"])
            assert job is not None and job.status is JobStatus.CANCELLED

            # -- Retry: a failed job runs again and completes ------------------------------
            page.goto(f"{url}/jobs/{ids['flaky']}")
            expect(page.locator("#job-status")).to_have_text("failed")
            expect(page.locator("#job-error")).to_contain_text("the first attempt fails")
            page.get_by_role("button", name="Retry", exact=True).click()
            expect(page.locator(".notice")).to_have_text("Sent back to the queue.")
            expect(page.locator("#job-status")).to_have_text("complete")
            expect(page.locator("#job-results")).to_contain_text('"attempt": 2')
            job = call(scene.queue.get, ids["flaky"])
            assert job is not None and job.status is JobStatus.COMPLETE

            # -- the lists, and Retry all failed -------------------------------------------
            page.goto(f"{url}/jobs?status=failed")
            expect(page.locator("#job-table tbody tr")).to_have_count(2)
            page.screenshot(path=str(shots / "dashboard-jobs.png"), full_page=True)
            page.get_by_role("button", name="Retry all failed").click()
            expect(page.locator(".notice")).to_have_text("Retried 2 failed job(s).")
            page.goto(f"{url}/workers")
            expect(page.locator("#worker-table")).to_be_visible()
            page.screenshot(path=str(shots / "dashboard-workers.png"), full_page=True)
            page.goto(f"{url}/")
            expect(page.locator("#throughput rect").first).to_be_attached()
            expect(page.locator('.card [data-stat="cancelled"]')).to_have_text("1")
            page.screenshot(path=str(shots / "dashboard-overview.png"), full_page=True)
            assert problems == [], problems
        finally:
            browser.close()


async def test_dashboard_in_a_real_browser(make_queue: QueueFactory, tmp_path: Path) -> None:
    queue = make_queue()
    scene = Scene(queue)
    ids = {
        "steps": await queue.enqueue("steps", {"report": "monthly"}),
        "hang": await queue.enqueue("hang"),
        "flaky": await queue.enqueue("flaky", {"user": "<b>ann</b>"}),
    }
    # Two failed jobs for "Retry all failed" (no handler runs them: a type nobody claims).
    for n in range(2):
        job_id = await queue.enqueue("import", {"file": f"part-{n}.csv"})
        claimed = await queue.claim(["import"])
        assert claimed is not None and claimed.id == job_id
        await queue.fail(job_id, f"bad row {n + 1}", retry=False)
    async with (
        served(queue, refresh=0.2, sample_interval=0.25) as url,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(scene.worker.run)
        try:
            await scene.until(ids["flaky"], JobStatus.FAILED)
            await anyio.to_thread.run_sync(browse, url, scene, ids, tmp_path)
        finally:
            for gate in scene.gates:
                gate.set()
            with anyio.fail_after(10):
                await scene.worker.stop()
                await queue.cancel(ids["hang"])
    shots = sorted([p.name async for p in anyio.Path(tmp_path).glob("dashboard-*.png")])
    assert shots == [f"dashboard-{n}.png" for n in ("job", "jobs", "overview", "workers")]
    if os.environ.get("JDOBB_DASHBOARD_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        for name in shots:
            shutil.copyfile(tmp_path / name, DOCS_IMG / name)
