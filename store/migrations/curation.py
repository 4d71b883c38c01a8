"""Curation: cached embeddings, runs, per-image stage results, the selection (review order)."""
from sqlite_utils.migrations import Migrations

from store.migrations._sql import run_script

ORDER = 30
migrations = Migrations("realcal.curation")


@migrations()
def m001_curation(db):
    run_script(
        db,
        """
        CREATE TABLE embeddings (
            sha256 TEXT NOT NULL,
            model TEXT NOT NULL,               -- embedder id, e.g. effnet-lite0
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,              -- float32, L2-normalised
            PRIMARY KEY (sha256, model)
        );
        CREATE TABLE curation_runs (
            id INTEGER PRIMARY KEY,
            job_id INTEGER,
            config TEXT NOT NULL,              -- JSON: the resolved stages and thresholds
            calibration TEXT NOT NULL DEFAULT '{}', -- JSON: per stage, the real-anchor figures
            funnel TEXT NOT NULL DEFAULT '[]', -- JSON: [{stage, entered, passed, failed, unavailable}]
            set_metrics TEXT NOT NULL DEFAULT '{}', -- JSON: KID / FD per batch
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        CREATE TABLE curation_results (
            run_id INTEGER NOT NULL REFERENCES curation_runs(id) ON DELETE CASCADE,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            stage TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pass', 'fail', 'unavailable', 'skipped')),
            value REAL,                        -- the stage's main score
            reason TEXT,
            details TEXT,                      -- JSON: sub-scores, detected keypoints, ...
            PRIMARY KEY (run_id, image_id, stage)
        );
        CREATE INDEX curation_results_stage ON curation_results(run_id, stage);
        CREATE TABLE selections (
            run_id INTEGER NOT NULL REFERENCES curation_runs(id) ON DELETE CASCADE,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            rank INTEGER NOT NULL,
            priority REAL NOT NULL,
            components TEXT NOT NULL,          -- JSON: uncertainty, diversity, weights
            PRIMARY KEY (run_id, image_id)
        );
        CREATE INDEX selections_rank ON selections(run_id, rank);
        """,
    )


@migrations()
def m002_teacher_predictions(db):
    run_script(
        db,
        """
        CREATE TABLE teacher_predictions (       -- a cache: what a teacher (weights, size, device) saw in an image
            model TEXT NOT NULL,                  -- weights hash : imgsz : conf : device [: flip]
            sha256 TEXT NOT NULL,
            prediction TEXT NOT NULL,             -- JSON: keypoints, boxes, scores
            PRIMARY KEY (model, sha256)
        );
        """,
    )
