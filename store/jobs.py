"""The job queue: enqueue, atomic claim, heartbeat, progress, cancel, finish, recovery."""
from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from store.db import write_transaction

NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
ACTIVE = ("queued", "running")


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
        db.execute(f"INSERT INTO jobs (kind, params, status, worker, worker_pid, attempts, started_at, heartbeat_at) "
                   f"VALUES (?, ?, 'running', ?, ?, 1, {NOW}, {NOW})",
                   [kind, json.dumps(params, sort_keys=True, default=str), worker, pid])
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
            f"started_at = COALESCE(started_at, {NOW}), heartbeat_at = {NOW} "
            f"WHERE id = ? AND status = 'queued'", [worker, pid, job_id])
        if cur.rowcount != 1:
            return None
    return get(db, job_id)


def get(db: sqlite_utils.Database, job_id: int) -> dict | None:
    rows = list(db.query("SELECT * FROM jobs WHERE id = ?", [job_id]))
    return _decode(rows[0]) if rows else None


def heartbeat(db: sqlite_utils.Database, job_id: int) -> None:
    db.execute(f"UPDATE jobs SET heartbeat_at = {NOW} WHERE id = ? AND status = 'running'", [job_id])
    db.conn.commit()


def update_progress(db: sqlite_utils.Database, job_id: int, progress: float,
                    total: float | None, message: str | None, state: dict | None = None) -> bool:
    """Record progress; returns True when a cancel has been requested."""
    sets = f"progress = ?, total = ?, message = COALESCE(?, message), heartbeat_at = {NOW}"
    params: list[Any] = [progress, total, message]
    if state is not None:
        sets += ", state = ?"
        params.append(json.dumps(state, sort_keys=True, default=str))
    db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", params + [job_id])
    db.conn.commit()
    row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", [job_id]).fetchone()
    return bool(row and row[0])


def finish(db: sqlite_utils.Database, job_id: int, status: str, *, result: dict | None = None,
           error: str | None = None, message: str | None = None) -> None:
    db.execute(
        f"UPDATE jobs SET status = ?, result = ?, error = ?, message = COALESCE(?, message), "
        f"finished_at = {NOW}, heartbeat_at = {NOW} WHERE id = ?",
        [status, json.dumps(result, default=str) if result is not None else None, error, message,
         job_id])
    db.conn.commit()


def request_cancel(db: sqlite_utils.Database, job_id: int) -> str | None:
    """Cancel a queued job at once, or ask a running one to stop. Returns its status after."""
    with write_transaction(db):
        db.execute(f"UPDATE jobs SET status = 'cancelled', finished_at = {NOW}, "
                   f"message = 'cancelled before it started' WHERE id = ? AND status = 'queued'",
                   [job_id])
        db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", [job_id])
        row = db.execute("SELECT status FROM jobs WHERE id = ?", [job_id]).fetchone()
    return row[0] if row else None


def requeue(db: sqlite_utils.Database, job_id: int, message: str) -> None:
    db.execute("UPDATE jobs SET status = 'queued', worker = NULL, worker_pid = NULL, message = ? "
               "WHERE id = ? AND status = 'running'", [message, job_id])
    db.conn.commit()


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
