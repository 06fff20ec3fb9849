"""Bad input is refused with a typed error before anything is stored."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import pytest

from jdobb_async_queue import (
    InvalidJobError,
    JobQueue,
    JobStatus,
    QueueStats,
    SerializationError,
)

from ._support import EMPTY

pytestmark = pytest.mark.anyio


class Custom:
    pass


NOT_JSON: dict[str, Any] = {
    "set": {"v": {1, 2}},
    "datetime": {"v": datetime(2024, 1, 1, tzinfo=timezone.utc)},
    "tuple": {"v": (1, 2)},
    "nan": {"v": math.nan},
    "inf": {"v": math.inf},
    "int-key": {1: "x"},
    "nested-int-key": {"v": {2: "x"}},
    "custom-object": {"v": Custom()},
    "bytes": {"v": b"raw"},
}


@pytest.fixture(params=list(NOT_JSON), ids=list(NOT_JSON))
def bad(request: pytest.FixtureRequest) -> Any:
    return NOT_JSON[request.param]


async def test_non_json_data_is_refused_and_nothing_stored(queue: JobQueue, bad: Any) -> None:
    with pytest.raises(SerializationError) as info:
        await queue.enqueue("t", bad, job_id="j")
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, InvalidJobError)
    assert await queue.get("j") is None
    assert await queue.stats() == EMPTY
    assert await queue.list_jobs() == []


async def test_non_json_metadata_is_refused_and_nothing_stored(queue: JobQueue, bad: Any) -> None:
    with pytest.raises(SerializationError):
        await queue.enqueue("t", {"ok": 1}, metadata=bad, job_id="j")
    assert await queue.get("j") is None
    assert await queue.stats() == EMPTY


async def test_non_json_results_are_refused_and_the_job_stays_processing(
    queue: JobQueue, bad: Any
) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    with pytest.raises(SerializationError):
        await queue.complete(job_id, bad)
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.PROCESSING
    assert job.results is None
    assert await queue.complete(job_id, {"ok": True}) is True


async def test_results_must_be_a_dict(queue: JobQueue) -> None:
    job_id = await queue.enqueue("t")
    await queue.claim()
    with pytest.raises(InvalidJobError):
        await queue.complete(job_id, [1, 2])  # type: ignore[arg-type]
    job = await queue.get(job_id)
    assert job is not None
    assert job.status is JobStatus.PROCESSING


@pytest.mark.parametrize("data", [[1, 2], "text", 3])
async def test_data_must_be_a_dict(queue: JobQueue, data: Any) -> None:
    with pytest.raises(InvalidJobError):
        await queue.enqueue("t", data)
    assert await queue.stats() == EMPTY


@pytest.mark.parametrize(
    ("job_type", "options"),
    [
        ("", {}),
        (None, {}),
        ("t", {"priority": "urgent"}),
        ("t", {"ttl": -1}),
        ("t", {"ttl": 1.5}),
        ("t", {"job_id": ""}),
        ("t", {"job_id": 7}),
        ("t", {"max_retries": -1}),
        ("t", {"retry_delay": -1}),
        ("t", {"retry_delay": math.nan}),
        ("t", {"timeout": 0}),
        ("t", {"timeout": -2}),
        ("t", {"depends_on": "some-id"}),
        ("t", {"depends_on": [""]}),
        ("t", {"unique_key": ""}),
    ],
    ids=lambda v: repr(v),
)
async def test_bad_enqueue_argument_raises_value_error_and_stores_nothing(
    queue: JobQueue, job_type: Any, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidJobError) as info:
        await queue.enqueue(job_type, {"a": 1}, **options)
    assert isinstance(info.value, ValueError)
    assert await queue.stats() == EMPTY
    assert await queue.list_jobs() == []


async def test_claim_job_types_must_be_a_list_of_strings(queue: JobQueue) -> None:
    await queue.enqueue("t")
    with pytest.raises(InvalidJobError):
        await queue.claim("t")  # type: ignore[arg-type]
    assert await queue.stats() == QueueStats(pending=1)


async def test_list_jobs_refuses_unknown_status_and_negative_bounds(queue: JobQueue) -> None:
    with pytest.raises(ValueError, match="status"):
        await queue.list_jobs("running")
    with pytest.raises(ValueError, match="limit"):
        await queue.list_jobs(limit=-1)
    with pytest.raises(ValueError, match="offset"):
        await queue.list_jobs(offset=-1)
