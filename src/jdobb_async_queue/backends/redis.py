"""The Redis backend (``JobQueue(backend="redis", url=...)``); its parts live in ``_redis/``."""

from __future__ import annotations

from ._redis import RedisBackend as RedisBackend

__all__ = ["RedisBackend"]
