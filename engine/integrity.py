"""The image store's one rule for files, and the checks behind ``realcal fsck`` and ``realcal gc``.

Image files (``images/<sha[:2]>/<sha>.<ext>``) and thumbnails (``thumbs/<sha[:2]>/<sha>.jpg``) are
shared by content: two imports of the same photograph, or an import racing the deletion of a batch
that held it, meet at the same path. Every writer of a workspace keeps one rule:

1. **A file is deleted only inside a write transaction** (``BEGIN IMMEDIATE``: SQLite's write lock
   is the workspace's write lock) **that has itself found no image row and no claim for its content
   address** (:func:`remove_unreferenced`). Deleting rows (``batch delete``) commits first; the files
   go in the next transaction, so a failed commit can never leave rows without files.
2. **A writer that writes files outside a write transaction claims them first.** An import stages
   for minutes, so before it looks for or writes an image it commits a ``file_claims`` row
   (:class:`Claims`) in a short write transaction of its own. Its final transaction inserts the
   image rows and drops its claims together; if it fails, it drops its claims and removes the files
   nobody else references, in one write transaction.
3. **A writer that writes files inside its write transaction needs no claim** (generation,
   honeypots): nothing can delete while it holds the lock. If its transaction fails it removes the
   files it wrote that no row or claim references, before the transaction ends (:func:`new_files`).
4. **A claim lives as long as its writer**: the claiming process holds an exclusive ``flock`` on
   ``locks/<owner>.lock`` until it ends, which the kernel releases even when the process is killed.
   A claim whose lock nobody holds is stale; ``realcal gc`` drops it and removes, under the write
   lock, every file no row or live claim references.

Two imports of the same image both succeed: the first to commit inserts the row, the second's final
transaction finds it and reports the image as a duplicate, as if it had run after the first.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from engine import media
from engine.workspace import Workspace
from store import integrity as store_integrity
from store.db import write_transaction

logger = logging.getLogger(__name__)

LOCK_DIR = "locks"
_OWNER = re.compile(r"^[0-9a-f]{32}$")
_ADDRESS = re.compile(r"^(?P<sha>[0-9a-f]{64})\.(?P<ext>[a-z0-9]+)$")
_TEMP = re.compile(r"^\.tmp-(?P<sha>[0-9a-f]{64})?")


# ----------------------------------------------------------------------------- the rule

def remove_unreferenced(ws: Workspace, db: sqlite_utils.Database,
                        addresses: Iterable[tuple[str, str]]) -> int:
    """Remove the files (image and thumbnail) of every address no image row or claim references.

    Call it inside a write transaction: that transaction is the proof that nothing references the
    files while they go. Returns how many image files were removed."""
    if not db.conn.in_transaction:
        raise RuntimeError("remove_unreferenced must run inside a write transaction")
    wanted = dict(addresses)
    used = store_integrity.in_use(db, list(wanted))
    removed = 0
    for sha, ext in wanted.items():
        if sha not in used:
            removed += int(media.image_path(ws.root, sha, ext) in media.remove_files(ws.root, sha, ext))
    return removed


def lock_path(ws: Workspace, owner: str) -> Path:
    return ws.root / LOCK_DIR / f"{owner}.lock"


def _hold_lock(path: Path) -> int:
    """Create ``path`` and hold an exclusive flock on it; returns the descriptor."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = None
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:   # not unlinked by gc before we locked it
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            if fd is not None:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise
        if fd is not None:
            os.close(fd)


def _lock_is_held(path: Path) -> bool:
    """Whether some live process holds ``path``'s flock (a missing file is not held)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)
    return False


class Claims:
    """One writer's claims on content addresses (rule 2 of the module docstring).

    ``with Claims(ws, db) as claims:`` holds the owner's lock; :meth:`claim` commits a claim before
    the caller looks for or writes the files; :meth:`settle`, inside the caller's final write
    transaction, drops the claims and removes whatever that transaction left unreferenced, and
    :meth:`done` after its commit. Leaving the block with claims still held (an exception, Ctrl-C,
    nothing committed) drops them and removes the files nobody else references."""

    def __init__(self, ws: Workspace, db: sqlite_utils.Database):
        self.ws, self.db = ws, db
        self.owner = uuid.uuid4().hex
        self.held: dict[str, str] = {}
        self._fd: int | None = None

    def __enter__(self) -> Claims:
        self._fd = _hold_lock(lock_path(self.ws, self.owner))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.held:
                self.abandon()
        finally:
            path = lock_path(self.ws, self.owner)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def claim(self, sha256: str, ext: str) -> None:
        """Commit a claim on ``sha256``: from now until it is dropped, nothing deletes its files."""
        self.held[sha256] = ext
        with write_transaction(self.db):
            store_integrity.add_claim(self.db, sha256, ext, self.owner)

    def settle(self) -> None:
        """Inside the final write transaction: drop the claims, remove files nothing references."""
        store_integrity.drop_claims(self.db, [self.owner])
        remove_unreferenced(self.ws, self.db, self.held.items())

    def done(self) -> None:
        """The final transaction committed: nothing is left to undo."""
        self.held.clear()

    def abandon(self) -> None:
        """Drop the claims and remove the claimed files no row or other claim references, in one
        write transaction. When the database cannot be written, the files stay for ``realcal gc``."""
        try:
            if self.db.conn.in_transaction:
                self.db.rollback()
            with write_transaction(self.db):
                store_integrity.drop_claims(self.db, [self.owner])
                remove_unreferenced(self.ws, self.db, self.held.items())
            self.held.clear()
        except (sqlite3.Error, OSError) as exc:
            logger.warning("could not remove the %d files this writer staged (%s); `realcal gc` removes them",
                           len(self.held), exc)


class NewFiles:
    """Files written inside a write transaction (see :func:`new_files`)."""

    def __init__(self, root: Path):
        self.root = root
        self.written: dict[str, str] = {}

    def store(self, info: media.ImageInfo, data: bytes) -> None:
        self.written[info.sha256] = info.ext
        media.store_image(self.root, info, data)


@contextlib.contextmanager
def new_files(ws: Workspace, db: sqlite_utils.Database) -> Iterator[NewFiles]:
    """Inside a write transaction: a block that stores image files with its rows (rule 3).

    The block runs in a savepoint; if it fails, its rows are rolled back and the files it stored
    that no row or claim references are removed while the transaction still holds the lock."""
    if not db.conn.in_transaction:
        raise RuntimeError("new_files must run inside a write transaction")
    files = NewFiles(ws.root)
    try:
        with db.atomic():
            yield files
    except BaseException:
        if files.written and db.conn.in_transaction:
            try:
                remove_unreferenced(ws, db, files.written.items())
            except (sqlite3.Error, OSError) as exc:
                logger.warning("could not remove %d files of a failed write (%s); `realcal gc` removes them",
                               len(files.written), exc)
        raise


# ----------------------------------------------------------------------------- fsck and gc

@dataclass
class Report:
    """What ``fsck`` found (and, from ``gc``, what was or would be done about it)."""
    workspace: str
    images: int = 0
    files: int = 0
    missing_images: list[dict[str, Any]] = field(default_factory=list)
    missing_thumbnails: list[dict[str, Any]] = field(default_factory=list)
    stray_images: list[str] = field(default_factory=list)
    stray_thumbnails: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    foreign_files: list[str] = field(default_factory=list)
    in_flight: int = 0
    live_writers: int = 0
    stale_claims: int = 0
    stale_writers: list[str] = field(default_factory=list)
    stale_locks: list[str] = field(default_factory=list)
    orphaned_rows: list[dict[str, Any]] = field(default_factory=list)
    integrity_check: list[str] = field(default_factory=lambda: ["ok"])
    database_error: str | None = None
    locked: bool = True
    removed: dict[str, int] = field(default_factory=dict)
    thumbnails_rebuilt: int = 0

    @property
    def strays(self) -> list[str]:
        return self.stray_images + self.stray_thumbnails + self.temp_files

    def problems(self) -> int:
        """How many problems: every missing or stray file, stale claim and orphaned row counts."""
        return (len(self.missing_images) + len(self.missing_thumbnails) + len(self.strays)
                + len(self.foreign_files) + self.stale_claims
                + sum(o["rows"] for o in self.orphaned_rows)
                + (0 if self.integrity_check == ["ok"] else len(self.integrity_check))
                + (1 if self.database_error else 0))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "problems": self.problems()}


def _stores(ws: Workspace) -> Iterator[tuple[str, Path, str]]:
    """(folder, file, path relative to the workspace) for every file under images/ and thumbs/."""
    for folder in ("images", "thumbs"):
        top = ws.root / folder
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                yield folder, path, path.relative_to(ws.root).as_posix()


def _scan(ws: Workspace, db: sqlite_utils.Database, report: Report) -> dict[str, str]:
    """Fill ``report`` from the database and the folders; returns the live claims (sha -> ext)."""
    claims = store_integrity.claims(db)
    owners = sorted({c["owner"] for c in claims})
    alive = {o for o in owners if _OWNER.match(o) and _lock_is_held(lock_path(ws, o))}
    report.live_writers = len(alive)
    report.stale_writers = [o for o in owners if o not in alive]
    report.stale_claims = sum(1 for c in claims if c["owner"] not in alive)
    live = {c["sha256"]: c["ext"] for c in claims if c["owner"] in alive}
    known = {f"{o}.lock" for o in alive}
    lock_dir = ws.root / LOCK_DIR
    if lock_dir.is_dir():
        report.stale_locks = sorted(
            f"{LOCK_DIR}/{p.name}" for p in lock_dir.iterdir()
            if p.suffix == ".lock" and p.name not in known and not _lock_is_held(p))

    rows = store_integrity.image_addresses(db)
    report.images = len(rows)
    by_sha = {r["sha256"]: r for r in rows}
    for folder, path, rel in _stores(ws):
        report.files += 1
        name = path.name
        temp = _TEMP.match(name)
        if temp:
            if temp.group("sha") not in live:
                report.temp_files.append(rel)
            else:
                report.in_flight += 1
            continue
        m = _ADDRESS.match(name)
        if not m:
            report.foreign_files.append(rel)
            continue
        sha, ext = m.group("sha"), m.group("ext")
        expected = media.thumb_relpath(sha) if folder == "thumbs" else media.image_relpath(sha, ext)
        row = by_sha.get(sha)
        if rel == expected and row is not None and (folder == "thumbs" or row["ext"] == ext):
            continue
        if rel == expected and sha in live and (folder == "thumbs" or live[sha] == ext):
            report.in_flight += 1
            continue
        (report.stray_thumbnails if folder == "thumbs" else report.stray_images).append(rel)

    for r in rows:
        image = media.image_path(ws.root, r["sha256"], r["ext"])
        entry = {"image_id": r["id"], "batch_id": r["batch_id"], "file_name": r["file_name"]}
        if not image.is_file():
            report.missing_images.append({**entry, "path": media.image_relpath(r["sha256"], r["ext"])})
        elif not media.thumb_path(ws.root, r["sha256"]).is_file():
            report.missing_thumbnails.append({**entry, "path": media.thumb_relpath(r["sha256"]),
                                              "sha256": r["sha256"], "ext": r["ext"]})

    orphans: dict[tuple[str, str], int] = {}
    for v in store_integrity.foreign_key_violations(db):
        orphans[(v["table"], v["parent"])] = orphans.get((v["table"], v["parent"]), 0) + 1
    report.orphaned_rows = [{"table": t, "missing_parent": p, "rows": n} for (t, p), n in sorted(orphans.items())]
    report.integrity_check = store_integrity.integrity_check(db)
    return live


@contextlib.contextmanager
def _under_write_lock(db: sqlite_utils.Database, report: Report, required: bool) -> Iterator[None]:
    """The write lock, for one consistent view; a read-only database is checked without it (fsck)."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(write_transaction(db))
        except sqlite3.OperationalError as exc:
            if required or "readonly" not in str(exc).replace(" ", "").replace("-", ""):
                raise
            report.locked = False
        yield


def _open(ws: Workspace, report: Report) -> sqlite_utils.Database | None:
    try:
        return ws.connect()
    except sqlite3.DatabaseError as exc:
        report.database_error = f"{ws.db_path} cannot be read: {exc}"
        return None


def fsck(ws: Workspace) -> Report:
    """Check the workspace without changing it: missing and stray files (thumbnails included),
    stale claims, orphaned rows and SQLite's integrity check. Runs under the write lock, so writers
    wait for it and what it reports is one consistent state."""
    report = Report(str(ws.root))
    db = _open(ws, report)
    if db is None:
        return report
    with db:
        try:
            with _under_write_lock(db, report, required=False):
                _scan(ws, db, report)
        except sqlite3.DatabaseError as exc:
            report.database_error = f"{ws.db_path}: {exc}"
    return report


def gc(ws: Workspace, *, dry_run: bool = False) -> Report:
    """Remove what no row or live claim references (stray images, thumbnails and temporary files),
    drop stale claims and their lock files, and rebuild missing thumbnails, all under the write lock.
    Rows are never deleted: missing images and orphaned rows are only reported. ``dry_run`` says what
    would be done and changes nothing."""
    report = Report(str(ws.root))
    db = _open(ws, report)
    if db is None:
        return report
    with db:
        with _under_write_lock(db, report, required=True):
            _scan(ws, db, report)
            removed = {"stray_images": len(report.stray_images), "stray_thumbnails": len(report.stray_thumbnails),
                       "temp_files": len(report.temp_files), "stale_claims": report.stale_claims,
                       "stale_locks": len(report.stale_locks)}
            if not dry_run:
                for rel in report.strays:
                    with contextlib.suppress(FileNotFoundError):
                        (ws.root / rel).unlink()
                store_integrity.drop_claims(db, report.stale_writers)
                for rel in report.stale_locks:
                    _remove_stale_lock(ws.root / rel)
                for m in report.missing_thumbnails:
                    if _rebuild_thumbnail(ws, m["sha256"], m["ext"]):
                        report.thumbnails_rebuilt += 1
            report.removed = removed
    return report


def _remove_stale_lock(path: Path) -> None:
    """Unlink a lock file nobody holds, holding it meanwhile (see ``_hold_lock``)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    except OSError:
        pass   # taken meanwhile: it is live
    finally:
        os.close(fd)


def _rebuild_thumbnail(ws: Workspace, sha256: str, ext: str) -> bool:
    try:
        data = media.image_path(ws.root, sha256, ext).read_bytes()
        media.write_thumbnail(ws.root, sha256, data)
        return True
    except (OSError, ValueError) as exc:
        logger.warning("cannot rebuild the thumbnail of %s: %s", sha256, exc)
        return False
