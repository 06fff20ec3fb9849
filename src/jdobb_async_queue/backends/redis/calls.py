"""How the Redis backend talks to the server: error mapping at the boundary, and retries.

Every call goes through :class:`Caller`. Transport errors never reach users: a refused password
becomes :class:`ConfigurationError` (no retry cures it); a lost connection, a timeout or a server
that is still loading its data is retried with exponential backoff for up to ``retry_for``
seconds, then becomes :class:`BackendUnavailable`. Two exceptions: a client that was closed
raises :class:`QueueClosedError` at once (closing is no outage), and one that has never reached
its server gives up after one attempt (a wrong host or port is a mistake to report now, not an
outage to ride out).

Retrying is safe because every script is written for it. A call whose reply was lost may have
run; writes are sent again with their *resend* flag set (``ARGV[2]``), and the script then
recognises the first attempt's effect instead of applying its own twice: ``enqueue`` by the
stored spec, ``claim`` by its token (the same jobs come back), ``finish``, ``cancel`` and
``retry`` by the call's token, which the first attempt stored in the job's ``op`` field.
Fenced worker reports are idempotent anyway.

Where the server has Redis functions (7.0+) and the user may call and load them, a script runs as
the function of the same code in the backend's library (``FCALL``; see ``redis/scripts.py``),
which spares Redis re-running every shared definition on each call. The first call that finds
functions unavailable (an older server: "unknown command"; an ACL without ``fcall`` or
``function|load``: NOPERM) switches that backend to ``EVALSHA`` for good.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

import anyio

from ..._errors import BackendUnavailable, ConfigurationError, JobQueueError, QueueClosedError
from .resp import (
    Library,
    RedisArg,
    RedisAuthError,
    RedisClient,
    RedisConnectionError,
    RedisReplyError,
    RedisTimeoutError,
    RedisTransportError,
    Script,
)

__all__ = ["Caller", "is_transient", "translate"]

#: Error replies that mean "not now": a server loading its data, a long script, a failover.
TRANSIENT_REPLIES = frozenset({"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY"})
#: Index in ARGV of the resend flag of the scripts that have one.
RESEND_FLAG = 1

log = logging.getLogger("jdobb_async_queue.backend")


class Caller:
    """Runs scripts and commands on one client, with the backend's retry policy.

    :param client: the transport client
    :param retry_for: seconds to keep retrying through an outage before giving up
    :param library: the library holding the scripts as functions (None: scripts only)
    """

    def __init__(
        self, client: RedisClient, *, retry_for: float, library: Library | None = None
    ) -> None:
        self._client = client
        self._retry_for = retry_for
        self._library = library
        #: Whether scripts run as functions: None until the first call tells.
        self.functions: bool | None = None if library is not None else False

    async def script(
        self,
        script: Script,
        keys: Sequence[RedisArg],
        args: list[RedisArg],
        *,
        resend_flag: bool = False,
    ) -> Any:
        """Run ``script``; on a retry set the first character of ``args[RESEND_FLAG]`` (the flag,
        then the call's token) to ``"1"`` if ``resend_flag``.

        :raises ConfigurationError: if the server refuses the credentials
        :raises BackendUnavailable: if the server stays unreachable, or refuses the script
        """
        failures = 0
        deadline = anyio.current_time() + self._retry_for
        while True:
            try:
                return await self._run(script, keys, args)
            except RedisTransportError as exc:
                failures = await self._back_off(exc, failures, deadline)
            if resend_flag:
                args[RESEND_FLAG] = "1" + str(args[RESEND_FLAG])[1:]

    async def _run(self, script: Script, keys: Sequence[RedisArg], args: list[RedisArg]) -> Any:
        if self.functions is not False and self._library and script.function:
            try:
                reply = await self._client.fcall(self._library, script.function, keys, args)
            except RedisReplyError as exc:
                if not _no_functions(exc):
                    raise
                log.info("Redis functions are not available here (%s): using scripts", exc)
                self.functions = False
            else:
                self.functions = True
                return reply
        return await self._client.evalsha(script, keys, args)

    async def command(self, *args: RedisArg) -> Any:
        """Run one command (reads and idempotent writes only), with the same policy."""
        failures = 0
        deadline = anyio.current_time() + self._retry_for
        while True:
            try:
                return await self._client.execute(*args)
            except RedisTransportError as exc:
                failures = await self._back_off(exc, failures, deadline)

    async def _back_off(self, exc: RedisTransportError, failures: int, deadline: float) -> int:
        """Raise the user-facing error for ``exc``, or sleep before the next attempt."""
        if self._client.closed:
            raise QueueClosedError("the Redis backend") from None
        if not self._client.ever_connected and isinstance(exc, RedisConnectionError):
            address = self._client.address
            where = address.path or f"{address.host} port {address.port}"
            raise BackendUnavailable(
                f"cannot reach Redis at {where} ({address}): {exc.__cause__ or exc}"
            ) from exc
        delay = min(0.02 * 2**failures, 1.0) * (0.5 + random.random() / 2)
        if not is_transient(exc) or anyio.current_time() + delay > deadline:
            raise translate(exc, self._client.address, retried_for=self._retry_for) from exc
        await anyio.sleep(delay)
        return failures + 1


def _no_functions(exc: RedisReplyError) -> bool:
    """Whether the server or the user rules out functions (not: a function that failed)."""
    text = exc.message.lower()
    if exc.code == "NOPERM":
        return "'fcall'" in text or "'function" in text
    return "unknown command" in text and ("fcall" in text or "function" in text)


def is_transient(exc: RedisTransportError) -> bool:
    """Whether trying again later may succeed (a lost connection, a server loading its data)."""
    if isinstance(exc, RedisReplyError):
        return exc.code in TRANSIENT_REPLIES
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError))


def translate(
    exc: RedisTransportError, address: object, *, retried_for: float | None = None
) -> JobQueueError:
    """The library's error for a transport error (raise it ``from exc``).

    Refused credentials or permissions are :class:`ConfigurationError` (no retry cures them);
    anything else is :class:`BackendUnavailable`.
    """
    if isinstance(exc, RedisAuthError):
        return ConfigurationError(f"Redis at {address} refused the credentials: {exc}")
    if isinstance(exc, RedisReplyError) and exc.code == "NOPERM":
        return ConfigurationError(f"the Redis user may not do this at {address}: {exc}")
    if isinstance(exc, RedisReplyError) and not is_transient(exc):
        return BackendUnavailable(f"Redis at {address} refused a command: {exc}")
    after = "" if retried_for is None else f" (retried for {retried_for:g} s)"
    return BackendUnavailable(f"Redis at {address} is unavailable{after}: {exc}")
