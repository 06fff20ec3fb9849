"""The libraries ``bench/compare.py`` measures, one small module each, all with the same shape.

A module here defines:

- ``NAME`` (what ``--libs`` takes), ``DIST`` (the distribution whose version is printed, or
  ``None`` for a bare baseline), ``BACKENDS`` (of ``redis``, ``sqlite``, ``postgres``), ``LOOPS``
  (``("threads",)`` for a thread-based library, else the event loops it runs on; the first is
  its default), ``DEFAULT`` (whether it is in the default run), ``SETTINGS`` (how it is
  configured, printed under the table) and ``POLL_PERIOD`` (seconds, for a worker that looks
  for jobs on a fixed period instead of being woken; ``None`` otherwise);
- ``setup(env)``: create what the producer and worker need (schema, tables), in the producer
  process, before anything else;
- ``producer(env)``: a context manager yielding ``enqueue(lat)``, one single-job enqueue call;
- ``serve(env)``: run the library's worker until the process is terminated; its handler calls
  :func:`_peers.record.hit` (async) or :func:`_peers.record.hit_sync` (threads) with ``lat``.

A module may also define ``unavailable(backend)``, returning why it cannot run there in this
checkout (the row is then skipped with that line), or ``None``.

For a library with an event loop, ``setup``, the context manager, ``enqueue`` and ``serve`` are
async (``ASYNC = True``); for a thread-based one they are plain functions.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

#: every module, in the order rows are printed within a backend (bare first, then jdobb)
MODULES = (
    "bare_redis",
    "bare_sqlite",
    "bare_postgres",
    "jdobb_lib",
    "huey_lib",
    "saq_lib",
    "streaq_lib",
    "dramatiq_lib",
    "taskiq_lib",
    "arq_lib",
    "rq_lib",
    "gigq_lib",
    "dbjobq_lib",
    "pgqueuer_lib",
    "procrastinate_lib",
)

BACKENDS = ("sqlite", "redis", "postgres")


@dataclass
class Env:
    """What a producer or worker child is told (passed as JSON on its command line).

    :ivar backend: ``redis``, ``sqlite`` or ``postgres``
    :ivar url: the store under test: a ``redis://`` URL, a SQLite file path, a PostgreSQL DSN
    :ivar control: the control Redis (counters, coordination), never the one under test
    :ivar tag: a name for queues / namespaces
    :ivar loop: ``asyncio``, ``trio`` or ``threads``
    :ivar concurrency: jobs in flight per async worker
    :ivar threads: worker threads of a thread-based library
    :ivar poll: seconds between looks of a polling worker where the library lets it be set
    """

    backend: str
    url: str
    control: str
    tag: str
    loop: str
    concurrency: int = 50
    threads: int = 8
    poll: float = 0.01

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load(module: str) -> ModuleType:
    """One library's module (imports nothing of the library itself until called)."""
    return importlib.import_module(f"_peers.{module}")


def modules_for(backend: str) -> list[ModuleType]:
    """The modules that run on ``backend``, in print order."""
    return [m for m in (load(name) for name in MODULES) if backend in m.BACKENDS]
