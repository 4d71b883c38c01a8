"""A workspace: one folder holding one SQLite database and the content-addressed images."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from engine.errors import WorkspaceError
from store import db as store_db
from store import events

DB_NAME = "realcal.db"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @classmethod
    def init(cls, root: str | os.PathLike) -> Workspace:
        root = Path(root).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"{root} exists and is not a folder")
        fresh = not (root / DB_NAME).exists()
        for sub in ("", "images", "thumbs", "exports"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        ws = cls(root)
        try:
            applied = store_db.migrate(ws.db_path)
        except store_db.DatabaseUnavailable as exc:
            raise WorkspaceError(str(exc)) from None
        with ws.connect() as db:
            if fresh:
                events.log(db, "workspace.init", {"root": str(root)})
            elif applied:
                events.log(db, "workspace.migrate", {"applied": applied})
        return ws

    @classmethod
    def open(cls, root: str | os.PathLike | None) -> Workspace:
        if root is None or str(root) == "":
            raise WorkspaceError("no workspace given: pass -w/--workspace DIR or set REALCAL_WORKSPACE")
        root = Path(root).expanduser().resolve()
        if not (root / DB_NAME).exists():
            raise WorkspaceError(
                f"{root} is not a realcal workspace (no {DB_NAME}); create it with "
                f"`realcal -w {root} init`")
        return cls(root)

    def connect(self) -> sqlite_utils.Database:
        """A new connection (one per thread/process), migrated to the current schema.

        Use it as a context manager, which closes it: ``with ws.connect() as db: ...``. WorkspaceError
        when the database cannot be used (not a database, damaged, a folder, not writable)."""
        try:
            return store_db.open_db(self.db_path)
        except store_db.DatabaseUnavailable as exc:
            raise WorkspaceError(str(exc)) from None

    def path(self, relpath: str) -> Path:
        return self.root / relpath
