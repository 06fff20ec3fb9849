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
the API alone (no SDK tracer provider, global or given), every span would be the API's no-op
one, so an attempt or an enqueue with no trace to carry on skips the span machinery: it costs
what any middleware costs and a dictionary lookup (``docs/operations.md`` has the figures). A
trace that came with the job in its metadata still flows on to the jobs its handler enqueues,
and a provider set later (``trace.set_tracer_provider``) is used from the next span on.
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
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
except ImportError:  # pragma: no cover - the extra is not installed
    raise MissingDependencyError("tracing", "otel", "opentelemetry", feature=True) from None

__all__ = ["CONTEXT_KEY", "SYSTEM", "instrument_queue", "instrument_worker"]

#: The ``metadata`` key that carries a job's trace context from producer to worker.
CONTEXT_KEY = "trace_context"
#: ``messaging.system`` of every span.
SYSTEM = "jdobb_async_queue"

_SCOPE = "jdobb_async_queue"

# The attributes every producer span shares, built once.
_SEND = {
    "messaging.system": SYSTEM,
    "messaging.operation.type": "send",
    "messaging.operation.name": "enqueue",
}

T = TypeVar("T")


def instrument_queue(queue: JobQueue, *, tracer_provider: TracerProvider | None = None) -> None:
    """Trace every enqueue of ``queue`` (also bulk enqueues, workflows and task calls).

    :param tracer_provider: default: the global one (also one set later, from the next enqueue)
    """
    tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
    recording = _may_record(tracer)

    async def send(
        records: list[JobRecord], store: Callable[[], Awaitable[list[str]]]
    ) -> list[str]:
        if not recording():
            # An empty context (the usual one outside a handler) holds no span to look at.
            current = context.get_current()
            if not current or not trace.get_current_span(current).get_span_context().is_valid:
                return await store()  # no SDK and no trace to join: nothing to record or carry
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
            return await store()  # a provider that makes no spans, and no trace to join
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        if carrier:
            for record in records:
                record.metadata = {**record.metadata, CONTEXT_KEY: carrier}
        return await _in_span(span, store)

    queue.middleware(send)


def instrument_worker(worker: Worker, *, tracer_provider: TracerProvider | None = None) -> None:
    """Trace every attempt ``worker`` runs, as a child of the span that enqueued the job.

    :param tracer_provider: default: the global one (also one set later, from the next attempt)
    """
    tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
    recording = _may_record(tracer)

    async def process(ctx: JobContext, run: Callable[[], Awaitable[Any]]) -> Any:
        carrier = ctx.metadata.get(CONTEXT_KEY)
        traced = isinstance(carrier, dict)
        if not traced and not recording():
            return await run()  # no SDK and no trace to continue: nothing to record or pass on
        job_type = ctx.job_type
        span = tracer.start_span(
            f"process {job_type}",
            context=propagate.extract(carrier) if traced else None,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": job_type,
                "messaging.message.id": ctx.id,
                "jdobb_async_queue.attempt": ctx.attempt,
            },
        )
        if not span.get_span_context().is_valid:
            return await run()  # a provider that makes no spans, and no trace to continue
        # _in_span's body, inlined: one coroutine less per attempt.
        token = context.attach(trace.set_span_in_context(span))
        try:
            return await run()
        except Exception as exc:
            _record_error(span, exc)
            raise
        finally:
            context.detach(token)
            span.end()

    worker.middleware(process)


def _may_record(tracer: Tracer) -> Callable[[], bool]:
    """Whether spans of ``tracer`` may be recorded, asked again before each span.

    Never, for the API's no-op tracer (``NoOpTracerProvider``); for the proxy tracer the API
    hands out while no provider is set, once one is: ``trace.set_tracer_provider`` takes effect
    at once on every proxy tracer, and only once per process, so the answer changes at most
    once, from no to yes. Otherwise always (the provider decides, span by span). With the API
    alone, an attempt (or an enqueue) that has no trace to carry on then skips the span
    machinery: the no-op spans it would make carry nothing and record nothing.
    """
    if isinstance(tracer, trace.NoOpTracer):
        return _never
    if isinstance(tracer, trace.ProxyTracer):
        return _provider_set
    return _always


def _never() -> bool:
    return False


def _always() -> bool:
    return True


if hasattr(trace, "_TRACER_PROVIDER"):

    def _provider_set() -> bool:
        """Whether a global tracer provider is set: the module global the API's proxy
        tracers read before every span (``get_tracer_provider()`` would also look the
        ``OTEL_PYTHON_TRACER_PROVIDER`` variable up in ``os.environ``: ten times as long)."""
        return trace._TRACER_PROVIDER is not None

else:  # pragma: no cover - a later API keeps it elsewhere: ask the public way

    def _provider_set() -> bool:
        """Whether a global tracer provider is set."""
        return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


async def _in_span(span: Span, work: Callable[[], Awaitable[T]]) -> T:
    """Await ``work()`` with ``span`` current, then end the span; an exception is recorded on it
    and sets its status to ERROR. What ``trace.use_span(span, end_on_exit=True)`` does, without
    its generator-based context manager, which costs about 2 µs a span: more than the rest of
    what this module adds to an attempt."""
    token = context.attach(trace.set_span_in_context(span))
    try:
        return await work()
    except Exception as exc:
        _record_error(span, exc)
        raise
    finally:
        context.detach(token)
        span.end()


def _record_error(span: Span, exc: Exception) -> None:
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
