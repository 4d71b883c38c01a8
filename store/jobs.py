"""The job queue: enqueue, atomic claim, heartbeat, progress, cancel, finish, recovery.

A running job holds a claim token (``jobs.claim``), written when a process claims it and cleared when it
is requeued. Every write on behalf of a running job (heartbeat, progress, checkpoint, finish) names the
token and changes nothing when it is no longer the job's: a process that lost its claim (paused past the
stale limit, then requeued and claimed by another) cannot write over the new owner.
"""
from __future__ import annotations

import json
import secrets
from typing import Any

import sqlite_utils

from store.db import write_transaction

NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
ACTIVE = ("queued", "running")
HELD = "status = 'running' AND claim IS ?"     # the job runs and this token still holds it


def new_claim() -> str:
    return secrets.token_hex(16)


def _decode(row) -> dict[str, Any]:
    row = dict(row)
    for c in ("params", "result", "state"):
        if row.get(c) is not None:
            row[c] = json.loads(row[c])
    return row


def enqueue(db: sqlite_utils.Database, kind: str, params: dict[str, Any]) -> int:
    db.execute("INSERT INTO jobs (kind, params) VALUES (?, ?)",
               [kind, json.dumps(params, sort_keys=True, default=str)])
    db.conn.commit()
    return db.execute("SELECT last_insert_rowid()").fetchone()[0]


def start(db: sqlite_utils.Database, kind: str, params: dict[str, Any], worker: str, pid: int) -> dict:
    """Insert a job already running in this process (one statement: a worker polling the queue can
    never take it, and a crash cannot leave it queued for someone else to run)."""
    with write_transaction(db):
        db.execute(f"INSERT INTO jobs (kind, params, status, worker, worker_pid, attempts, claim, started_at, "
                   f"heartbeat_at) VALUES (?, ?, 'running', ?, ?, 1, ?, {NOW}, {NOW})",
                   [kind, json.dumps(params, sort_keys=True, default=str), worker, pid, new_claim()])
        job_id = db.execute("SELECT last_insert_rowid()").fetchone()[0]
    job = get(db, job_id)
    if job is None:  # jobs are never deleted
        raise RuntimeError(f"job {job_id} is missing right after it was inserted")
    return job


def claim(db: sqlite_utils.Database, worker: str, pid: int, job_id: int | None = None) -> dict | None:
    """Atomically move the oldest queued job (or ``job_id``) to running; None when none is queued."""
    with write_transaction(db):
        if job_id is None:
            row = db.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1").fetchone()
            if row is None:
                return None
            job_id = row[0]
        cur = db.execute(
            f"UPDATE jobs SET status = 'running', worker = ?, worker_pid = ?, attempts = attempts + 1, "
            f"claim = ?, started_at = COALESCE(started_at, {NOW}), heartbeat_at = {NOW} "
            f"WHERE id = ? AND status = 'queued'", [worker, pid, new_claim(), job_id])
        if cur.rowcount != 1:
            return None
    return get(db, job_id)


def get(db: sqlite_utils.Database, job_id: int) -> dict | None:
    rows = list(db.query("SELECT * FROM jobs WHERE id = ?", [job_id]))
    return _decode(rows[0]) if rows else None


def heartbeat(db: sqlite_utils.Database, job_id: int, claim: str | None = None) -> bool:
    """Mark the job alive; False (and nothing written) when ``claim`` no longer holds it."""
    cur = db.execute(f"UPDATE jobs SET heartbeat_at = {NOW} WHERE id = ? AND {HELD}", [job_id, claim])
    db.conn.commit()
    return cur.rowcount == 1


def _held_update(db: sqlite_utils.Database, job_id: int, claim: str | None, progress: float,
                 total: float | None, message: str | None, state: dict | None) -> str:
    sets = f"progress = ?, total = ?, message = COALESCE(?, message), heartbeat_at = {NOW}"
    params: list[Any] = [progress, total, message]
    if state is not None:
        sets += ", state = ?"
        params.append(json.dumps(state, sort_keys=True, default=str))
    cur = db.execute(f"UPDATE jobs SET {sets} WHERE id = ? AND {HELD}", params + [job_id, claim])
    if cur.rowcount != 1:
        return "lost"
    row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", [job_id]).fetchone()
    return "cancel" if row and row[0] else "ok"


def update_progress(db: sqlite_utils.Database, job_id: int, progress: float,
                    total: float | None, message: str | None, state: dict | None = None,
                    claim: str | None = None) -> str:
    """Record progress (and the resumable ``state``). Returns "ok", "cancel" (a cancel was requested)
    or "lost" (``claim`` no longer holds the job; nothing written)."""
    outcome = _held_update(db, job_id, claim, progress, total, message, state)
    db.conn.commit()
    return outcome


def checkpoint(db: sqlite_utils.Database, job_id: int, claim: str | None, progress: float,
               total: float | None, message: str | None, state: dict | None) -> str:
    """:func:`update_progress` inside the caller's open write transaction (no commit), so that a job's
    results and the state that says they are done commit together or not at all."""
    if not db.conn.in_transaction:
        raise RuntimeError("checkpoint() belongs inside write_transaction()")
    return _held_update(db, job_id, claim, progress, total, message, state)


def holds(db: sqlite_utils.Database, job_id: int, claim: str | None) -> bool:
    """Whether ``claim`` still holds the running job (inside a write transaction: until it commits)."""
    return db.execute(f"SELECT 1 FROM jobs WHERE id = ? AND {HELD}", [job_id, claim]).fetchone() is not None


def finish(db: sqlite_utils.Database, job_id: int, status: str, *, result: dict | None = None,
           error: str | None = None, message: str | None = None, claim: str | None = None) -> bool:
    """End a running job held by ``claim``; False (nothing written) when the claim was lost."""
    cur = db.execute(
        f"UPDATE jobs SET status = ?, result = ?, error = ?, message = COALESCE(?, message), "
        # a finished job reads 100% whatever its last progress step was (a stage may end early)
        f"progress = CASE WHEN ? = 'done' AND total IS NOT NULL THEN total ELSE progress END, "
        f"finished_at = {NOW}, heartbeat_at = {NOW} WHERE id = ? AND {HELD}",
        [status, json.dumps(result, default=str) if result is not None else None, error, message, status,
         job_id, claim])
    db.conn.commit()
    return cur.rowcount == 1


def request_cancel(db: sqlite_utils.Database, job_id: int) -> str | None:
    """Cancel a queued job at once, or ask a running one to stop. Returns its status after."""
    with write_transaction(db):
        db.execute(f"UPDATE jobs SET status = 'cancelled', finished_at = {NOW}, "
                   f"message = 'cancelled before it started' WHERE id = ? AND status = 'queued'",
                   [job_id])
        db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", [job_id])
        row = db.execute("SELECT status FROM jobs WHERE id = ?", [job_id]).fetchone()
    return row[0] if row else None


def requeue(db: sqlite_utils.Database, job_id: int, message: str, claim: str | None = None) -> bool:
    """Put a running job held by ``claim`` back in the queue, revoking the claim; False if it was not held."""
    cur = db.execute(f"UPDATE jobs SET status = 'queued', worker = NULL, worker_pid = NULL, claim = NULL, "
                     f"message = ? WHERE id = ? AND {HELD}", [message, job_id, claim])
    db.conn.commit()
    return cur.rowcount == 1


def running(db: sqlite_utils.Database) -> list[dict]:
    return [_decode(r) for r in db.query("SELECT * FROM jobs WHERE status = 'running' ORDER BY id")]


def list_jobs(db: sqlite_utils.Database, limit: int = 50, statuses=None) -> list[dict]:
    sql = "SELECT * FROM jobs"
    params: list[Any] = []
    if statuses:
        sql += f" WHERE status IN ({', '.join('?' for _ in statuses)})"
        params += list(statuses)
    sql += " ORDER BY id DESC LIMIT ?"
    return [_decode(r) for r in db.query(sql, params + [limit])]


def counts(db: sqlite_utils.Database) -> dict[str, int]:
    out = {s: 0 for s in ("queued", "running", "done", "failed", "cancelled")}
    for row in db.query("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status"):
        out[row["status"]] = row["n"]
    return out


def seconds_since_heartbeat(db: sqlite_utils.Database, job_id: int) -> float | None:
    row = db.execute("SELECT (julianday('now') - julianday(heartbeat_at)) * 86400 FROM jobs "
                     "WHERE id = ?", [job_id]).fetchone()
    return None if row is None or row[0] is None else float(row[0])
