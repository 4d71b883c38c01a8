"""Jobs: one process per job (the claim), Ctrl-C / SIGTERM / SIGHUP on a foreground job, counts after a resume."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import jobs
from engine.generate.job import resolve_params
from engine.io import parse
from engine.io.common import run_import
from engine.worker import run_worker
from store import jobs as store_jobs
from store.db import write_transaction
from tests.helpers import make_coco

REPO = Path(__file__).resolve().parent.parent
STALE = f"-{int(jobs.STALE_S) + 60} seconds"


@pytest.fixture
def gws(ws, tmp_path):
    """Real train anchors to generate from."""
    run_import(ws, parse("coco", make_coco(tmp_path / "train", n=4)), split="train")
    return ws


def _params(ws, count, seed=0):
    return resolve_params(ws, {"count": count, "seed": seed, "chunk": 4,
                               "generator_params": {"width": 64, "height": 64}})


def _row(ws, job_id):
    with ws.connect() as db:
        return store_jobs.get(db, job_id)


def _take_over(ws, job_id, claim_as: str | None = "other-host:4242"):
    """What happens to a paused process's job: its heartbeat goes stale, recovery requeues it and (with
    ``claim_as``) another process claims it. Returns the job's row after."""
    with ws.connect() as db:
        db.execute("UPDATE jobs SET heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) WHERE id = ?",
                   [STALE, job_id])
        db.conn.commit()
    if jobs.get_kind(_row(ws, job_id)["kind"]).resumable:
        assert (job_id, "requeued") in jobs.recover(ws)
    else:                                # recovery would fail it: requeue it as recovery does a resumable one
        with ws.connect() as db:
            assert store_jobs.requeue(db, job_id, "resuming", claim=store_jobs.get(db, job_id)["claim"])
    if claim_as is None:
        return _row(ws, job_id)
    with ws.connect() as db:
        taken = store_jobs.claim(db, claim_as, 4242, job_id=job_id)
    assert taken is not None and taken["claim"]
    return taken


def _synthetic(ws, batch_id=None) -> int:
    with ws.connect() as db:
        sql = "SELECT COUNT(*) FROM images WHERE kind = 'synthetic'" + (" AND batch_id = ?" if batch_id else "")
        return db.execute(sql, [batch_id] if batch_id else []).fetchone()[0]


def test_every_claim_writes_a_new_token_and_requeue_revokes_it(ws):
    job_id = jobs.submit(ws, "selftest", {"steps": 1})
    with ws.connect() as db:
        first = store_jobs.claim(db, "a:1", 1)
        assert first["claim"] and store_jobs.heartbeat(db, job_id, first["claim"])
        assert not store_jobs.heartbeat(db, job_id, "someone-else")
        assert store_jobs.requeue(db, job_id, "x", claim=first["claim"])
        assert _row(ws, job_id)["claim"] is None
        second = store_jobs.claim(db, "b:2", 2)
        assert second["claim"] and second["claim"] != first["claim"]
        # the first owner can no longer heartbeat, report progress, finish or requeue it
        assert not store_jobs.heartbeat(db, job_id, first["claim"])
        assert store_jobs.update_progress(db, job_id, 1, 1, "late", claim=first["claim"]) == "lost"
        assert not store_jobs.finish(db, job_id, "done", result={"late": True}, claim=first["claim"])
        assert not store_jobs.requeue(db, job_id, "late", claim=first["claim"])
        row = store_jobs.get(db, job_id)
        assert row["status"] == "running" and row["claim"] == second["claim"] and row["result"] is None
        assert row["progress"] == 0 and row["message"] == "x"
    foreground = jobs.start_foreground(ws, "selftest", {"steps": 1})
    assert foreground["claim"] and foreground["claim"] not in (first["claim"], second["claim"])


def test_a_process_that_lost_its_claim_stops_and_writes_nothing(ws):
    """A job taken over mid-run (its process was paused past the stale limit): the old process's next step
    raises ClaimLost, its results never land, and the new owner's row is left as the new owner wrote it."""
    job_id = jobs.submit(ws, "selftest", {"steps": 5, "step_s": 0})
    with ws.connect() as db:
        job = store_jobs.claim(db, jobs.worker_id(), os.getpid())
    taken = {}

    def on_progress(done, total, message):
        if done == 2 and not taken:
            taken.update(_take_over(ws, job_id))

    with pytest.raises(jobs.ClaimLost, match=f"job {job_id} is no longer held by this process"):
        jobs.run_job(ws, job, on_progress)
    row = _row(ws, job_id)
    assert row["status"] == "running" and row["claim"] == taken["claim"] and row["worker"] == "other-host:4242"
    assert row["progress"] <= 2 and row["result"] is None        # nothing after the takeover


def test_a_job_failed_by_recovery_is_not_finished_by_its_paused_process(ws):
    """A job that cannot resume is failed by recovery when its heartbeat goes stale; if its process was
    only paused, it stops at its next step and the failure (with its reason) stays."""
    job_id = jobs.submit(ws, "selftest", {"steps": 5, "step_s": 0})
    with ws.connect() as db:
        job = store_jobs.claim(db, jobs.worker_id(), os.getpid())

    def on_progress(done, total, message):
        if done == 2:
            with ws.connect() as db:
                db.execute("UPDATE jobs SET heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) WHERE id = ?",
                           [STALE, job_id])
                db.conn.commit()
            assert jobs.recover(ws) == [(job_id, "failed")]

    with pytest.raises(jobs.ClaimLost):
        jobs.run_job(ws, job, on_progress)
    row = _row(ws, job_id)
    assert row["status"] == "failed" and row["error"].startswith("the worker died: no heartbeat")
    assert row["result"] is None


def test_a_checkpoint_inside_the_takeover_rolls_back_its_work(ws):
    """Work written in the same transaction as a checkpoint is rolled back when the claim is gone."""
    job_id = jobs.submit(ws, "selftest", {"steps": 1})
    with ws.connect() as db:
        job = store_jobs.claim(db, jobs.worker_id(), os.getpid())
    ctx = jobs.JobContext(ws, job)
    try:
        with ws.connect() as db:
            with write_transaction(db):
                ctx.hold(db)
                db.execute("INSERT INTO events (kind, payload) VALUES ('mine', '{}')")
                ctx.checkpoint(db, 1, 2, "half", {"done": 1})
            _take_over(ws, job_id)
            with pytest.raises(jobs.ClaimLost):
                with write_transaction(db):
                    db.execute("INSERT INTO events (kind, payload) VALUES ('mine', '{}')")
                    ctx.checkpoint(db, 2, 2, "all", {"done": 2})
            with pytest.raises(jobs.ClaimLost):
                with write_transaction(db):
                    ctx.hold(db)
            assert db.execute("SELECT COUNT(*) FROM events WHERE kind = 'mine'").fetchone()[0] == 1
        with pytest.raises(jobs.ClaimLost):
            ctx.progress(2, 2, "late", force=True)
    finally:
        ctx.close()
    row = _row(ws, job_id)
    assert row["state"] == {"done": 1} and row["progress"] == 1


def test_paused_generate_taken_over_is_finished_once(gws):
    """The issue's case: a foreground generate paused until its heartbeat went stale was requeued and run by
    a worker, and carried on too. Now the paused process stops at its next step without storing anything,
    the worker resumes from the last committed chunk, and every count says 12 of 12."""
    job = jobs.start_foreground(gws, "generate", _params(gws, 12))
    taken: list = []

    def on_progress(done, total, message):
        if done == 4 and message and message.startswith("generated") and not taken:
            taken.append(_take_over(gws, job["id"], claim_as="worker:1"))    # the worker has it now

    with pytest.raises(jobs.ClaimLost):
        jobs.run_job(gws, job, on_progress, on_interrupt="cancel")
    assert _synthetic(gws) == 4                            # one chunk; nothing from the paused process after it
    assert _row(gws, job["id"])["claim"] == taken[0]["claim"]
    final = jobs.run_job(gws, taken[0])                    # the worker runs it from the last checkpoint
    assert final["status"] == "done", final["error"]
    r = final["result"]
    assert _synthetic(gws, r["batch_id"]) == _synthetic(gws) == 12
    assert r["images"] == 12 and r["duplicates_not_stored"] == 0
    with gws.connect() as db:
        report = db.execute("SELECT report FROM batches WHERE id = ?", [r["batch_id"]]).fetchone()[0]
    assert '"images": 12' in report


@pytest.mark.parametrize("stop_at", [4, 8])
def test_a_resumed_generate_counts_every_image(gws, stop_at):
    """The issue's case: after a resume, the job result and the batch report counted only the images of
    the last attempt (280 of a 400-image batch)."""
    job_id = jobs.submit(gws, "generate", _params(gws, 12, seed=stop_at))
    with gws.connect() as db:
        job = store_jobs.claim(db, jobs.worker_id(), os.getpid())

    def interrupt(done, total, message):
        if message and message.startswith("generated") and done >= stop_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        jobs.run_job(gws, job, interrupt)                 # the worker's way: requeued to resume
    row = _row(gws, job_id)
    assert row["status"] == "queued" and row["state"]["done"] == stop_at and row["state"]["stored"] == stop_at
    assert run_worker(gws, once=True, log=lambda m: None) == 1
    final = _row(gws, job_id)
    assert final["status"] == "done" and final["attempts"] == 2
    r = final["result"]
    assert _synthetic(gws, r["batch_id"]) == 12
    assert r["images"] == 12 and r["duplicates_not_stored"] == 0
    from store import batches as store_batches

    with gws.connect() as db:
        assert store_batches.get(db, r["batch_id"])["report"]["images"] == 12


def test_a_resumed_distributed_generate_counts_every_image(gws, monkeypatch):
    """With the ray executor results arrive in any order and a restart regenerates the whole range: the
    samples the batch already holds count as its images again, never as duplicates."""
    from engine import executors

    class OutOfOrder(executors.LocalExecutor):           # ray's contract without ray: chunks in any order
        def map(self, *a, **k):
            yield from reversed(list(super().map(*a, **k)))

    monkeypatch.setattr(executors, "build", lambda cfg: OutOfOrder())
    params = resolve_params(gws, {"count": 12, "seed": 5, "chunk": 4, "executor": {"name": "ray"},
                                  "generator_params": {"width": 64, "height": 64}})
    job_id = jobs.submit(gws, "generate", params)
    with gws.connect() as db:
        job = store_jobs.claim(db, jobs.worker_id(), os.getpid())

    def interrupt(done, total, message):
        if message and message.startswith("generated") and done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        jobs.run_job(gws, job, interrupt)
    assert _row(gws, job_id)["status"] == "queued" and _synthetic(gws) == 4
    assert run_worker(gws, once=True, log=lambda m: None) == 1
    r = _row(gws, job_id)["result"]
    assert _synthetic(gws, r["batch_id"]) == 12 and r["images"] == 12 and r["duplicates_not_stored"] == 0


def test_ctrl_c_cancels_a_foreground_job_unless_asked_to_keep_it(gws):
    def interrupt(done, total, message):
        if message and message.startswith("generated"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        jobs.run_foreground(gws, "generate", _params(gws, 12), interrupt)
    with gws.connect() as db:
        cancelled = store_jobs.list_jobs(db, limit=1)[0]
    assert cancelled["status"] == "cancelled" and "interrupted (KeyboardInterrupt)" in cancelled["message"]
    assert jobs.recover(gws) == [] and run_worker(gws, once=True, log=lambda m: None) == 0   # nobody finishes it

    with pytest.raises(KeyboardInterrupt):
        jobs.run_foreground(gws, "generate", _params(gws, 12, seed=1), interrupt, on_interrupt="requeue")
    with gws.connect() as db:
        kept = store_jobs.list_jobs(db, limit=1)[0]
    assert kept["status"] == "queued" and kept["claim"] is None
    assert run_worker(gws, once=True, log=lambda m: None) == 1
    assert _row(gws, kept["id"])["result"]["images"] == 12


def _cli(ws, *args, **popen):
    return subprocess.Popen([sys.executable, "-m", "engine", "-w", str(ws.root), *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))  # as in a terminal


def _wait_for_progress(ws, proc, at_least=4, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        with sqlite3.connect(ws.db_path, timeout=60) as c:
            row = c.execute("SELECT id, progress FROM jobs ORDER BY id DESC LIMIT 1").fetchone()
        if row and row[1] >= at_least:
            return row[0]
        time.sleep(0.05)
    pytest.fail("the job made no progress")


@pytest.mark.parametrize("sig, extra, status", [
    (signal.SIGTERM, (), "cancelled"),
    (signal.SIGHUP, (), "cancelled"),
    pytest.param(signal.SIGINT, (), "cancelled", marks=pytest.mark.slow),    # Ctrl-C, also tested in-process
    pytest.param(signal.SIGTERM, ("--requeue-on-interrupt",), "queued", marks=pytest.mark.slow),
])
def test_signals_on_a_foreground_generate(gws, tmp_path, sig, extra, status):
    """Ctrl-C, SIGTERM and SIGHUP end a foreground ``realcal generate`` the same way: the job is cancelled
    (or left queued with --requeue-on-interrupt), one line says so, and the exit status is 128 + signal."""
    cfg = tmp_path / "gen.yaml"
    cfg.write_text("generator_params: {width: 64, height: 64}\nchunk: 4\n")
    proc = _cli(gws, "generate", "--count", 2000, "--config", cfg, *extra)
    job_id = _wait_for_progress(gws, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert f"job {job_id} (generate): " + ("cancelled" if status == "cancelled" else "queued again") in err
    assert ("interrupted" if sig == signal.SIGINT else f"terminated ({sig.name})") in err.splitlines()[-1]
    row = _row(gws, job_id)
    assert row["status"] == status
    if status == "cancelled":
        assert jobs.recover(gws) == [] and run_worker(gws, once=True, log=lambda m: None) == 0
    with gws.connect() as db:   # the last chunk was rolled back or committed whole: every row has its file
        ids = db.execute("SELECT sha256, ext FROM images WHERE kind = 'synthetic'").fetchall()
    from engine import media

    assert all(media.image_path(gws.root, sha, ext).is_file() for sha, ext in ids)


@pytest.mark.slow          # loads the teacher twice
def test_a_resumed_pseudo_label_counts_every_person(ws, coco_sample):
    """Pseudo-labelling resumes after the last committed image, and its result counts the persons of every
    attempt (it counted only the last one's); images where the teacher found nobody are not labelled twice."""
    from engine.pseudo_label import resolve_params as pl_params
    from store import images as store_images

    run_import(ws, parse("images", coco_sample.parent), limit=4)
    job_id = jobs.submit(ws, "pseudo_label", pl_params(ws, {"pseudo_label.imgsz": 320,
                                                            "pseudo_label.batch_size": 1}))
    with ws.connect() as db:
        job = store_jobs.claim(db, jobs.worker_id(), os.getpid())

    def interrupt(done, total, message):
        if message and message.startswith("labelled") and done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        jobs.run_job(ws, job, interrupt)
    assert _row(ws, job_id)["status"] == "queued" and _row(ws, job_id)["state"]["done"] == 2
    assert run_worker(ws, once=True, log=lambda m: None) == 1
    r = _row(ws, job_id)["result"]
    with ws.connect() as db:
        ims = store_images.list_images(db)
        persons = [p for ps in store_images.persons_for_images(db, [i["id"] for i in ims]).values() for p in ps]
    assert r["images"] == 4 and r["persons"] == len(persons) >= 2
    assert {p["batch_id"] for p in persons} == {r["batch_id"]}
