"""Core tables: import/generation batches, images, persons, the event log, settings."""
from sqlite_utils.migrations import Migrations

from store.migrations._sql import run_script

ORDER = 0
migrations = Migrations("realcal.core")


@migrations()
def m001_core_tables(db):
    run_script(
        db,
        """
        CREATE TABLE batches (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,                -- import | generation | pseudo_label | ...
            format TEXT,                       -- coco | yolo-pose | lsp | images | generator name
            dataset TEXT,                      -- source dataset name
            source TEXT,                       -- path or description of where it came from
            params TEXT NOT NULL DEFAULT '{}', -- JSON: the resolved options it ran with
            report TEXT NOT NULL DEFAULT '{}', -- JSON: counts and skipped records
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );

        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            batch_id INTEGER NOT NULL REFERENCES batches(id),
            kind TEXT NOT NULL CHECK (kind IN ('real', 'synthetic')),
            split TEXT NOT NULL CHECK (split IN ('train', 'val', 'test')),
            dataset TEXT,
            file_name TEXT NOT NULL,           -- name in the source dataset
            source_id TEXT,                    -- id in the source dataset
            sha256 TEXT NOT NULL UNIQUE,       -- content address of the stored file
            ext TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        CREATE INDEX images_batch ON images(batch_id);
        CREATE INDEX images_kind_split ON images(kind, split);

        CREATE TABLE persons (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            batch_id INTEGER NOT NULL REFERENCES batches(id),
            source TEXT NOT NULL
                CHECK (source IN ('ground_truth', 'conditioning', 'predicted', 'corrected')),
            keypoints TEXT NOT NULL,           -- JSON [x1, y1, v1, ... x17, y17, v17], COCO-17
            scores TEXT,                       -- JSON [17 confidences] for predicted persons
            extra TEXT,                        -- JSON {name: [x, y, v]}: joints outside COCO-17
            bbox_x REAL, bbox_y REAL, bbox_w REAL, bbox_h REAL,
            area REAL NOT NULL,                -- object scale for OKS (see engine.poses)
            area_source TEXT NOT NULL CHECK (area_source IN ('segmentation', 'bbox')),
            num_keypoints INTEGER NOT NULL,
            iscrowd INTEGER NOT NULL DEFAULT 0,
            score REAL,                        -- detection confidence for predicted persons
            segmentation TEXT,                 -- JSON: COCO polygons or RLE
            source_ann_id TEXT,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        CREATE INDEX persons_image ON persons(image_id);
        CREATE INDEX persons_batch ON persons(batch_id);
        CREATE INDEX persons_source ON persons(source);

        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            ts TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            kind TEXT NOT NULL,
            batch_id INTEGER,
            payload TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TRIGGER events_no_update BEFORE UPDATE ON events
            BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
        CREATE TRIGGER events_no_delete BEFORE DELETE ON events
            BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;

        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """
    )
