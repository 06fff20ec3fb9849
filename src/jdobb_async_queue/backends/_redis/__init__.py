"""The Redis backend's parts: key layout, Lua scripts, pub/sub, calls with retries.

:class:`RedisBackend` is re-exported by :mod:`jdobb_async_queue.backends.redis`.
"""

from __future__ import annotations

from .backend import RedisBackend

__all__ = ["RedisBackend"]
