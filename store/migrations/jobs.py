"""Background jobs: the queue the worker claims from."""
from sqlite_utils.migrations import Migrations

from store.migrations._sql import run_script

ORDER = 10
migrations = Migrations("realcal.jobs")


@migrations()
def m001_jobs(db):
    run_script(
        db,
        """
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            params TEXT NOT NULL DEFAULT '{}',       -- JSON: the resolved parameters
            status TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            progress REAL NOT NULL DEFAULT 0,        -- units done
            total REAL,                              -- units in all (NULL: unknown)
            message TEXT,
            error TEXT,
            result TEXT,                             -- JSON
            state TEXT,                              -- JSON checkpoint for resumable jobs
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            worker TEXT,                             -- host:pid of the process running it
            worker_pid INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            started_at TEXT,
            heartbeat_at TEXT,
            finished_at TEXT
        );
        CREATE INDEX jobs_status ON jobs(status, id);
        """,
    )


@migrations()
def m002_claim(db):
    # the token of the process that holds a running job: set when it is claimed, cleared when it is requeued,
    # and checked by every write the job makes, so that a job is run by exactly one process
    run_script(db, "ALTER TABLE jobs ADD COLUMN claim TEXT;")
