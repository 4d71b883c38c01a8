"""File claims: the content addresses a running import has written files for but not yet committed."""
from sqlite_utils.migrations import Migrations

from store.migrations._sql import run_script

ORDER = 70
migrations = Migrations("realcal.integrity")


@migrations()
def m001_file_claims(db):
    run_script(
        db,
        """
        CREATE TABLE file_claims (
            sha256 TEXT NOT NULL,              -- content address of the image (and its thumbnail)
            ext TEXT NOT NULL,
            owner TEXT NOT NULL,               -- the claiming writer; live while it holds locks/<owner>.lock
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            PRIMARY KEY (sha256, owner)
        );
        CREATE INDEX file_claims_owner ON file_claims(owner);
        """
    )
