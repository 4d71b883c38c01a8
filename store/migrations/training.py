"""Training: immutable manifests (hashed snapshots of a training set) and training runs."""
from sqlite_utils.migrations import Migrations

from store.migrations._sql import run_script

ORDER = 50
migrations = Migrations("realcal.training")


@migrations()
def m001_manifests_and_runs(db):
    run_script(
        db,
        """
        CREATE TABLE manifests (
            id INTEGER PRIMARY KEY,
            hash TEXT NOT NULL UNIQUE,          -- sha256 of the sorted (image, split, labels) entries
            spec TEXT NOT NULL,                 -- JSON: how it was drawn (pools, counts, seeds)
            counts TEXT NOT NULL,               -- JSON: images per split and kind
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        CREATE TABLE manifest_items (
            manifest_id INTEGER NOT NULL REFERENCES manifests(id),
            image_id INTEGER NOT NULL,
            split TEXT NOT NULL CHECK (split IN ('train', 'val', 'test')),
            label_source TEXT NOT NULL,         -- ground_truth | corrected | conditioning
            person_ids TEXT NOT NULL,           -- JSON: the persons used as labels
            PRIMARY KEY (manifest_id, image_id)
        );
        CREATE TRIGGER manifests_immutable BEFORE UPDATE ON manifests
            BEGIN SELECT RAISE(ABORT, 'manifests are immutable'); END;
        CREATE TRIGGER manifest_items_immutable BEFORE UPDATE ON manifest_items
            BEGIN SELECT RAISE(ABORT, 'manifests are immutable'); END;
        CREATE TABLE training_runs (
            id INTEGER PRIMARY KEY,
            job_id INTEGER,
            manifest_id INTEGER NOT NULL REFERENCES manifests(id),
            config TEXT NOT NULL,               -- JSON: resolved recipe, seed, package versions
            status TEXT NOT NULL DEFAULT 'running',
            weights TEXT,                       -- path of the selected (best on val) weights
            curves TEXT,                        -- JSON: per-epoch metrics
            metrics TEXT,                       -- JSON: test-split evaluation
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        CREATE TABLE eval_images (
            run_id INTEGER NOT NULL REFERENCES training_runs(id) ON DELETE CASCADE,
            image_id INTEGER NOT NULL,
            person_id INTEGER NOT NULL,
            oks REAL,                           -- best-matching prediction's OKS (0 if none)
            pck REAL,                           -- PCK@0.2 over the person's labelled joints
            pck_joints TEXT,                    -- JSON: per-joint 1/0/null
            PRIMARY KEY (run_id, person_id)
        );
        """,
    )


@migrations()
def m002_experiments(db):
    run_script(
        db,
        """
        CREATE TABLE experiments (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            config TEXT NOT NULL,               -- JSON: the resolved experiment file
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        CREATE TABLE experiment_runs (
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            arm TEXT NOT NULL,
            seed INTEGER NOT NULL,
            manifest_id INTEGER,
            training_run_id INTEGER,            -- NULL for the zero-shot arm
            status TEXT NOT NULL,               -- done | failed
            result TEXT NOT NULL,               -- JSON: test and val metrics, per-person rows, time
            PRIMARY KEY (experiment_id, arm, seed)
        );
        """,
    )


@migrations()
def m003_experiment_ap50(db):
    run_script(db, "ALTER TABLE experiments ADD COLUMN ap50_comparisons TEXT;  -- JSON, paired bootstrap")


@migrations()
def m004_excluded_images(db):
    run_script(
        db,
        """
        CREATE TABLE excluded_images (            -- kept out of every manifest built from now on
            image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
            reason TEXT,
            user TEXT,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        """,
    )


@migrations()
def m005_experiment_claims(db):
    run_script(
        db,
        """
        CREATE TABLE experiment_claims (          -- an (arm, seed) run in progress, so that processes share the work
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            arm TEXT NOT NULL,
            seed INTEGER NOT NULL,
            job_id INTEGER NOT NULL,              -- the experiment job running it; the claim lives while the job does
            worker TEXT,                          -- host:pid
            claimed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            PRIMARY KEY (experiment_id, arm, seed)
        );
        """,
    )


@migrations()
def m006_experiment_claim_token(db):
    # the job's claim token when it took the run: a job requeued and taken by another process holds a new token,
    # so the old process's claim is dead and it can no longer release the new holder's
    run_script(db, "ALTER TABLE experiment_claims ADD COLUMN token TEXT;")
