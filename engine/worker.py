"""The worker process: one per workspace (a lock file guards it); claims and runs jobs."""
from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine import jobs
from engine.errors import RealcalError
from engine.workspace import Workspace
from store import jobs as store_jobs

logger = logging.getLogger(__name__)


class WorkerRunning(RealcalError):
    pass


def lock_path(ws: Workspace) -> Path:
    return ws.root / "worker.lock"


def acquire_lock(ws: Workspace):
    """Hold the workspace's worker lock for this process's life (released by the OS on death)."""
    fh = open(lock_path(ws), "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "unknown"
        fh.close()
        raise WorkerRunning(f"a worker is already running for {ws.root} (pid {holder})") from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def worker_running(ws: Workspace) -> int | None:
    """The pid of the workspace's live worker, or None."""
    p = lock_path(ws)
    if not p.exists():
        return None
    with open(p, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return None


def run_worker(ws: Workspace, once: bool = False, poll_s: float = 1.0, log=None) -> int:
    """Claim and run jobs until stopped (or, with ``once``, until the queue is empty). Each event goes to
    ``log(message)``, by default the ``engine.worker`` logger (see ``engine.logs``)."""
    log = log or logger.info
    lock = acquire_lock(ws)
    from engine import env

    env.tune_malloc()          # the worker runs the models: no allocator page faults per batch

    def on_term(signum, frame):
        # once: a second signal must not interrupt the requeue the first one started (SIGKILL still ends it)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    # SIGTERM and SIGHUP stop the worker as Ctrl-C does: the running job is requeued (resumable) or failed
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)
                if signal.getsignal(sig) is not signal.SIG_IGN}             # a worker under nohup stays immune
    for sig in previous:
        signal.signal(sig, on_term)
    done = 0
    try:
        for job_id, action in jobs.recover(ws):
            log(f"worker: job {job_id} {action} (its previous process died)")
        last_recover = time.monotonic()
        with ws.connect() as db:
            while True:
                job = store_jobs.claim(db, jobs.worker_id(), os.getpid())
                if job is None:
                    if once:
                        break
                    time.sleep(poll_s)
                    if time.monotonic() - last_recover > 30:
                        jobs.recover(ws)
                        last_recover = time.monotonic()
                    continue
                log(f"worker: job {job['id']} ({job['kind']}) started")
                try:
                    final = jobs.run_job(ws, job, on_interrupt="requeue")
                except jobs.ClaimLost as exc:
                    log(f"worker: {exc}")
                    continue
                log(f"worker: job {job['id']} {final['status']}")
                done += 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        lock.close()
    return done


def ensure_worker(ws: Workspace) -> int | None:
    """Start a detached worker unless one runs; returns the new process's pid (None if running).

    Two callers racing both spawn; the loser's worker finds the lock held and exits at once.
    """
    if worker_running(ws):
        return None
    log_dir = ws.root / "logs"
    log_dir.mkdir(exist_ok=True)
    with open(log_dir / "worker.log", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "-w", str(ws.root), "worker"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=os.environ.copy())
    return proc.pid
