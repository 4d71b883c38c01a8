"""Open the workspace database: WAL, busy timeout, named migrations.

One function opens the database (:func:`open_db`). A ``sqlite_utils.Database`` wraps one
``sqlite3`` connection, which must not be shared across threads: open one per thread or per
process. Migrations are applied under an exclusive file lock, so two processes opening a fresh
workspace at the same moment never race on ``CREATE TABLE``.
"""
from __future__ import annotations

import contextlib
import fcntl
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

from store import migrations as migrations_pkg

BUSY_TIMEOUT_S = 60.0


def _connect(path: Path) -> sqlite_utils.Database:
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
    db = sqlite_utils.Database(conn)
    db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA synchronous = NORMAL")
    return db


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def migrate(path: Path) -> list[str]:
    """Apply every pending migration; returns the names applied (empty when up to date)."""
    path = Path(path)
    with _file_lock(path.with_name(path.name + ".migrate.lock")):
        with _connect(path) as db:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            applied: list[str] = []
            for module in migrations_pkg.modules():
                pending = [m.name for m in module.migrations.pending(db)]
                if pending:
                    module.migrations.apply(db)
                    applied += [f"{module.migrations.name}:{name}" for name in pending]
            return applied


def pending_migrations(db: sqlite_utils.Database) -> list[str]:
    return [
        f"{module.migrations.name}:{m.name}"
        for module in migrations_pkg.modules()
        for m in module.migrations.pending(db)
    ]


def open_db(path: Path, *, create: bool = False) -> sqlite_utils.Database:
    """Open (and, with ``create``, make) the workspace database, migrated to the latest schema."""
    path = Path(path)
    if not path.exists() and not create:
        raise FileNotFoundError(path)
    db = _connect(path)
    if create or pending_migrations(db):
        db.close()
        migrate(path)
        db = _connect(path)
    return db


@contextlib.contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """A write transaction that takes the write lock up front (``BEGIN IMMEDIATE``).

    ``db.atomic()`` starts a deferred transaction; when two processes both read and then
    try to write, SQLite cannot wait on the upgrade and one fails with "database is locked"
    at once. Taking the lock at BEGIN lets the busy timeout do its job. Nested calls fall
    back to ``db.atomic()`` savepoints.
    """
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.rollback()
        raise
    else:
        db.execute("COMMIT")
