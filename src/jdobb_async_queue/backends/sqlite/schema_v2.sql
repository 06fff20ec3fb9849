-- Schema version 2 of the SQLite backend (PRAGMA user_version = 2), applied after version 1.
--
-- The edges to a purged or expired job are now dropped by the code that deletes it, after it has
-- read them: a job still waiting on the deleted one (retried by hand while its dependency was
-- FAILED or CANCELLED) can never run, and is cancelled in the same transaction. Version 1's
-- trigger dropped those edges first, so the waiting job was never found.

DROP TRIGGER IF EXISTS jobs_forget_edges;
