"""Lua scripts, called by their SHA1 digest (``EVALSHA``) and loaded on demand."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from .connection import RedisArg, encode
from .errors import RedisReplyError

__all__ = ["Script", "is_noscript", "script_payload"]


class Script:
    """A Lua script, called by its SHA1 digest (``EVALSHA``) and loaded on demand.

    :param source: the Lua source
    """

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def __repr__(self) -> str:
        return f"Script(sha={self.sha!r})"


def script_payload(
    command: str, script: Script, keys: Sequence[RedisArg], args: Sequence[RedisArg]
) -> bytes:
    """The encoded ``EVALSHA`` (by digest) or ``EVAL`` (by source) call of ``script``."""
    if isinstance(keys, (str, bytes)) or isinstance(args, (str, bytes)):
        raise TypeError("script keys and args are sequences of values, not one str or bytes")
    body = script.sha if command == "EVALSHA" else script.source
    return encode((command, body, len(keys), *keys, *args))


def is_noscript(reply: Any) -> bool:
    """Whether ``reply`` says the server does not know the script (send its source then)."""
    return isinstance(reply, RedisReplyError) and reply.message.startswith("NOSCRIPT")
