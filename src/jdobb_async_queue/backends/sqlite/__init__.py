"""The SQLite backend (``JobQueue(backend="sqlite", url=...)``): everything it is made of.

- :mod:`.backend` -- :class:`SQLiteBackend`, the async face: group commit, notifications
- ``schema_v*.sql`` -- the schema, one migration script per version (``PRAGMA user_version``)
- :mod:`.queries` -- every other statement, its status guards built from the state machine
- :mod:`.tx` -- what a request works with inside a transaction; rows to records
- :mod:`.writes` -- the job transitions, synchronous, each run inside an open transaction
- :mod:`.reads` -- listing, counting and the look-ups for other processes' commits
- :mod:`.registry` -- the worker registry
- :mod:`.store` -- URL settings, the connection, migrations, batched transactions, and the
  translation of sqlite3 errors into the library's own
- :mod:`.thread` -- the backend's database thread, which runs the store
- :mod:`.doorbell` -- wake-ups across processes: a Unix datagram socket per waiting backend

Nothing but :mod:`.backend`, :mod:`.thread` and :mod:`.doorbell` touches the event loop: the
rest runs in the database thread.
"""

from __future__ import annotations

from .backend import SQLiteBackend as SQLiteBackend
from .store import SchemaVersionError as SchemaVersionError

__all__ = ["SQLiteBackend", "SchemaVersionError"]
