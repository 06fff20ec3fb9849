"""The pytest plugin ``jdobb_async_queue.pytest_plugin``, run by pytester as a user's suite would be.

Each test writes a small test module into a fresh directory and runs pytest on it in-process
(``pytester.runpytest``), with the plugins an installed package brings: ours and anyio's, both
registered through their ``pytest11`` entry points.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.filterwarnings("error")

USES_QUEUE = """
import sniffio

from jdobb_async_queue import JobContext, JobStatus


async def test_enqueue_and_claim(job_queue):
    job_id = await job_queue.enqueue("report", {"n": 1})
    job = await job_queue.claim()
    assert job is not None and job.id == job_id
    assert sniffio.current_async_library() == EXPECTED_LOOP


async def test_worker_runs_a_handler(job_queue, job_worker):
    assert job_worker.queue is job_queue

    @job_worker.handler("double")
    async def double(ctx: JobContext) -> dict:
        return {"n": ctx.data["n"] * 2}

    job_id = await job_queue.enqueue("double", {"n": 21})
    await job_worker.run(burst=True)
    job = await job_queue.get(job_id)
    assert job.status is JobStatus.COMPLETE and job.results == {"n": 42}
"""


def pin_loop(pytester: pytest.Pytester, loop: str) -> None:
    """A conftest.py choosing the event loop, as a user's would."""
    pytester.makeconftest(
        f"""
import pytest

@pytest.fixture
def anyio_backend():
    return {loop!r}
"""
    )


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_fixtures_need_no_marker(pytester: pytest.Pytester, loop: str) -> None:
    pin_loop(pytester, loop)
    pytester.makepyfile(f"EXPECTED_LOOP = {loop!r}\n" + USES_QUEUE)
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(passed=2)


def test_by_default_anyio_chooses_the_loops(pytester: pytest.Pytester) -> None:
    """Without an ``anyio_backend`` fixture of the user's, anyio's own decides (asyncio, and
    with recent anyio every other installed loop too)."""
    from anyio.pytest_plugin import get_available_backends

    pytester.makepyfile(
        """
async def test_queue(job_queue):
    assert await job_queue.enqueue("x")
"""
    )
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(passed=len(get_available_backends()))


def test_fixtures_run_on_both_loops(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""
    )
    pytester.makepyfile(
        """
import sniffio

LOOPS = []

async def test_queue(job_queue, anyio_backend):
    assert sniffio.current_async_library() == anyio_backend
    assert await job_queue.enqueue("x")
    LOOPS.append(anyio_backend)

def test_both_ran():
    assert sorted(LOOPS) == ["asyncio", "trio"]
"""
    )
    result = pytester.runpytest("-W", "error", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_queue?asyncio? PASSED*", "*test_queue?trio? PASSED*"])


def test_each_test_gets_a_new_queue_closed_at_its_end(pytester: pytest.Pytester) -> None:
    pin_loop(pytester, "asyncio")
    pytester.makepyfile(
        """
SEEN = []

async def test_first(job_queue):
    await job_queue.enqueue("x")
    SEEN.append(job_queue)

async def test_second(job_queue):
    assert job_queue is not SEEN[0]
    assert await job_queue.list_jobs() == []      # nothing left over from test_first
    assert SEEN[0]._closed                        # test_first's queue was closed
"""
    )
    pytester.runpytest("-W", "error").assert_outcomes(passed=2)


def test_options_fixtures_configure_queue_and_worker(pytester: pytest.Pytester) -> None:
    pin_loop(pytester, "trio")
    pytester.makepyfile(
        """
import pytest

from jdobb_async_queue.testing import MockClock

CLOCK = MockClock()

@pytest.fixture
def job_queue_options():
    return {"clock": CLOCK}

@pytest.fixture
def job_worker_options():
    return {"max_concurrent": 3}

async def test_delayed_job_follows_the_mock_clock(job_queue, job_worker):
    assert job_worker.max_concurrent == 3
    await job_queue.enqueue("report", delay=3600)
    assert await job_queue.claim() is None
    CLOCK.advance(3600)
    assert (await job_queue.claim()).job_type == "report"
"""
    )
    pytester.runpytest("-W", "error").assert_outcomes(passed=1)


def test_naming_the_plugin_again_is_harmless(pytester: pytest.Pytester) -> None:
    """``-p`` or ``pytest_plugins`` on top of the entry point is not "already registered"."""
    pytester.makeconftest(
        'import pytest\npytest_plugins = ["jdobb_async_queue.pytest_plugin"]\n'
        '@pytest.fixture\ndef anyio_backend():\n    return "asyncio"\n'
    )
    pytester.makepyfile(
        """
async def test_queue(job_queue):
    assert await job_queue.enqueue("x")
"""
    )
    result = pytester.runpytest("-W", "error", "-p", "jdobb_async_queue.pytest_plugin")
    result.assert_outcomes(passed=1)


def test_without_autoload_the_plugin_is_named(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest(
        'import pytest\npytest_plugins = ["anyio", "jdobb_async_queue.pytest_plugin"]\n'
        '@pytest.fixture\ndef anyio_backend():\n    return "trio"\n'
    )
    pytester.makepyfile(
        """
async def test_queue(job_queue):
    assert await job_queue.enqueue("x")
"""
    )
    pytester.runpytest("-W", "error").assert_outcomes(passed=1)
