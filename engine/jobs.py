"""Background jobs on SQLite: kinds, the runner, heartbeats, cancel and recovery.

A job is a row in ``jobs``. Pages and CLI commands enqueue it; a worker process
(``realcal worker``) or the CLI in the foreground claims it atomically and runs the function
registered for its kind with a :class:`JobContext`, which records progress and raises
:class:`JobCancelled` once a cancel was requested. While a job runs, a thread with its own
connection heartbeats every few seconds, so a process busy importing torch on a 2-core machine
still shows as alive. A job whose process died is found by its pid (same host) or by a stale
heartbeat, and is marked failed with the reason, or requeued when its kind is resumable.

A job is run by exactly one process. Claiming it writes a fresh claim token; requeueing it revokes the
token. Every heartbeat, progress step, checkpoint and the final status name the token, so a process that
lost its claim (paused past :data:`STALE_S`, requeued, and taken by another) writes nothing more: it stops
at its next step with :class:`ClaimLost`. A resumable job commits each piece of its work together with
its checkpoint (:meth:`JobContext.checkpoint`), inside one transaction that the claim guards.

Interrupted (Ctrl-C, SIGTERM, SIGHUP), a job run in the foreground is cancelled; one the worker runs
is requeued when its kind is resumable (``on_interrupt``).
"""
from __future__ import annotations

import logging
import os
import signal
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


class ClaimLost(RealcalError):
    """This process no longer holds the job: it was requeued (its heartbeat went stale) and another
    process may run it. Nothing more is written on its behalf."""

    def __init__(self, job_id: int):
        super().__init__(f"job {job_id} is no longer held by this process: its heartbeat went stale (the "
                         f"process was paused or starved), so the job was recovered for another process; "
                         f"this one stopped without writing more (see `realcal jobs`)")
        self.job_id = job_id


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
                 on_progress: Callable[[float, float | None, str | None], None] | None = None,
                 lost: threading.Event | None = None):
        self.ws = ws
        self.job = job
        self.claim: str | None = job.get("claim")
        self.state: dict[str, Any] = dict(job.get("state") or {})
        self._db = ws.connect()
        self._on_progress = on_progress
        self._last = 0.0
        self._lost = lost or threading.Event()      # set by the heartbeat when the claim is gone
        self._cancel = False                        # seen by a checkpoint; raised at the next step

    @property
    def job_id(self) -> int:
        return self.job["id"]

    def _outcome(self, outcome: str) -> None:
        if outcome == "lost":
            self._lost.set()
            raise ClaimLost(self.job_id)
        if outcome == "cancel":
            raise JobCancelled()

    def progress(self, done: float, total: float | None = None, message: str | None = None,
                 *, state: dict[str, Any] | None = None, force: bool = False) -> None:
        """Record progress (throttled); raise JobCancelled if a cancel was requested, ClaimLost if this
        process no longer holds the job."""
        if self._lost.is_set():
            raise ClaimLost(self.job_id)
        if self._cancel:
            raise JobCancelled()
        if state is not None:
            self.state = state
        if self._on_progress:
            self._on_progress(done, total, message)
        now = time.monotonic()
        if not (force or state is not None or now - self._last >= PROGRESS_EVERY_S
                or (total is not None and done >= total)):
            return
        self._last = now
        self._outcome(store_jobs.update_progress(self._db, self.job_id, done, total, message, state,
                                                 claim=self.claim))

    def hold(self, db) -> None:
        """Inside the caller's write transaction on ``db``: raise ClaimLost unless this process still
        holds the job. Until that transaction ends nobody can take the job, so what the caller writes
        in it is written by the job's one owner."""
        if self._lost.is_set() or not store_jobs.holds(db, self.job_id, self.claim):
            self._lost.set()
            raise ClaimLost(self.job_id)

    def checkpoint(self, db, done: float, total: float | None, message: str | None,
                   state: dict[str, Any]) -> None:
        """Inside the caller's write transaction on ``db``: record progress and the resumable ``state``
        with the work written in the same transaction, so a resumed job starts exactly after the last
        committed piece. Raises ClaimLost (the caller's transaction rolls back) when the job was taken
        over; a requested cancel is raised at the next :meth:`progress`, after this piece commits (call it
        right after the transaction: it also feeds the progress callback, which never runs inside one)."""
        if self._lost.is_set():
            raise ClaimLost(self.job_id)
        outcome = store_jobs.checkpoint(db, self.job_id, self.claim, done, total, message, state)
        if outcome == "lost":
            self._lost.set()
            raise ClaimLost(self.job_id)
        self.state = state
        self._cancel = outcome == "cancel"

    def check_cancel(self) -> None:
        if self._lost.is_set():
            raise ClaimLost(self.job_id)
        row = store_jobs.get(self._db, self.job_id)
        if row and (row["status"] != "running" or row.get("claim") != self.claim):
            self._lost.set()
            raise ClaimLost(self.job_id)
        if row and row["cancel_requested"]:
            raise JobCancelled()

    def close(self) -> None:
        self._db.close()


def _heartbeat_loop(ws: Workspace, job_id: int, claim: str | None, stop: threading.Event,
                    lost: threading.Event) -> None:
    with ws.connect() as db:
        while not stop.wait(HEARTBEAT_S):
            try:
                held = store_jobs.heartbeat(db, job_id, claim)
                row = None if held else store_jobs.get(db, job_id)
            except Exception:  # a locked database now and then: try again next beat
                continue
            if held or stop.is_set():
                continue
            if row and row["status"] != "running" and row.get("claim") == claim:
                return      # ended (by this process, or failed by a recovery: its next step finds out)
            if not stop.is_set():
                logger.warning("job %s: this process no longer holds it (it was queued again after its "
                               "heartbeat went stale); stopping at the next step", job_id)
                lost.set()
                return


def run_job(ws: Workspace, job: dict[str, Any],
            on_progress: Callable[[float, float | None, str | None], None] | None = None,
            *, on_interrupt: str = "requeue") -> dict:
    """Run a claimed job to its end; returns the final job row. Never raises for job errors.

    Raises :class:`ClaimLost` when the job was taken over by another process (nothing more is written),
    and re-raises KeyboardInterrupt / SystemExit after recording the interruption: with ``on_interrupt``
    "requeue" (the worker) a resumable job goes back to the queue (others fail); with "cancel" (a job run
    in the foreground) it is cancelled.
    """
    if on_interrupt not in ("requeue", "cancel"):
        raise ValueError(f"on_interrupt must be requeue or cancel, not {on_interrupt!r}")
    kind = get_kind(job["kind"])
    claim = job.get("claim")
    stop, lost = threading.Event(), threading.Event()
    beat = threading.Thread(target=_heartbeat_loop, args=(ws, job["id"], claim, stop, lost), daemon=True)
    beat.start()
    ctx = JobContext(ws, job, on_progress, lost)
    with ws.connect() as db:
        try:
            try:
                result = kind.fn(ctx, job["params"]) or {}
                if not store_jobs.finish(db, job["id"], "done", result=result, message="done", claim=claim):
                    raise ClaimLost(job["id"])
                store_events.log(db, "job.done", {"job_id": job["id"], "kind": job["kind"]})
                db.conn.commit()
            except ClaimLost:
                logger.warning("job %s (%s): taken over by another process; this one stopped without "
                               "writing more", job["id"], job["kind"])
                raise
            except JobCancelled:
                store_jobs.finish(db, job["id"], "cancelled", message="cancelled", claim=claim)
            except RealcalError as exc:
                logger.info("job %s (%s) failed: %s", job["id"], job["kind"], exc)
                store_jobs.finish(db, job["id"], "failed", error=str(exc), message="failed", claim=claim)
            except (KeyboardInterrupt, SystemExit) as exc:
                signum = getattr(exc, "signum", None)     # SIGTERM / SIGHUP in the CLI (engine.cli.base)
                how = signal.Signals(signum).name if signum else type(exc).__name__
                if on_interrupt == "cancel":
                    store_jobs.finish(db, job["id"], "cancelled", message=f"cancelled: interrupted ({how})",
                                      claim=claim)
                elif kind.resumable and job.get("attempts", 1) < MAX_ATTEMPTS:
                    store_jobs.requeue(db, job["id"], "interrupted; will resume", claim=claim)
                else:
                    store_jobs.finish(db, job["id"], "failed", error=f"interrupted ({how})", claim=claim)
                raise
            except Exception as exc:  # a bug or an environment problem: keep the traceback for the UI
                logger.error("job %s (%s) failed: %s: %s (traceback stored with the job)", job["id"], job["kind"],
                             type(exc).__name__, exc)
                store_jobs.finish(db, job["id"], "failed",
                                  error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}",
                                  message="failed", claim=claim)
            final = store_jobs.get(db, job["id"])
            if final is None:  # jobs are never deleted
                raise RuntimeError(f"job {job['id']} is missing from the queue")
            if final.get("claim") != claim:       # queued again, or taken and run by another process
                raise ClaimLost(job["id"])
            return final
        finally:
            stop.set()
            ctx.close()


def submit(ws: Workspace, kind: str, params: dict[str, Any]) -> int:
    get_kind(kind)
    with ws.connect() as db:
        return store_jobs.enqueue(db, kind, params)


def start_foreground(ws: Workspace, kind: str, params: dict[str, Any]) -> dict:
    """Insert a job already running (and claimed) by this process; run it with :func:`run_job`."""
    get_kind(kind)
    with ws.connect() as db:
        return store_jobs.start(db, kind, params, worker_id(), os.getpid())


def run_foreground(ws: Workspace, kind: str, params: dict[str, Any],
                   on_progress: Callable[[float, float | None, str | None], None] | None = None,
                   *, on_interrupt: str = "cancel") -> dict:
    """Run a job in this process (the CLI's default), recorded like any other. Interrupted, it is
    cancelled (``on_interrupt="requeue"`` leaves a resumable job for the worker instead)."""
    return run_job(ws, start_foreground(ws, kind, params), on_progress, on_interrupt=on_interrupt)


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


def _dead(db, job: dict, host: str) -> str | None:
    """Why a job recorded as running is not (its process is gone, or its heartbeat stale); None if it is."""
    job_host, _, _ = (job.get("worker") or "").partition(":")
    if job_host == host and not pid_alive(job.get("worker_pid")):
        return f"its process (pid {job.get('worker_pid')}) is no longer running"
    since = store_jobs.seconds_since_heartbeat(db, job["id"])
    if since is not None and since > STALE_S:
        return f"no heartbeat for {since:.0f} s"
    return None


def job_alive(db, job_id: int, claim: str | None = None) -> bool:
    """Whether the job is running in a live process (the rule :func:`recover` applies) and, when ``claim`` is
    given, is still held with that claim token (not requeued and taken by another process since)."""
    job = store_jobs.get(db, job_id)
    return (job is not None and job["status"] == "running" and (claim is None or job.get("claim") == claim)
            and _dead(db, job, socket.gethostname()) is None)


def recover(ws: Workspace) -> list[tuple[int, str]]:
    """Fail (or requeue, when resumable) running jobs whose process is gone."""
    host = socket.gethostname()
    actions = []
    with ws.connect() as db:
        for job in store_jobs.running(db):
            why = _dead(db, job, host)
            if why is None:
                continue
            try:
                resumable = get_kind(job["kind"]).resumable
            except RealcalError:
                resumable = False
            # both name the claim read above: a job that ended or changed hands since is left alone
            if resumable and job["attempts"] < MAX_ATTEMPTS:
                if not store_jobs.requeue(db, job["id"], f"resuming: {why}", claim=job.get("claim")):
                    continue
                actions.append((job["id"], "requeued"))
            else:
                if not store_jobs.finish(db, job["id"], "failed", error=f"the worker died: {why}",
                                         message="failed: worker died", claim=job.get("claim")):
                    continue
                actions.append((job["id"], "failed"))
            store_events.log(db, "job.recovered", {"job_id": job["id"], "action": actions[-1][1],
                                                   "why": why})
            db.conn.commit()
    return actions
