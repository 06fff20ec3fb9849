"""The SQL layer of the SQLite backend (:mod:`jdobb_async_queue.backends.sqlite`).

- ``schema_v*.sql`` -- the schema, one migration script per version (``PRAGMA user_version``)
- :mod:`.queries` -- every other statement, its status guards built from the state machine
- :mod:`.tx` -- what a request works with inside a transaction; rows to records
- :mod:`.writes` -- the job transitions, synchronous, each run inside an open transaction
- :mod:`.reads` -- listing, counting and the look-ups for other processes' commits
- :mod:`.store` -- URL settings, the connection, migrations, batched transactions, and the
  translation of sqlite3 errors into the library's own

Nothing here touches the event loop: the backend runs it in a worker thread.
"""
