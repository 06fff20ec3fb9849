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

Nothing here runs unless you call these functions: an uninstrumented queue pays nothing. With
the API alone (no SDK tracer provider, global or given), every span is the API's no-op one: an
attempt then skips the span machinery and costs about a microsecond, yet a trace that came with
the job in its metadata still flows on to the jobs its handler enqueues.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._context import JobContext
from ._errors import MissingDependencyError
from ._queue import JobQueue
from ._records import JobRecord
from ._worker import Worker

try:
    from opentelemetry import context, propagate, trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
except ImportError:  # pragma: no cover - the extra is not installed
    raise MissingDependencyError("tracing", "otel", "opentelemetry", feature=True) from None

__all__ = ["CONTEXT_KEY", "SYSTEM", "instrument_queue", "instrument_worker"]

#: The ``metadata`` key that carries a job's trace context from producer to worker.
CONTEXT_KEY = "trace_context"
#: ``messaging.system`` of every span.
SYSTEM = "jdobb_async_queue"

_SCOPE = "jdobb_async_queue"

# The attributes every span of a kind shares, built once.
_SEND = {
    "messaging.system": SYSTEM,
    "messaging.operation.type": "send",
    "messaging.operation.name": "enqueue",
}
_PROCESS = {
    "messaging.system": SYSTEM,
    "messaging.operation.type": "process",
    "messaging.operation.name": "process",
}

T = TypeVar("T")


def instrument_queue(queue: JobQueue, *, tracer_provider: TracerProvider | None = None) -> None:
    """Trace every enqueue of ``queue`` (also bulk enqueues, workflows and task calls).

    :param tracer_provider: default: the global one
    """
    tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)

    async def send(
        records: list[JobRecord], store: Callable[[], Awaitable[list[str]]]
    ) -> list[str]:
        first = records[0]
        attributes: dict[str, Any] = {**_SEND, "messaging.destination.name": first.job_type}
        if len(records) == 1:
            name = f"send {first.job_type}"
            attributes["messaging.message.id"] = first.id
        else:
            name = "send"
            attributes["messaging.batch.message_count"] = len(records)
        span = tracer.start_span(name, kind=SpanKind.PRODUCER, attributes=attributes)
        if not span.get_span_context().is_valid:
            return await store()  # no SDK and no trace to join: nothing to record or carry
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        if carrier:
            for record in records:
                record.metadata = {**record.metadata, CONTEXT_KEY: carrier}
        return await _in_span(span, store)

    queue.middleware(send)


def instrument_worker(worker: Worker, *, tracer_provider: TracerProvider | None = None) -> None:
    """Trace every attempt ``worker`` runs, as a child of the span that enqueued the job.

    :param tracer_provider: default: the global one
    """
    tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)

    async def process(ctx: JobContext, run: Callable[[], Awaitable[Any]]) -> Any:
        job_type, carrier = ctx.job_type, ctx.metadata.get(CONTEXT_KEY)
        parent = propagate.extract(carrier) if isinstance(carrier, dict) else None
        span = tracer.start_span(
            f"process {job_type}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                **_PROCESS,
                "messaging.destination.name": job_type,
                "messaging.message.id": ctx.id,
                "jdobb_async_queue.attempt": ctx.attempt,
            },
        )
        if not span.get_span_context().is_valid:
            return await run()  # no SDK and no trace to continue: nothing to record or pass on
        return await _in_span(span, run)

    worker.middleware(process)


async def _in_span(span: Span, work: Callable[[], Awaitable[T]]) -> T:
    """Await ``work()`` with ``span`` current, then end the span; an exception is recorded on it
    and sets its status to ERROR. What ``trace.use_span(span, end_on_exit=True)`` does, without
    its generator-based context manager, which costs about 2 µs a span: more than the rest of
    what this module adds to an attempt."""
    token = context.attach(trace.set_span_in_context(span))
    try:
        return await work()
    except Exception as exc:
        if span.is_recording():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        context.detach(token)
        span.end()
