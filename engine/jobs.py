"""Background jobs on SQLite: kinds, the runner, heartbeats, cancel and recovery.

A job is a row in ``jobs``. Pages and CLI commands enqueue it; a worker process
(``realcal worker``) or the CLI in the foreground claims it atomically and runs the function
registered for its kind with a :class:`JobContext`, which records progress and raises
:class:`JobCancelled` once a cancel was requested. While a job runs, a thread with its own
connection heartbeats every few seconds, so a process busy importing torch on a 2-core machine
still shows as alive. A job whose process died is found by its pid (same host) or by a stale
heartbeat, and is marked failed with the reason, or requeued when its kind is resumable.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine import registry
from engine.errors import RealcalError
from engine.workspace import Workspace
from store import events as store_events
from store import jobs as store_jobs

logger = logging.getLogger(__name__)
HEARTBEAT_S = 5.0
STALE_S = 300.0          # no heartbeat for this long: dead, even if the pid looks alive
MAX_ATTEMPTS = 3
PROGRESS_EVERY_S = 0.5


class JobCancelled(Exception):
    pass


@dataclass(frozen=True)
class JobKind:
    name: str
    fn: Callable[[JobContext, dict[str, Any]], dict[str, Any] | None]
    resumable: bool
    title: str


def job_kind(name: str, *, title: str, resumable: bool = False):
    """Register a job kind in the registry (kind ``job``): ``fn(ctx, params) -> result``."""
    return registry.register("job", name, title=title, resumable=resumable)


def get_kind(name: str) -> JobKind:
    e = registry.entry("job", name)
    return JobKind(name, e.obj, bool(e.meta.get("resumable", False)), str(e.meta.get("title", name)))


def kinds() -> dict[str, JobKind]:
    """Every registered job kind (built-in and plugins)."""
    return {name: get_kind(name) for name in registry.names("job")}


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobContext:
    def __init__(self, ws: Workspace, job: dict[str, Any],
                 on_progress: Callable[[float, float | None, str | None], None] | None = None):
        self.ws = ws
        self.job = job
        self.state: dict[str, Any] = dict(job.get("state") or {})
        self._db = ws.connect()
        self._on_progress = on_progress
        self._last = 0.0

    @property
    def job_id(self) -> int:
        return self.job["id"]

    def progress(self, done: float, total: float | None = None, message: str | None = None,
                 *, state: dict[str, Any] | None = None, force: bool = False) -> None:
        """Record progress (throttled) and raise JobCancelled if a cancel was requested."""
        if state is not None:
            self.state = state
        if self._on_progress:
            self._on_progress(done, total, message)
        now = time.monotonic()
        if not (force or state is not None or now - self._last >= PROGRESS_EVERY_S
                or (total is not None and done >= total)):
            return
        self._last = now
        if store_jobs.update_progress(self._db, self.job_id, done, total, message, state):
            raise JobCancelled()

    def check_cancel(self) -> None:
        row = store_jobs.get(self._db, self.job_id)
        if row and row["cancel_requested"]:
            raise JobCancelled()

    def close(self) -> None:
        self._db.close()


def _heartbeat_loop(ws: Workspace, job_id: int, stop: threading.Event) -> None:
    with ws.connect() as db:
        while not stop.wait(HEARTBEAT_S):
            try:
                store_jobs.heartbeat(db, job_id)
            except Exception:  # a locked database now and then: try again next beat
                pass


def run_job(ws: Workspace, job: dict[str, Any],
            on_progress: Callable[[float, float | None, str | None], None] | None = None) -> dict:
    """Run a claimed job to its end; returns the final job row. Never raises for job errors."""
    kind = get_kind(job["kind"])
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat_loop, args=(ws, job["id"], stop), daemon=True)
    beat.start()
    ctx = JobContext(ws, job, on_progress)
    with ws.connect() as db:
        try:
            try:
                result = kind.fn(ctx, job["params"]) or {}
                store_jobs.finish(db, job["id"], "done", result=result, message="done")
                store_events.log(db, "job.done", {"job_id": job["id"], "kind": job["kind"]})
                db.conn.commit()
            except JobCancelled:
                store_jobs.finish(db, job["id"], "cancelled", message="cancelled")
            except RealcalError as exc:
                logger.info("job %s (%s) failed: %s", job["id"], job["kind"], exc)
                store_jobs.finish(db, job["id"], "failed", error=str(exc), message="failed")
            except (KeyboardInterrupt, SystemExit) as exc:
                if kind.resumable and job.get("attempts", 1) < MAX_ATTEMPTS:
                    store_jobs.requeue(db, job["id"], "interrupted; will resume")
                else:
                    store_jobs.finish(db, job["id"], "failed", error=f"interrupted ({type(exc).__name__})")
                raise
            except Exception as exc:  # a bug or an environment problem: keep the traceback for the UI
                logger.error("job %s (%s) failed: %s: %s (traceback stored with the job)", job["id"], job["kind"],
                             type(exc).__name__, exc)
                store_jobs.finish(db, job["id"], "failed",
                                  error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}",
                                  message="failed")
            final = store_jobs.get(db, job["id"])
            if final is None:  # jobs are never deleted
                raise RuntimeError(f"job {job['id']} is missing from the queue")
            return final
        finally:
            stop.set()
            ctx.close()


def submit(ws: Workspace, kind: str, params: dict[str, Any]) -> int:
    get_kind(kind)
    with ws.connect() as db:
        return store_jobs.enqueue(db, kind, params)


def run_foreground(ws: Workspace, kind: str, params: dict[str, Any],
                   on_progress: Callable[[float, float | None, str | None], None] | None = None) -> dict:
    """Run a job in this process (the CLI's default), recorded like any other."""
    get_kind(kind)
    with ws.connect() as db:
        job = store_jobs.start(db, kind, params, worker_id(), os.getpid())
    return run_job(ws, job, on_progress)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is dead too
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def recover(ws: Workspace) -> list[tuple[int, str]]:
    """Fail (or requeue, when resumable) running jobs whose process is gone."""
    host = socket.gethostname()
    actions = []
    with ws.connect() as db:
        for job in store_jobs.running(db):
            job_host, _, _ = (job.get("worker") or "").partition(":")
            since = store_jobs.seconds_since_heartbeat(db, job["id"])
            dead_pid = job_host == host and not pid_alive(job.get("worker_pid"))
            stale = since is not None and since > STALE_S
            if not (dead_pid or stale):
                continue
            why = (f"its process (pid {job.get('worker_pid')}) is no longer running" if dead_pid
                   else f"no heartbeat for {since:.0f} s")
            try:
                resumable = get_kind(job["kind"]).resumable
            except RealcalError:
                resumable = False
            if resumable and job["attempts"] < MAX_ATTEMPTS:
                store_jobs.requeue(db, job["id"], f"resuming: {why}")
                actions.append((job["id"], "requeued"))
            else:
                store_jobs.finish(db, job["id"], "failed", error=f"the worker died: {why}",
                                  message="failed: worker died")
                actions.append((job["id"], "failed"))
            store_events.log(db, "job.recovered", {"job_id": job["id"], "action": actions[-1][1],
                                                   "why": why})
            db.conn.commit()
    return actions
