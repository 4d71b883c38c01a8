"""Access: server-side login sessions, login attempts (throttling), case-insensitive user names.

The signing secret never lives in the database: the key the old login cookie was signed with
(``settings['auth.cookie_key']``) is deleted, which also ends every old cookie.
"""
from sqlite_utils.migrations import Migrations

from store.migrations._sql import run_script

ORDER = 45
migrations = Migrations("realcal.sessions")


@migrations()
def m001_sessions(db):
    run_script(
        db,
        """
        CREATE TABLE auth_sessions (
            id INTEGER PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,   -- sha256 of the cookie's token (the token is never stored)
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at REAL NOT NULL,          -- unix time
            last_seen REAL NOT NULL,
            expires_at REAL NOT NULL,
            revoked_at REAL,                   -- logout, password change, disable, `user logout`
            revoked_why TEXT,
            address TEXT,
            user_agent TEXT
        );
        CREATE INDEX auth_sessions_user ON auth_sessions(user_id, revoked_at);
        CREATE TABLE auth_attempts (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            username TEXT NOT NULL COLLATE NOCASE,
            address TEXT NOT NULL,
            ok INTEGER NOT NULL
        );
        CREATE INDEX auth_attempts_user ON auth_attempts(username, ts);
        CREATE INDEX auth_attempts_address ON auth_attempts(address, ts);
        DELETE FROM settings WHERE key = 'auth.cookie_key';
        """,
    )


@migrations()
def m002_user_names_case_insensitive(db):
    """One account per name, whatever its case. A workspace that already holds names differing
    only in case keeps them (renaming would orphan their decisions); the code refuses new ones and a
    login that matches several spellings but none exactly."""
    clash = db.execute("SELECT 1 FROM users GROUP BY name COLLATE NOCASE HAVING COUNT(*) > 1 LIMIT 1").fetchone()
    if clash is None:
        db.execute("CREATE UNIQUE INDEX users_name_nocase ON users(name COLLATE NOCASE)")
    else:
        db.execute("CREATE INDEX users_name_nocase ON users(name COLLATE NOCASE)")
