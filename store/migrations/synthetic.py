"""Lineage of synthetic images: how each was made and from which real images."""
from sqlite_utils.migrations import Migrations

from store.migrations._sql import run_script

ORDER = 20
migrations = Migrations("realcal.synthetic")


@migrations()
def m001_lineage(db):
    run_script(
        db,
        """
        CREATE TABLE lineage (
            image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
            batch_id INTEGER NOT NULL REFERENCES batches(id),
            generator TEXT NOT NULL,
            seed INTEGER,
            prompt TEXT,
            details TEXT NOT NULL,            -- JSON: generator, model ids, parameters, transforms
            seconds REAL,                     -- generation time of this image
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        CREATE TABLE lineage_sources (
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            source_image_id INTEGER NOT NULL, -- a real image (no foreign key: kept if it goes)
            role TEXT NOT NULL CHECK (role IN ('anchor', 'cutout', 'background')),
            PRIMARY KEY (image_id, source_image_id, role)
        );
        CREATE INDEX lineage_sources_source ON lineage_sources(source_image_id);
        """,
    )
