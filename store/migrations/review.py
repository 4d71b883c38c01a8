"""Review: users, the queue of items with review slots and leases, decisions, the audit log."""
from sqlite_utils.migrations import Migrations

from store.migrations._sql import run_script

ORDER = 40
migrations = Migrations("realcal.review")


@migrations()
def m001_review(db):
    run_script(
        db,
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL CHECK (role IN ('admin', 'annotator')),
            password_hash TEXT NOT NULL,       -- bcrypt
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        CREATE TABLE review_items (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL UNIQUE REFERENCES images(id) ON DELETE CASCADE,
            run_id INTEGER,                    -- the curation run whose order it came from
            rank INTEGER NOT NULL,
            slots INTEGER NOT NULL CHECK (slots IN (1, 2)),
            honeypot INTEGER NOT NULL DEFAULT 0, -- known-bad: expected decision is reject
            state TEXT NOT NULL DEFAULT 'open'
                CHECK (state IN ('open', 'accepted', 'rejected', 'conflict')),
            resolved_by TEXT,                  -- admin who settled a conflict
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        CREATE INDEX review_items_rank ON review_items(state, rank);
        CREATE TABLE review_slots (
            item_id INTEGER NOT NULL REFERENCES review_items(id) ON DELETE CASCADE,
            slot INTEGER NOT NULL,
            lease_user TEXT,
            lease_until REAL,                  -- unix time
            decided_by TEXT,
            PRIMARY KEY (item_id, slot)
        );
        CREATE INDEX review_slots_lease ON review_slots(decided_by, lease_until);
        CREATE TABLE decisions (
            id INTEGER PRIMARY KEY,
            item_id INTEGER NOT NULL REFERENCES review_items(id) ON DELETE CASCADE,
            slot INTEGER NOT NULL,
            user TEXT NOT NULL,
            decision TEXT NOT NULL CHECK (decision IN ('accept', 'reject', 'fix')),
            reasons TEXT,                      -- JSON list of reason tags
            shown_at REAL NOT NULL,
            decided_at REAL NOT NULL,
            active_s REAL NOT NULL,            -- shown-to-decided, capped
            idle INTEGER NOT NULL DEFAULT 0,   -- 1 when the cap applied
            corrected_person_id INTEGER,
            undone INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX decisions_user ON decisions(user, id);
        CREATE TABLE review_audit (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            user TEXT NOT NULL,
            action TEXT NOT NULL,              -- decide | undo | skip | resolve | lease
            item_id INTEGER,
            slot INTEGER,
            payload TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX review_audit_item_user ON review_audit(item_id, user, action);
        CREATE TRIGGER review_audit_no_update BEFORE UPDATE ON review_audit
            BEGIN SELECT RAISE(ABORT, 'the review audit log is append-only'); END;
        CREATE TRIGGER review_audit_no_delete BEFORE DELETE ON review_audit
            BEGIN SELECT RAISE(ABORT, 'the review audit log is append-only'); END;
        """,
    )
