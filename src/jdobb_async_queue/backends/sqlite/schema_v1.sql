-- Schema version 1 of the SQLite backend (applied to an empty file; PRAGMA user_version = 1).
--
-- One row per job. `lane` files a PENDING job under ready (0), scheduled (1) or waiting on
-- dependencies (2) and is NULL in every other status: each lane has its own partial index, so a
-- claim reads the ready index only and never scans scheduled, waiting or finished jobs.

CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY,   -- enqueue order: FIFO within a priority
    id               TEXT    NOT NULL UNIQUE,
    job_type         TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    lane             INTEGER,               -- PENDING only: 0 ready, 1 scheduled, 2 waiting
    rank             INTEGER NOT NULL,      -- claim order of the priority: 0 high, 1 normal, 2 low
    priority         TEXT    NOT NULL,
    data             TEXT    NOT NULL,      -- JSON
    metadata         TEXT    NOT NULL,      -- JSON
    results          TEXT,                  -- JSON
    error            TEXT,
    message          TEXT,
    progress         REAL    NOT NULL DEFAULT 0,
    created_at       REAL    NOT NULL,
    updated_at       REAL    NOT NULL,
    touched          INTEGER NOT NULL,      -- order of the last update: "most recently updated"
    completed_at     REAL,
    ttl              INTEGER,
    execute_at       REAL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL DEFAULT 0,
    retry_delay      REAL    NOT NULL DEFAULT 1,
    timeout          REAL,
    started_at       REAL,
    depends_on       TEXT    NOT NULL DEFAULT '[]',  -- JSON list of job ids
    unique_key       TEXT,
    worker_id        TEXT,
    lease_expires_at REAL,
    fence            INTEGER NOT NULL DEFAULT 0,
    pending_deps     INTEGER NOT NULL DEFAULT 0,
    expires_at       REAL
);

-- Claims: priority then FIFO, all types or one type at a time.
CREATE INDEX jobs_ready ON jobs (rank, seq) WHERE lane = 0;
CREATE INDEX jobs_ready_by_type ON jobs (job_type, rank, seq) WHERE lane = 0;
-- Promotion of due jobs, next_due, and the listing order of scheduled jobs.
CREATE INDEX jobs_scheduled ON jobs (execute_at, rank, seq) WHERE lane = 1;
CREATE INDEX jobs_waiting ON jobs (rank, seq) WHERE lane = 2;
-- Retention: terminal jobs with a ttl.
CREATE INDEX jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;
-- A unique key is held while its job is PENDING or PROCESSING; the database enforces it too.
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'processing');
-- Listing, most recently updated first: per status, or merged over the statuses. Also lease
-- recovery, which reads the PROCESSING jobs (as many as workers run at once; an index of its
-- own would cost every claim and every completion two more index updates).
CREATE INDEX jobs_by_status ON jobs (status, touched);

-- Dependency edges that still matter: `job_id` waits for `dep_id`. Settled (deleted) when the
-- dependency ends, and when the waiting job ends.
CREATE TABLE edges (
    dep_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    PRIMARY KEY (dep_id, job_id)
) WITHOUT ROWID;
CREATE INDEX edges_by_job ON edges (job_id);

-- Custom updates (Broadcaster.send) on their way to subscribers in other processes; each
-- process reads those newer than the last it saw, and senders delete them after a minute.
CREATE TABLE messages (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: readers keep their place
    origin     TEXT    NOT NULL,  -- the backend that sent it (and delivered it itself)
    job_id     TEXT    NOT NULL,
    body       TEXT    NOT NULL,  -- the update, JSON
    created_at REAL    NOT NULL
);
CREATE INDEX messages_created ON messages (created_at);

-- Job counts per status and lane, so stats() never counts rows. Each transaction adds what
-- it moved (see sqlite/tx.py); triggers would cost every claim and completion much more.
CREATE TABLE counts (
    status TEXT    NOT NULL,
    lane   INTEGER NOT NULL,  -- -1 outside PENDING
    n      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (status, lane)
) WITHOUT ROWID;
INSERT INTO counts (status, lane) VALUES
    ('pending', 0), ('pending', 1), ('pending', 2),
    ('processing', -1), ('complete', -1), ('failed', -1), ('cancelled', -1);

-- A purged or expired job releases no one later, even if a new job takes its id.
CREATE TRIGGER jobs_forget_edges AFTER DELETE ON jobs BEGIN
    DELETE FROM edges WHERE dep_id = OLD.id;
END;
