"""jdobb-async-queue: an async job queue for asyncio and trio.

Producers :meth:`~JobQueue.enqueue` jobs; a :class:`Worker` claims them atomically and runs
handlers; a :class:`Broadcaster` streams each job's progress. Jobs live in a backend: ``memory``,
``sqlite`` or ``redis``, or your own :class:`QueueBackend`.
"""

from __future__ import annotations

from ._broadcast import Broadcaster as Broadcaster
from ._context import HandlerFunc as HandlerFunc
from ._context import JobContext as JobContext
from ._context import current_job as current_job
from ._errors import BackendUnavailable as BackendUnavailable
from ._errors import ConfigurationError as ConfigurationError
from ._errors import DuplicateJobError as DuplicateJobError
from ._errors import InvalidJobError as InvalidJobError
from ._errors import JobCancelled as JobCancelled
from ._errors import JobFailed as JobFailed
from ._errors import JobNotFoundError as JobNotFoundError
from ._errors import JobQueueError as JobQueueError
from ._errors import MissingDependencyError as MissingDependencyError
from ._errors import PayloadTooLargeError as PayloadTooLargeError
from ._errors import QueueClosedError as QueueClosedError
from ._errors import SchemaVersionError as SchemaVersionError
from ._errors import SerializationError as SerializationError
from ._errors import UnknownDependencyError as UnknownDependencyError
from ._models import PRIORITY_WEIGHTS as PRIORITY_WEIGHTS
from ._models import Job as Job
from ._models import JobOutcome as JobOutcome
from ._models import JobPriority as JobPriority
from ._models import JobStatus as JobStatus
from ._models import JobUpdate as JobUpdate
from ._models import QueueStats as QueueStats
from ._models import WorkerInfo as WorkerInfo
from ._queue import JobQueue as JobQueue
from ._tasks import Task as Task
from ._tasks import TaskArgumentError as TaskArgumentError
from ._tasks import TaskResult as TaskResult
from ._worker import Worker as Worker
from ._workflow import Workflow as Workflow
from ._workflow import WorkflowStep as WorkflowStep
from .backends.base import QueueBackend as QueueBackend

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "PayloadTooLargeError",
    "QueueClosedError",
    "Broadcaster",
    "ConfigurationError",
    "DuplicateJobError",
    "HandlerFunc",
    "InvalidJobError",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobNotFoundError",
    "JobOutcome",
    "JobPriority",
    "JobQueue",
    "JobQueueError",
    "JobStatus",
    "JobUpdate",
    "MissingDependencyError",
    "PRIORITY_WEIGHTS",
    "QueueBackend",
    "QueueStats",
    "SchemaVersionError",
    "SerializationError",
    "Task",
    "TaskArgumentError",
    "TaskResult",
    "UnknownDependencyError",
    "Worker",
    "WorkerInfo",
    "Workflow",
    "WorkflowStep",
    "current_job",
]
