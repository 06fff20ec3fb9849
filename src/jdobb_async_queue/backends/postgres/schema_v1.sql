-- Schema version 1 of the PostgreSQL backend, created in the namespace's own schema
-- (search_path points there; see backend.py). Applied in one transaction: nothing is
-- half-created when it fails.
--
-- One row per job. `lane` files a PENDING job under ready (0), scheduled (1) or waiting on
-- dependencies (2) and is NULL in every other status: each lane has its own partial index, so a
-- claim reads the ready index only and never scans scheduled, waiting or finished jobs.
-- Times are seconds since the epoch on the database's clock (now()).

CREATE TABLE jobs (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- FIFO within a priority
    id               text             NOT NULL UNIQUE,
    job_type         text             NOT NULL,
    status           text             NOT NULL,
    lane             smallint,          -- PENDING only: 0 ready, 1 scheduled, 2 waiting
    rank             smallint         NOT NULL,  -- claim order of the priority: 0 high, 1 normal, 2 low
    priority         text             NOT NULL,
    data             text             NOT NULL,  -- JSON
    metadata         text             NOT NULL,  -- JSON
    results          text,                       -- JSON
    error            text,
    message          text,
    progress         double precision NOT NULL DEFAULT 0,
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL,
    touched          bigint           NOT NULL,  -- order of the last update (touch_seq)
    completed_at     double precision,
    ttl              integer,
    execute_at       double precision,
    attempts         integer          NOT NULL DEFAULT 0,
    max_retries      integer          NOT NULL DEFAULT 0,
    retry_delay      double precision NOT NULL DEFAULT 1,
    timeout          double precision,
    started_at       double precision,
    depends_on       text[]           NOT NULL DEFAULT '{}',
    unique_key       text,
    worker_id        text,
    lease_expires_at double precision,
    fence            integer          NOT NULL DEFAULT 0,
    pending_deps     integer          NOT NULL DEFAULT 0,
    expires_at       double precision,
    lost             integer          NOT NULL DEFAULT 0,
    max_lost         integer          NOT NULL DEFAULT 5,
    update_seq       bigint           NOT NULL DEFAULT 1
);

-- "Most recently updated": every change takes the next value.
CREATE SEQUENCE touch_seq;

-- Claims: priority then FIFO.
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
-- Listing, most recently updated first, per status; lease recovery (PROCESSING jobs).
CREATE INDEX jobs_by_status ON jobs (status, touched);

-- Dependency edges that still matter: `job_id` waits for `dep_id`. Deleted when the
-- dependency ends, and when the waiting job ends.
CREATE TABLE edges (
    dep_id text NOT NULL,
    job_id text NOT NULL,
    PRIMARY KEY (dep_id, job_id)
);
CREATE INDEX edges_by_job ON edges (job_id);

-- Custom updates (Broadcaster.send) too large for a NOTIFY payload, on their way to the
-- subscribers of other processes; deleted after a minute.
CREATE TABLE messages (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body       text             NOT NULL,
    created_at double precision NOT NULL
);

-- The worker registry: one row per running Worker, its record as JSON and its last heartbeat.
CREATE TABLE workers (
    id           text PRIMARY KEY,
    record       text             NOT NULL,
    heartbeat_at double precision NOT NULL
);
