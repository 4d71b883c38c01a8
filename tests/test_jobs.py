import os
import signal
import subprocess
import sys
import time

import pytest

from engine import jobs
from engine.worker import WorkerRunning, acquire_lock, run_worker, worker_running
from store import jobs as store_jobs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _job(ws, job_id):
    with ws.connect() as db:
        return store_jobs.get(db, job_id)


def test_lifecycle_queue_claim_progress_done(ws):
    job_id = jobs.submit(ws, "selftest", {"steps": 3, "step_s": 0.01})
    assert _job(ws, job_id)["status"] == "queued"
    with ws.connect() as db:
        job = store_jobs.claim(db, "test:1", os.getpid())
        assert job["id"] == job_id and job["status"] == "running" and job["attempts"] == 1
        assert store_jobs.claim(db, "test:2", os.getpid()) is None    # nothing else queued
    seen = []
    final = jobs.run_job(ws, job, on_progress=lambda d, t, m: seen.append((d, t)))
    assert final["status"] == "done" and final["result"] == {"steps": 3}
    assert final["progress"] == 3 and final["total"] == 3 and seen[-1] == (3, 3)


def test_a_finished_job_reads_complete_even_when_its_last_step_was_not(ws):
    """A job whose last progress step was 5 of 7 (a stage that ended early) is 7 of 7 once done; a failed
    or cancelled one keeps where it stopped."""
    ids = [jobs.submit(ws, "selftest", {"steps": 1, "step_s": 0}) for _ in range(2)]
    with ws.connect() as db:
        for job_id, status in zip(ids, ("done", "failed")):
            job = store_jobs.claim(db, "test:1", os.getpid())
            assert job["id"] == job_id
            assert store_jobs.update_progress(db, job_id, 5, 7, "stage 5 of 7", claim=job["claim"]) == "ok"
            assert store_jobs.finish(db, job_id, status, claim=job["claim"])
    assert (_job(ws, ids[0])["progress"], _job(ws, ids[0])["total"]) == (7, 7)
    assert (_job(ws, ids[1])["progress"], _job(ws, ids[1])["total"]) == (5, 7)


def test_failure_is_recorded_with_its_message(ws):
    final = jobs.run_foreground(ws, "selftest", {"steps": 1, "step_s": 0, "fail": "boom"})
    assert final["status"] == "failed" and final["error"] == "boom"


def test_foreground_job_is_never_queued_for_a_worker(ws):
    """A foreground job is inserted running: a worker polling the queue while the CLI starts it
    cannot take it, and a crash of the CLI cannot leave it queued for a worker to run later."""
    seen = []

    def on_progress(done, total, message):
        with ws.connect() as db:
            seen.append(store_jobs.claim(db, "other:1", 1))                 # a polling worker
            seen.append([r[0] for r in db.execute("SELECT status FROM jobs")])

    final = jobs.run_foreground(ws, "selftest", {"steps": 1, "step_s": 0}, on_progress=on_progress)
    assert final["status"] == "done" and final["attempts"] == 1 and final["worker_pid"] == os.getpid()
    assert seen[0] is None and seen[1] == ["running"]
    with pytest.raises(Exception, match="unknown job kind|no job kind|kind"):
        jobs.run_foreground(ws, "no-such-kind", {})
    with ws.connect() as db:
        assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 1   # nothing inserted for it


def test_cancel_queued_and_running(ws):
    queued = jobs.submit(ws, "selftest", {"steps": 1})
    with ws.connect() as db:
        assert store_jobs.request_cancel(db, queued) == "cancelled"
        running = jobs.submit(ws, "selftest", {"steps": 50, "step_s": 0.02})
        job = store_jobs.claim(db, "t", os.getpid())
        assert job["id"] == running
        assert store_jobs.request_cancel(db, running) == "running"
    final = jobs.run_job(ws, job)
    assert final["status"] == "cancelled" and final["progress"] < 50


def test_claim_is_atomic_across_processes(ws):
    ids = [jobs.submit(ws, "selftest", {"steps": 1, "step_s": 0}) for _ in range(20)]
    code = ("import sys, os; from engine.workspace import Workspace; from store import jobs as j;"
            "db = Workspace.open(sys.argv[1]).connect(); got = [];\n"
            "while True:\n  r = j.claim(db, 'p', os.getpid())\n  if r is None: break\n  got.append(r['id'])\n"
            "print(' '.join(map(str, got)))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(ws.root)], stdout=subprocess.PIPE,
                              text=True, cwd=REPO) for _ in range(3)]
    claimed = [int(x) for p in procs for x in p.communicate(timeout=120)[0].split()]
    assert sorted(claimed) == ids          # every job claimed exactly once


def test_only_one_worker_per_workspace(ws):
    lock = acquire_lock(ws)
    try:
        assert worker_running(ws) == os.getpid()
        with pytest.raises(WorkerRunning, match="already running"):
            run_worker(ws, once=True)
        r = subprocess.run([sys.executable, "-m", "engine", "-w", str(ws.root), "worker", "--once"],
                           capture_output=True, text=True, cwd=REPO, timeout=120)
        assert r.returncode == 1 and "already running" in r.stderr
    finally:
        lock.close()
    assert worker_running(ws) is None


def test_worker_once_runs_the_queue(ws):
    ids = [jobs.submit(ws, "selftest", {"steps": 2, "step_s": 0}) for _ in range(2)]
    assert run_worker(ws, once=True, log=lambda m: None) == 2
    assert [_job(ws, i)["status"] for i in ids] == ["done", "done"]


def test_sigkilled_worker_is_detected_and_its_job_failed(ws):
    job_id = jobs.submit(ws, "selftest", {"steps": 600, "step_s": 0.1})
    proc = subprocess.Popen([sys.executable, "-m", "engine", "-w", str(ws.root), "worker"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            j = _job(ws, job_id)
            if j["status"] == "running" and j["progress"] >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the worker never started the job")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _job(ws, job_id)["status"] == "running"          # nobody has noticed yet
    assert worker_running(ws) is None                       # the OS released the lock
    actions = jobs.recover(ws)
    assert actions == [(job_id, "failed")]
    j = _job(ws, job_id)
    assert j["status"] == "failed" and "is no longer running" in j["error"]


def test_resumable_job_is_requeued_after_a_crash(ws):
    job_id = jobs.submit(ws, "selftest", {"steps": 1})
    with ws.connect() as db:
        store_jobs.claim(db, jobs.worker_id(), 999_999_999)   # a pid that cannot exist
    from engine import registry

    e = registry.entry("job", "selftest")
    registry.register("job", "selftest", source=e.source, **{**e.meta, "resumable": True})(e.obj)
    try:
        assert jobs.recover(ws) == [(job_id, "requeued")]
    finally:
        registry.register("job", "selftest", source=e.source, **e.meta)(e.obj)
    assert _job(ws, job_id)["status"] == "queued"


def test_pseudo_label_stores_predicted_persons(ws, coco_sample):
    from engine.io import parse
    from engine.io.common import run_import
    from engine.pseudo_label import resolve_params
    from store import images as store_images

    run_import(ws, parse("images", coco_sample.parent), limit=2)
    final = jobs.run_foreground(ws, "pseudo_label", resolve_params(ws, {"pseudo_label.imgsz": 320}))
    assert final["status"] == "done", final["error"]
    with ws.connect() as db:
        ims = store_images.list_images(db)
        persons = [p for ps in store_images.persons_for_images(db, [i["id"] for i in ims]).values()
                   for p in ps]
        assert store_images.unlabelled_real_images(db) == [] or len(persons) >= 1
    assert len(persons) >= 2 and final["result"]["persons"] == len(persons)
    for p in persons:
        assert p["source"] == "predicted" and len(p["scores"]) == 17 and 0 < p["score"] <= 1
        assert p["batch_id"] == final["result"]["batch_id"]
    # a second run finds nothing left to label
    again = jobs.run_foreground(ws, "pseudo_label", resolve_params(ws, {"pseudo_label.imgsz": 320}))
    assert again["result"]["images"] == 0
