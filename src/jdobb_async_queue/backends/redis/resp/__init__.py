"""The Redis backend's own RESP2 transport: anyio streams for I/O, ``hiredis`` for parsing replies.

Why a transport of our own: the maintained Redis clients either run on one event loop only or cost
several times the round trip (measured in the design notes and ``bench/redis_roundtrip.py``).
The Redis backend sees only the names exported here: :class:`RedisClient` (``from_url``,
``execute``, ``evalsha``, ``fcall``, ``pubsub``, ``aclose``), :class:`PubSub`, :class:`Script`,
:class:`Library`, the URL parser and the error classes. One module per concern:

- :mod:`.url` -- Redis URLs and the addresses they name
- :mod:`.errors` -- the error classes
- :mod:`.connection` -- one connection: opening, ``AUTH``, encoding commands, reading replies
- :mod:`.pool` -- :class:`RedisClient`, the connections concurrent callers share (and how)
- :mod:`.pubsub` -- :class:`PubSub`, a subscriber on a connection of its own
- :mod:`.script` -- :class:`Script`, a Lua script called by its digest, and :class:`Library`, a
  function library (Redis 7+)

Only RESP2 is spoken. Replies are returned as hiredis produces them, undecoded: ``bytes`` for
strings, ``int``, ``None`` for nil, ``list`` for arrays, and :class:`RedisReplyError` *instances*
for error replies inside arrays.
"""

from __future__ import annotations

from .connection import RedisArg as RedisArg
from .errors import InvalidRedisURL as InvalidRedisURL
from .errors import RedisAuthError as RedisAuthError
from .errors import RedisConnectionError as RedisConnectionError
from .errors import RedisReplyError as RedisReplyError
from .errors import RedisTimeoutError as RedisTimeoutError
from .errors import RedisTransportError as RedisTransportError
from .pool import RedisClient as RedisClient
from .pubsub import PubSub as PubSub
from .script import Library as Library
from .script import Script as Script
from .url import RedisAddress as RedisAddress
from .url import parse_redis_url as parse_redis_url

__all__ = [
    "InvalidRedisURL",
    "Library",
    "PubSub",
    "RedisAddress",
    "RedisArg",
    "RedisAuthError",
    "RedisClient",
    "RedisConnectionError",
    "RedisReplyError",
    "RedisTimeoutError",
    "RedisTransportError",
    "Script",
    "parse_redis_url",
]
