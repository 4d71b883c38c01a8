"""Pipelines: resolved pipeline files (by hash) and the state of each step for resume."""
from sqlite_utils.migrations import Migrations

from store.migrations._sql import run_script

ORDER = 60
migrations = Migrations("realcal.pipeline")


@migrations()
def m001_pipelines(db):
    run_script(
        db,
        """
        CREATE TABLE pipelines (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,          -- sha256 of the resolved pipeline
            resolved TEXT NOT NULL,             -- JSON: the pipeline with every default filled in
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        CREATE TABLE pipeline_steps (
            pipeline TEXT NOT NULL,             -- pipeline name
            step TEXT NOT NULL,
            key TEXT NOT NULL,                  -- hash(step config, previous step's key)
            status TEXT NOT NULL,
            result TEXT,                        -- JSON
            updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            PRIMARY KEY (pipeline, step)
        );
        """,
    )
