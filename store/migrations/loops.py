"""Loops: the model in the loop, round by round (train, mine failures, generate, curate, select, train)."""
from sqlite_utils.migrations import Migrations

from store.migrations._sql import run_script

ORDER = 70
migrations = Migrations("realcal.loops")


@migrations()
def m001_loops(db):
    run_script(
        db,
        """
        CREATE TABLE loops (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            config TEXT NOT NULL,               -- JSON: the resolved loop file
            status TEXT NOT NULL DEFAULT 'running',   -- running | done | stopped | failed
            stop_reason TEXT,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        CREATE TABLE loop_rounds (
            loop_id INTEGER NOT NULL REFERENCES loops(id) ON DELETE CASCADE,
            round INTEGER NOT NULL,
            status TEXT NOT NULL,               -- running | done
            state TEXT NOT NULL,                -- JSON: each finished step's output (resume skips them)
            updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            PRIMARY KEY (loop_id, round)
        );
        """,
    )
