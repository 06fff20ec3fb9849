"""The Redis backend (``JobQueue(backend="redis", url=...)``): everything it is made of.

- :mod:`.backend` -- :class:`RedisBackend`, the face, and :func:`acl_rule` (a user limited to
  one namespace)
- :mod:`.keys` -- every key and channel name
- ``lua/`` -- the Lua scripts, one transition each, and their shared helpers (``lib.lua``)
- :mod:`.scripts` -- assembles the scripts from ``lua/`` and a generated header
- :mod:`.codec` -- records to script arguments and replies to records
- :mod:`.calls` -- error mapping and retries
- :mod:`.notify` -- pub/sub: wake-ups, cancellations, job updates
- :mod:`.resp` -- the RESP2 transport the backend talks to Redis with
"""

from __future__ import annotations

from .backend import RedisBackend as RedisBackend
from .backend import acl_rule as acl_rule

__all__ = ["RedisBackend", "acl_rule"]
