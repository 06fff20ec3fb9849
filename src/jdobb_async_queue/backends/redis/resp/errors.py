"""The transport's errors: the one place to re-parent them under the package's hierarchy.

The Redis backend translates them into the library's own (see
:mod:`jdobb_async_queue.backends.redis.calls`).
"""

from __future__ import annotations

__all__ = [
    "InvalidRedisURL",
    "RedisAuthError",
    "RedisConnectionError",
    "RedisReplyError",
    "RedisTimeoutError",
    "RedisTransportError",
]


class RedisTransportError(Exception):
    """Base class of every error this transport raises."""


class RedisConnectionError(RedisTransportError):
    """The server cannot be reached, or a connection broke before a command's reply arrived.

    When raised for a command that was already written, the command may or may not have run.
    """


class RedisAuthError(RedisTransportError):
    """The server refused the credentials (``AUTH``) or requires some that were not given."""


class RedisTimeoutError(RedisTransportError, TimeoutError):
    """Connecting, or waiting for a reply, took longer than the configured timeout."""


class RedisReplyError(RedisTransportError):
    """The server answered a command with an error reply.

    :param message: the error text as the server sent it (``"WRONGTYPE Operation against..."``)
    """

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    @property
    def code(self) -> str:
        """The error's first word (``"ERR"``, ``"WRONGTYPE"``, ``"NOSCRIPT"``...)."""
        return self.message.split(" ", 1)[0]


class InvalidRedisURL(RedisTransportError, ValueError):
    """A Redis URL could not be parsed. The message never repeats a password.

    :param url: the URL (with any password masked)
    :param reason: what is wrong with it
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"invalid Redis URL {url!r}: {reason}")
