"""The PostgreSQL backend (the ``postgres`` extra: ``psycopg``), built on the public backend
seam alone. See ``docs/postgres.md``."""

from .backend import PostgresBackend, enqueue_within, schema_name

__all__ = ["PostgresBackend", "enqueue_within", "schema_name"]
