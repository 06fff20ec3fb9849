"""The dispatch: where the claimer hands claimed jobs to idle handler actors.

An idle handler waits in :meth:`Dispatch.take`; the claimer learns how many wait
(:meth:`Dispatch.wanted`), claims that many jobs and gives each to a waiting handler
(:meth:`Dispatch.give`), so no job ever waits claimed in a buffer. It is the hand-off that two
memory-object streams made before (the jobs one way, a credit per idle handler the other),
rebuilt on one ``anyio.Event`` per wait: a job is handed to the handler that waits for it, not
put where any handler may take it. anyio's streams, which check every receiver's cancel scopes
and yield before each receive, cost 18-31 µs per hand-off and its credit against 8-14 µs for
this one (a bare loop of 50 handlers on this machine, under both event loops); see the design
notes for what that changed per job on each backend.

Like :class:`~.roster.Roster`, it is plain synchronous state shared by actors of one worker:
no await between a read and a write, so every method is atomic under both event loops.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import anyio

from .._records import JobRecord

__all__ = ["Dispatch"]


class _Wait:
    """One idle handler's wait: the event it waits on and the job it is given (None: stop)."""

    __slots__ = ("event", "record")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.record: JobRecord | None = None


class Dispatch:
    """The hand-off between one worker's claimer and its handlers.

    Jobs left when the claimer closes it are still taken (the handlers drain what was claimed);
    after that, :meth:`take` returns None. On a hard stop the handlers :meth:`abandon` it.
    """

    def __init__(self) -> None:
        #: Idle handlers, longest waiting first.
        self._waiting: deque[_Wait] = deque()
        #: Jobs given while no handler waited (only in a race with a hard stop), oldest first.
        self._jobs: deque[JobRecord] = deque()
        self._claimer: anyio.Event | None = None
        self._handlers = 0
        self._closed = False
        self._abandoned = False

    # -- the claimer's side --------------------------------------------------------------------

    def wanted(self) -> int:
        """How many jobs the idle handlers could start now."""
        return len(self._waiting) - len(self._jobs)

    async def idle_handlers(self, more_than: int = 0) -> int:
        """Wait until more than ``more_than`` handlers are idle, then return how many are;
        0 once every handler has ended."""
        while (idle := self.wanted()) <= more_than:
            if not self._handlers:
                return 0
            self._claimer = anyio.Event()
            await self._claimer.wait()
        return idle

    def give(self, record: JobRecord) -> None:
        """Hand ``record`` to the longest-waiting idle handler (never waits)."""
        if self._waiting:
            wait = self._waiting.popleft()
            wait.record = record
            wait.event.set()
        else:
            self._jobs.append(record)

    @property
    def abandoned(self) -> bool:
        """Whether the handlers were stopped hard (:meth:`abandon`): jobs given since are the
        giver's to hand back."""
        return self._abandoned

    def close(self) -> None:
        """No more jobs will come: idle handlers stop, once what was given is taken."""
        self._closed = True
        while self._waiting and not self._jobs:
            self._waiting.popleft().event.set()

    # -- the handlers' side --------------------------------------------------------------------

    @contextmanager
    def joined(self) -> Iterator[None]:
        """A handler's run: the claimer learns when the last one has ended."""
        self._handlers += 1
        try:
            yield
        finally:
            self._handlers -= 1
            self._tell_claimer()

    async def take(self) -> JobRecord | None:
        """Wait, idle, for the next job; None once the dispatch is closed and drained.

        A handler cancelled while it waits gives back the job it was just handed (it goes to
        another idle handler, or stays for :meth:`take_all`).
        """
        if self._jobs:
            return self._jobs.popleft()
        if self._closed:
            return None
        wait = _Wait()
        self._waiting.append(wait)
        self._tell_claimer()
        try:
            await wait.event.wait()
        except BaseException:
            if wait.record is not None:
                self._give_back(wait.record)
            elif wait in self._waiting:
                self._waiting.remove(wait)
            raise
        return wait.record

    def take_all(self) -> list[JobRecord]:
        """Every job given but not taken."""
        records = list(self._jobs)
        self._jobs.clear()
        return records

    def abandon(self) -> list[JobRecord]:
        """A hard stop: the handlers take no more jobs. Return every job given but not taken,
        for the caller to hand back (the claimer hands back any it gives later)."""
        self._abandoned = True
        return self.take_all()

    def _give_back(self, record: JobRecord) -> None:
        if self._waiting:
            self.give(record)
        else:
            self._jobs.appendleft(record)

    def _tell_claimer(self) -> None:
        if self._claimer is not None:
            self._claimer.set()
            self._claimer = None
