"""Hand-offs: jobs claimed for a parked worker by the call that made them claimable.

A worker running on this backend (one that registered, so its claimer will come back) listens on
a channel of its own. When one of its claims leaves handlers idle, the claim script *parks* it:
the next jobs of its types are claimed for it by the ``enqueue`` that makes them claimable, and
published to it (``hand_off`` in ``lua/lib.lua``). The jobs wait in the worker's :class:`Inbox`
and every listener gets a ``"jobs"`` notice; the claimer's next claim takes them from there
without a round trip. So an idle worker starts a new job one message after its enqueue, not a
notice plus a claim later.

Nothing is lost when a message is: the store keeps what it handed to each worker until the
worker's next claim confirms it received it (the ids taken since ride along), and that claim
hands out again whatever was not confirmed. A copy that arrives after the job came that way is
dropped by its ``<fence>|<id>``.
"""

from __future__ import annotations

from ..._records import JobRecord

__all__ = ["Inbox"]


class Inbox:
    """The jobs handed to one worker, until its claimer takes them."""

    def __init__(self) -> None:
        self._waiting: dict[str, JobRecord] = {}
        self._taken: list[str] = []  # received since the last claim script: it confirms them
        # Recently delivered (taken, or handed out again by a claim): a late copy is dropped.
        self._recent: set[str] = set()
        self._older: set[str] = set()

    def __len__(self) -> int:
        return len(self._waiting)

    def offer(self, records: list[JobRecord]) -> None:
        """Keep the jobs of a hand-off message (copies of ones delivered already are dropped)."""
        for record in records:
            key = _key(record)
            if key not in self._recent and key not in self._older:
                self._waiting[key] = record

    def take(self, limit: int) -> list[JobRecord]:
        """Up to ``limit`` waiting jobs, oldest first."""
        keys = list(self._waiting)[:limit]
        self._taken += keys
        self._recent.update(keys)
        return [self._waiting.pop(key) for key in keys]

    def confirm(self) -> list[str]:
        """What the next claim script is to confirm (and forget, here: it goes in that call)."""
        taken, self._taken = self._taken, []
        self._older, self._recent = self._recent, set()
        return taken

    def unconfirm(self, keys: list[str]) -> None:
        """The claim that was to confirm ``keys`` failed: the next one confirms them."""
        self._taken = keys + self._taken

    def delivered(self, records: list[JobRecord]) -> None:
        """A claim's reply delivered these (some may be hand-offs handed out again)."""
        for record in records:
            key = _key(record)
            self._waiting.pop(key, None)
            self._recent.add(key)


def _key(record: JobRecord) -> str:
    return f"{record.fence}|{record.id}"
