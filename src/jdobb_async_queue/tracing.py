"""OpenTelemetry tracing: one trace from the request that enqueued a job to the worker that ran it.

Install the ``otel`` extra (``opentelemetry-api`` only: the SDK and exporter are your choice),
then instrument the producer's queue and the worker::

    from jdobb_async_queue.tracing import instrument_queue, instrument_worker

    instrument_queue(queue)    # a PRODUCER span "send <job_type>" around each enqueue
    instrument_worker(worker)  # a CONSUMER span "process <job_type>" around each attempt

The producer span's context travels in the job's ``metadata`` under :data:`CONTEXT_KEY` (the
W3C ``traceparent``/``tracestate`` of the global propagator), so the worker's span is its child
in another process or on another host. Span names and attributes follow the OpenTelemetry
messaging semantic conventions (``messaging.system``, ``messaging.operation.type``,
``messaging.destination.name`` = the job type, ``messaging.message.id`` = the job id). A
handler's exception is recorded on the span, whose status is then ERROR.

Nothing here runs unless you call these functions: an uninstrumented queue pays nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ._context import JobContext
from ._errors import MissingDependencyError
from ._queue import JobQueue
from ._records import JobRecord
from ._worker import Worker

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
except ImportError:  # pragma: no cover - the extra is not installed
    raise MissingDependencyError("tracing", "otel", "opentelemetry", feature=True) from None

__all__ = ["CONTEXT_KEY", "SYSTEM", "instrument_queue", "instrument_worker"]

#: The ``metadata`` key that carries a job's trace context from producer to worker.
CONTEXT_KEY = "trace_context"
#: ``messaging.system`` of every span.
SYSTEM = "jdobb_async_queue"

_SCOPE = "jdobb_async_queue"


def instrument_queue(queue: JobQueue, *, tracer_provider: TracerProvider | None = None) -> None:
    """Trace every enqueue of ``queue`` (also bulk enqueues, workflows and task calls).

    :param tracer_provider: default: the global one
    """
    tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)

    async def send(
        records: list[JobRecord], store: Callable[[], Awaitable[list[str]]]
    ) -> list[str]:
        first = records[0]
        name = f"send {first.job_type}" if len(records) == 1 else "send"
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "enqueue",
            "messaging.destination.name": first.job_type,
        }
        if len(records) == 1:
            attributes["messaging.message.id"] = first.id
        else:
            attributes["messaging.batch.message_count"] = len(records)
        with tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            if carrier:
                for record in records:
                    record.metadata = {**record.metadata, CONTEXT_KEY: carrier}
            return await store()

    queue.middleware(send)


def instrument_worker(worker: Worker, *, tracer_provider: TracerProvider | None = None) -> None:
    """Trace every attempt ``worker`` runs, as a child of the span that enqueued the job.

    :param tracer_provider: default: the global one
    """
    tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)

    async def process(ctx: JobContext, run: Callable[[], Awaitable[Any]]) -> Any:
        job = ctx.job
        carrier = job.metadata.get(CONTEXT_KEY)
        parent = propagate.extract(carrier) if isinstance(carrier, dict) else None
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": job.job_type,
            "messaging.message.id": job.id,
            "jdobb_async_queue.attempt": job.attempts,
        }
        with tracer.start_as_current_span(
            f"process {job.job_type}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return await run()
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise

    worker.middleware(process)
