"""Helpers for testing code that uses jdobb-async-queue.

:class:`MockClock` is a clock you move by hand: pass it as ``JobQueue(clock=...)`` and scheduled
jobs, retry backoffs, leases and ttls follow it instead of the wall clock::

    clock = MockClock()
    queue = JobQueue(clock=clock)
    await queue.enqueue("report", delay=3600)
    assert await queue.claim() is None
    clock.advance(3600)
    assert await queue.claim() is not None

Workers still sleep in real time (at most ``poll_interval``), so with a mock clock, drive jobs
with ``queue.claim()`` or ``worker.process_one()`` rather than ``worker.run()``.
"""

from __future__ import annotations

import time

__all__ = ["MockClock"]


class MockClock:
    """A clock that only moves when told to.

    :param start: the time it shows first, in seconds since the epoch (default: now)
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        """The current mock time, in seconds since the epoch."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward.

        :raises ValueError: for a negative amount (time never runs backwards)
        """
        if seconds < 0:
            raise ValueError("a MockClock cannot go backwards")
        self._now += seconds

    def set(self, timestamp: float) -> None:
        """Jump to ``timestamp`` (not earlier than now).

        :raises ValueError: if that is in the mock past
        """
        if timestamp < self._now:
            raise ValueError("a MockClock cannot go backwards")
        self._now = float(timestamp)
