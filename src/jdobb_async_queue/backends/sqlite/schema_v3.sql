-- Schema version 3 of the SQLite backend (PRAGMA user_version = 3), applied after version 2.
--
-- Issue 12: the columns of the new JobRecord fields.
--   lost       -- how many times the job's lease ran out (its worker died or stalled)
--   max_lost   -- run-outs allowed before the job is FAILED (_policy.lost_ends_job); jobs stored
--                 before this version get the default of _records.DEFAULT_MAX_LOST (5)
--   update_seq -- the job's update sequence number, +1 on every stored change, in the same
--                 transaction; subscribers order and de-duplicate by it, never by time. Jobs
--                 stored before this version start at 1.

ALTER TABLE jobs ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN max_lost INTEGER NOT NULL DEFAULT 5;
ALTER TABLE jobs ADD COLUMN update_seq INTEGER NOT NULL DEFAULT 1;

-- Issue 14: the worker registry, shared by every process on the file. One row per running
-- Worker: its record (WorkerRecord as JSON, without the heartbeat) and its last heartbeat; rows
-- whose heartbeat is more than WORKER_TTL seconds old are dead and deleted by the next write.
CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    record       TEXT NOT NULL,
    heartbeat_at REAL NOT NULL
) WITHOUT ROWID;
