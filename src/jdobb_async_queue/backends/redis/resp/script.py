"""Lua scripts, called by their SHA1 digest (``EVALSHA``) and loaded on demand; and function
libraries (Redis 7+), whose functions are called by name (``FCALL``) and loaded on demand."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from .connection import RedisArg, encode
from .errors import RedisReplyError

__all__ = [
    "Library",
    "Script",
    "fcall_payload",
    "is_no_function",
    "is_noscript",
    "script_payload",
]


class Script:
    """A Lua script, called by its SHA1 digest (``EVALSHA``) and loaded on demand.

    :param source: the Lua source
    :param function: the name of the same code as a function of a :class:`Library`, if any
    """

    __slots__ = ("function", "sha", "source")

    def __init__(self, source: str, function: str | None = None) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self.function = function

    def __repr__(self) -> str:
        return f"Script(sha={self.sha!r})"


class Library:
    """A Redis function library (``#!lua name=<name>`` first), loaded on demand.

    :param name: the library's name, as its first line gives it
    :param source: the library's code, that first line included
    """

    __slots__ = ("name", "source")

    def __init__(self, name: str, source: str) -> None:
        if not source.startswith(f"#!lua name={name}\n"):
            raise ValueError(f"a library's code must start with '#!lua name={name}'")
        self.name = name
        self.source = source

    def __repr__(self) -> str:
        return f"Library({self.name!r})"


def fcall_payload(function: str, keys: Sequence[RedisArg], args: Sequence[RedisArg]) -> bytes:
    """The encoded ``FCALL`` of ``function``."""
    if isinstance(keys, (str, bytes)) or isinstance(args, (str, bytes)):
        raise TypeError("function keys and args are sequences of values, not one str or bytes")
    return encode(("FCALL", function, len(keys), *keys, *args))


def is_no_function(reply: Any) -> bool:
    """Whether ``reply`` says the server does not know the function (load its library then)."""
    return isinstance(reply, RedisReplyError) and reply.message.startswith("ERR Function not found")


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
