"""Login sessions (server-side, revocable) and login attempts (for throttling)."""
from __future__ import annotations

from typing import Any

import sqlite_utils


def create(db: sqlite_utils.Database, *, token_hash: str, user_id: int, now: float, expires_at: float,
           address: str | None, user_agent: str | None) -> int:
    db.execute("INSERT INTO auth_sessions (token_hash, user_id, created_at, last_seen, expires_at, address, "
               "user_agent) VALUES (?, ?, ?, ?, ?, ?, ?)",
               [token_hash, user_id, now, now, expires_at, address, (user_agent or "")[:300]])
    return db.execute("SELECT last_insert_rowid()").fetchone()[0]


def by_token_hash(db: sqlite_utils.Database, token_hash: str) -> dict[str, Any] | None:
    """The session with its user's current name, role and disabled flag."""
    rows = list(db.query(
        "SELECT s.*, u.name, u.role, u.disabled FROM auth_sessions s JOIN users u ON u.id = s.user_id "
        "WHERE s.token_hash = ?", [token_hash]))
    return dict(rows[0]) if rows else None


def get(db: sqlite_utils.Database, session_id: int) -> dict[str, Any] | None:
    rows = list(db.query(
        "SELECT s.*, u.name, u.role, u.disabled FROM auth_sessions s JOIN users u ON u.id = s.user_id "
        "WHERE s.id = ?", [session_id]))
    return dict(rows[0]) if rows else None


def touch(db: sqlite_utils.Database, session_id: int, now: float) -> None:
    db.execute("UPDATE auth_sessions SET last_seen = ? WHERE id = ?", [now, session_id])


def revoke(db: sqlite_utils.Database, session_id: int, now: float, why: str) -> int:
    return db.execute("UPDATE auth_sessions SET revoked_at = ?, revoked_why = ? WHERE id = ? AND revoked_at IS NULL",
                      [now, why, session_id]).rowcount


def revoke_user(db: sqlite_utils.Database, user_id: int, now: float, why: str) -> int:
    """Revoke every live session of a user; returns how many."""
    return db.execute("UPDATE auth_sessions SET revoked_at = ?, revoked_why = ? WHERE user_id = ? "
                      "AND revoked_at IS NULL", [now, why, user_id]).rowcount


def live_count(db: sqlite_utils.Database, user_id: int, now: float) -> int:
    return db.execute("SELECT COUNT(*) FROM auth_sessions WHERE user_id = ? AND revoked_at IS NULL "
                      "AND expires_at > ?", [user_id, now]).fetchone()[0]


def prune(db: sqlite_utils.Database, before: float) -> None:
    """Forget sessions that ended and attempts older than ``before``."""
    db.execute("DELETE FROM auth_sessions WHERE expires_at < ? OR (revoked_at IS NOT NULL AND revoked_at < ?)",
               [before, before])
    db.execute("DELETE FROM auth_attempts WHERE ts < ?", [before])


def record_attempt(db: sqlite_utils.Database, *, username: str, address: str, ok: bool, now: float) -> int:
    db.execute("INSERT INTO auth_attempts (ts, username, address, ok) VALUES (?, ?, ?, ?)",
               [now, username, address, int(ok)])
    return db.execute("SELECT last_insert_rowid()").fetchone()[0]


def mark_attempt_ok(db: sqlite_utils.Database, attempt_id: int) -> None:
    db.execute("UPDATE auth_attempts SET ok = 1 WHERE id = ?", [attempt_id])


def recent_failures(db: sqlite_utils.Database, *, since: float, username: str | None = None,
                    address: str | None = None) -> list[float]:
    """Times of failed attempts after ``since`` for a user name (any case) or an address, counting
    only those after that key's last successful login; oldest first."""
    if (username is None) == (address is None):
        raise ValueError("give a username or an address")
    column, value = ("username", username) if username is not None else ("address", address)
    return [r[0] for r in db.execute(
        f"SELECT ts FROM auth_attempts WHERE {column} = ? AND ok = 0 AND ts > ? AND ts > COALESCE("
        f"(SELECT MAX(ts) FROM auth_attempts WHERE {column} = ? AND ok = 1), 0) ORDER BY ts",
        [value, since, value])]
