"""Open the workspace database: WAL, busy timeout, named migrations.

One function opens the database (:func:`open_db`). A ``sqlite_utils.Database`` wraps one
``sqlite3`` connection, which must not be shared across threads: open one per thread or per
process. Migrations are applied under an exclusive file lock, so two processes opening a fresh
workspace at the same moment never race on ``CREATE TABLE``.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

from store import migrations as migrations_pkg

BUSY_TIMEOUT_S = 60.0


class DatabaseUnavailable(Exception):
    """The workspace database cannot be opened or used (not a database, damaged, a folder, not writable, disk
    full). The message is one line that says which and what to do."""


_NOT_UTF8 = "is damaged (text in it is not UTF-8); restore it from a backup"

# SQLite's primary result codes (``sqlite3.Error.sqlite_errorname``, extended codes start with them) and the
# messages Python gives them, with what they mean for a workspace.
_SQLITE_ERRORS = (
    ("SQLITE_NOTADB", "file is not a database",
     "is not a SQLite database (damaged, or not a realcal database)"),
    ("SQLITE_CORRUPT", "malformed",
     "is damaged (database disk image is malformed); restore it from a backup"),
    ("SQLITE_FULL", "database or disk is full",
     "cannot be written: the disk is full; free some space and run the command again"),
    ("SQLITE_READONLY", "readonly database",
     "is read-only; realcal needs to write to it and to its folder (check permissions and the file system)"),
    ("SQLITE_CANTOPEN", "unable to open database file",
     "cannot be opened; realcal needs to read and write it and its folder (it keeps -wal and -shm files "
     "beside it): check permissions and that the file system is not read-only"),
    ("SQLITE_PERM", "access permission denied",
     "cannot be used: permission denied; check the permissions of the workspace folder"),
    ("SQLITE_IOERR", "disk I/O error",
     "cannot be used: a disk I/O error (a full, failing or read-only disk)"),
    ("SQLITE_BUSY", "database is locked",
     f"is locked: another process held it for over {BUSY_TIMEOUT_S:.0f} s; try again"),
    ("", "Could not decode to UTF-8", _NOT_UTF8),
    ("", "malformed database schema",
     "is damaged (its schema cannot be read); restore it from a backup"),
    ("", "no such table", None),
    ("", "no such column", None),
)
_SCHEMA_MISMATCH = ("does not have the tables this realcal expects ({}): it is damaged, or was changed by "
                    "something else; restore it from a backup")


_READERS = tuple(str(Path(p).resolve().parent) + os.sep for p in (__file__, sqlite_utils.__file__))


def _raised_reading_rows(exc: BaseException) -> bool:
    """Whether ``exc`` was raised where rows are read (store/, sqlite-utils): a decoding error there is the
    database's text, not a file's."""
    tb, last = exc.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and str(Path(last.tb_frame.f_code.co_filename).resolve()).startswith(_READERS)


def describe_error(exc: BaseException) -> str | None:
    """What a SQLite error means for the workspace database, as the end of a sentence ("... is damaged");
    None for errors that are not about the database file (a bug, a constraint)."""
    if isinstance(exc, UnicodeDecodeError) and _raised_reading_rows(exc):
        return _NOT_UTF8
    if not isinstance(exc, sqlite3.Error):
        return None
    name = getattr(exc, "sqlite_errorname", None) or ""
    text = str(exc)
    for code, message, meaning in _SQLITE_ERRORS:
        if (code and name.startswith(code)) or message in text:
            return meaning or _SCHEMA_MISMATCH.format(" ".join(text.split())[:120])
    return None


def _unavailable(path: Path, exc: BaseException) -> DatabaseUnavailable:
    meaning = describe_error(exc) if isinstance(exc, sqlite3.Error) else None
    if isinstance(exc, UnicodeDecodeError):
        meaning = _NOT_UTF8
    if meaning is None and isinstance(exc, OSError):
        meaning = f"cannot be used: {exc.strerror or exc} ({exc.filename or path.parent})"
    return DatabaseUnavailable(f"the workspace database {path} {meaning or f'cannot be used: {exc}'}")


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
    """Apply every pending migration; returns the names applied (empty when up to date).

    DatabaseUnavailable when the file cannot be used as a database (see :func:`open_db`)."""
    path = Path(path)
    _refuse_folder(path)
    try:
        return _migrate(path)
    except sqlite3.OperationalError as exc:
        if describe_error(exc) is None and any(m in str(exc) for m in ("already exists", "duplicate column")):
            # a migration recorded as not applied whose tables are there: the record was damaged
            raise DatabaseUnavailable(
                f"the workspace database {path} is damaged: its record of applied schema changes does not match "
                f"its tables ({exc}); restore it from a backup") from exc
        if describe_error(exc) is None:
            raise
        raise _unavailable(path, exc) from exc
    except (sqlite3.Error, OSError, UnicodeDecodeError) as exc:
        if isinstance(exc, sqlite3.Error) and describe_error(exc) is None:
            raise
        raise _unavailable(path, exc) from exc


def _refuse_folder(path: Path) -> None:
    if path.is_dir():
        raise DatabaseUnavailable(f"the workspace database {path} is a folder, not a database file; "
                                  f"move it away to create a fresh workspace there")


def _migrate(path: Path) -> list[str]:
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
    """Open (and, with ``create``, make) the workspace database, migrated to the latest schema.

    Raises DatabaseUnavailable, with one line saying why, when the file is a folder, is not a SQLite
    database, is damaged where opening reads it, or cannot be opened or migrated (permissions, a read-only
    or full disk). Damage elsewhere in the file surfaces as a ``sqlite3.DatabaseError`` when a query reaches
    it; :func:`describe_error` explains those."""
    path = Path(path)
    _refuse_folder(path)
    if not path.exists() and not create:
        raise FileNotFoundError(path)
    db = None
    try:
        db = _connect(path)
        if create or pending_migrations(db):
            db.close()
            db = None
            migrate(path)
            db = _connect(path)
        return db
    except (sqlite3.Error, UnicodeDecodeError) as exc:    # text that is not UTF-8: a damaged file
        if db is not None:
            db.close()
        if isinstance(exc, sqlite3.Error) and describe_error(exc) is None:
            raise
        raise _unavailable(path, exc) from exc


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
