"""Regression tests for three bugs that were planted in the code and that no other test caught:

1. experiment step matching giving an arm 4x the optimizer steps (batches confused with optimizer steps);
2. recovery of a job by its stale heartbeat switched off (only a dead pid on this host was noticed);
3. an unlabelled joint (v=0) imported with the coordinates its file had instead of (0, 0, 0).

Each test pins exact figures worked out here from first principles, not read back from the code under test.
"""
import math
import os
import re
import socket

import numpy as np
import pytest
from scipy.io import savemat

from engine import experiment, jobs, poses, registry
from engine.experiment import resolve
from engine.io import parse
from engine.io.common import run_import
from engine.train.train import manifest_step_plan, step_plan
from store import images as store_images
from store import jobs as store_jobs
from store import training as store_training
from store.db import write_transaction
from tests.helpers import make_coco, make_yolo, write_image

# ---------------------------------------------------------------------------------------------------------
# 1. experiment step matching: the exact optimizer steps (and epochs, batches) each arm is given
# ---------------------------------------------------------------------------------------------------------

def _optimizer_steps(n_images: int, epochs: int, batch: int, nbs: int) -> tuple[int, int]:
    """(batches, optimizer steps) from first principles: an epoch is ceil(n / batch) batches, and Ultralytics
    steps the optimizer once every max(round(nbs / batch), 1) batches."""
    batches = math.ceil(n_images / batch) * epochs
    return batches, batches // max(round(nbs / batch), 1)


@pytest.mark.parametrize("n, epochs, batch, nbs, batches, steps", [
    (40, 8, 16, 64, 24, 6),       # 3 batches an epoch, one step every 4 batches
    (120, 3, 16, 64, 24, 6),      # 8 batches an epoch
    (100, 10, 16, 64, 70, 17),    # the docstring's example: 7 batches an epoch, 70 // 4
    (40, 6, 8, 16, 30, 15),       # one step every 2 batches
    (40, 6, 10, 30, 24, 8),       # one step every 3 batches
    (40, 5, 24, 64, 10, 3),       # round(64 / 24) = 3 batches a step; 2 batches an epoch (ceil)
    (40, 5, 16, 8, 15, 15),       # nbs below the batch: a step every batch
])
def test_step_plan_counts_optimizer_steps_not_batches(n, epochs, batch, nbs, batches, steps):
    """Guards planted bug 1 at its source: step_plan / manifest_step_plan must count optimizer steps
    (batches // accumulate), not batches — 4x apart at nbs 64 / batch 16."""
    assert _optimizer_steps(n, epochs, batch, nbs) == (batches, steps)      # the table is first principles
    plan = step_plan(n, epochs, batch, nbs)
    assert (plan["batches"], plan["accumulate"], plan["steps"]) == (batches, max(round(nbs / batch), 1), steps)
    mplan = manifest_step_plan({"train_real": n - n // 4, "train_synthetic": n // 4, "val": 7, "test": 9},
                               {"epochs": epochs, "batch": batch, "nbs": nbs})
    assert (mplan["batches"], mplan["steps"]) == (batches, steps)


@pytest.fixture
def step_ws(ws, tmp_path):
    """40 real train images and 80 synthetic ones (tiny 64 x 48 files, one labelled person each)."""
    run_import(ws, parse("coco", make_coco(tmp_path / "real", n=40)), split="train")
    syn = parse("coco", make_coco(tmp_path / "syn", n=80, seed=1000))
    for rec in syn.records:
        for p in rec.persons:
            p.source = "conditioning"          # a generated image's label is its conditioning pose
    assert run_import(ws, syn, split="train", kind="synthetic").images == 80
    return ws


# batch, nbs, recipe epochs, and per arm: (train images, epochs, batches, optimizer steps), worked out by hand.
# real-only trains the recipe's epochs; every other arm gets as many batches (so as many optimizer steps).
STEP_CASES = [
    # nbs 64 / batch 16: a step every 4 batches. real-only 40 images = 3 batches/epoch x 8 = 24 batches = 6 steps;
    # mixed 120 images = 8 batches/epoch -> 3 epochs; fewer 20 images = 2 batches/epoch -> 12 epochs.
    (16, 64, 8, {"real-only": (40, 8, 24, 6), "mixed": (120, 3, 24, 6), "fewer": (20, 12, 24, 6)}),
    # nbs 16 / batch 8: a step every 2 batches. 5, 15 and 3 batches an epoch; 30 batches = 15 steps.
    (8, 16, 6, {"real-only": (40, 6, 30, 15), "mixed": (120, 2, 30, 15), "fewer": (20, 10, 30, 15)}),
    # nbs 30 / batch 10: a step every 3 batches. 4, 12 and 2 batches an epoch; 24 batches = 8 steps.
    (10, 30, 6, {"real-only": (40, 6, 24, 8), "mixed": (120, 2, 24, 8), "fewer": (20, 12, 24, 8)}),
]


@pytest.mark.parametrize("batch, nbs, epochs, expected", STEP_CASES,
                         ids=[f"batch{b}-nbs{n}" for b, n, _, _ in STEP_CASES])
def test_step_matching_gives_every_arm_the_real_only_optimizer_steps(step_ws, monkeypatch, request, batch, nbs, epochs,
                                                                     expected):
    """Guards planted bug 1 ("experiment steps multiplied by 4"): under step matching each arm must be trained
    for exactly the epochs that give it real-only's number of batches — hence of optimizer steps — and the
    experiment must record those epochs and optimizer steps. Training is replaced by a stub that records what
    it was given; the zero-shot arm by a stub with no scores (nothing here needs a model)."""
    given = []

    def fake_train(ctx, params):
        given.append(params)
        db = ctx.ws.connect()
        try:
            with write_transaction(db):
                run_id = store_training.create_run(db, ctx.job_id, params["manifest_id"], params)
                store_training.finish_run(db, run_id, status="done", weights=None, curves=[],
                                          metrics={"images": 0, "val": {"images": 0}})
        finally:
            db.close()
        return {"run_id": run_id, "test_eval": None, "val_eval": None}

    swap = registry.swapped("job", "train", fake_train)
    swap.__enter__()
    request.addfinalizer(lambda: swap.__exit__(None, None, None))
    monkeypatch.setattr(experiment, "_zero_shot", lambda *a, **k: {
        "val": {"images": 0}, "test": {"images": 0}, "rows": [], "test_eval": None})
    cfg = resolve({"name": f"steps-{batch}-{nbs}", "seeds": [0],
                   "recipe": {"epochs": epochs, "batch": batch, "nbs": nbs},
                   "arms": [{"name": "real-only", "real": 40},
                            {"name": "mixed", "real": 40, "pool": "random", "synthetic": 80},
                            {"name": "fewer", "real": 20}]})
    assert cfg["step_matching"]
    final = jobs.run_foreground(step_ws, "experiment", {"config": cfg, "device": "cpu"})
    assert final["status"] == "done", final["error"]
    assert len(given) == 3                                      # the three trained arms, one seed

    db = step_ws.connect()
    try:
        exp_id = store_training.experiment_by_name(db, cfg["name"])["id"]
        runs = {r["arm"]: r for r in store_training.experiment_runs(db, exp_id)}
        assert set(runs) == {"zero-shot", *expected}
        for arm, (n_images, arm_epochs, batches, steps) in expected.items():
            r = runs[arm]
            tp = store_training.run(db, r["training_run_id"])["config"]     # what the trainer was given
            counts = store_training.manifest(db, r["manifest_id"])["counts"]
            assert counts["train_real"] + counts["train_synthetic"] == n_images, arm
            assert (tp["epochs"], tp["batch"], tp["nbs"]) == (arm_epochs, batch, nbs), \
                f"{arm}: trainer given {tp['epochs']} epochs at batch {tp['batch']}, nbs {tp['nbs']}; " \
                f"expected {arm_epochs} epochs ({batches} batches, {steps} optimizer steps)"
            assert _optimizer_steps(n_images, tp["epochs"], tp["batch"], tp["nbs"]) == (batches, steps), arm
            res = r["result"]
            assert (res["train_images"], res["epochs"], res["steps"]) == (n_images, arm_epochs, steps), \
                f"{arm}: recorded {res['epochs']} epochs / {res['steps']} steps, expected {arm_epochs} / {steps}"
    finally:
        db.close()
    table = {row["arm"]: row for row in final["result"]["summary"]["table"]}
    assert {arm: table[arm]["steps"] for arm in expected} == {arm: e[3] for arm, e in expected.items()}
    assert final["result"]["summary"]["steps"] == "matched to real-only"


# ---------------------------------------------------------------------------------------------------------
# 2. job recovery by a stale heartbeat, while the pid still looks alive
# ---------------------------------------------------------------------------------------------------------

def _running_job(ws, kind: str, worker: str, pid: int, heartbeat_age_s: float) -> int:
    """A job claimed by ``worker`` (pid ``pid``) whose last heartbeat was ``heartbeat_age_s`` seconds ago."""
    job_id = jobs.submit(ws, kind, {})
    db = ws.connect()
    try:
        assert store_jobs.claim(db, worker, pid, job_id=job_id)["status"] == "running"
        db.execute("UPDATE jobs SET heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) WHERE id = ?",
                   [f"-{heartbeat_age_s} seconds", job_id])
        db.conn.commit()
        assert store_jobs.seconds_since_heartbeat(db, job_id) == pytest.approx(heartbeat_age_s, abs=30)
    finally:
        db.close()
    return job_id


def _job(ws, job_id):
    db = ws.connect()
    try:
        return store_jobs.get(db, job_id)
    finally:
        db.close()


def test_stale_heartbeat_recovers_a_job_whose_pid_looks_alive(ws):
    """Guards planted bug 2 ("stale-heartbeat recovery switched off"): a job whose heartbeat is older than
    STALE_S is recovered even though its pid is alive (this very process on this host — a hung worker, or
    the pid reused) or cannot be checked (another host): requeued when its kind is resumable, failed with
    the reason otherwise. The existing tests only cover the dead-pid branch. A fresh heartbeat is left alone."""
    assert jobs.get_kind("experiment").resumable and not jobs.get_kind("selftest").resumable
    here = f"{socket.gethostname()}:{os.getpid()}"
    elsewhere = "some-other-host.invalid:4242"
    assert jobs.pid_alive(os.getpid())
    stale, fresh = jobs.STALE_S + 60, jobs.STALE_S - 60
    resumable_here = _running_job(ws, "experiment", here, os.getpid(), stale)
    plain_here = _running_job(ws, "selftest", here, os.getpid(), stale)
    plain_elsewhere = _running_job(ws, "selftest", elsewhere, os.getpid(), stale)
    resumable_elsewhere = _running_job(ws, "experiment", elsewhere, 4242, stale)
    fresh_here = _running_job(ws, "selftest", here, os.getpid(), fresh)
    fresh_elsewhere = _running_job(ws, "experiment", elsewhere, 4242, 0)

    actions = jobs.recover(ws)
    assert sorted(actions) == [(resumable_here, "requeued"), (plain_here, "failed"),
                               (plain_elsewhere, "failed"), (resumable_elsewhere, "requeued")]
    for job_id in (resumable_here, resumable_elsewhere):
        j = _job(ws, job_id)
        assert j["status"] == "queued" and j["worker"] is None and j["worker_pid"] is None
        assert j["message"].startswith("resuming: no heartbeat for ")
    for job_id in (plain_here, plain_elsewhere):
        j = _job(ws, job_id)
        assert j["status"] == "failed" and j["finished_at"]
        m = re.fullmatch(r"the worker died: no heartbeat for (\d+) s", j["error"])
        assert m and int(m.group(1)) >= jobs.STALE_S, j["error"]
    for job_id in (fresh_here, fresh_elsewhere):                   # alive and beating: not touched
        assert _job(ws, job_id)["status"] == "running"
    assert jobs.recover(ws) == []                                  # nothing left to recover


# ---------------------------------------------------------------------------------------------------------
# 3. an unlabelled joint (v=0) is stored as (0, 0, 0) whatever coordinates its file gave, in every importer
# ---------------------------------------------------------------------------------------------------------

def _only_person(ws) -> dict:
    db = ws.connect()
    try:
        ims = store_images.list_images(db)
        persons = store_images.persons_for_images(db, [im["id"] for im in ims])
    finally:
        db.close()
    assert len(ims) == 1 and len(persons[ims[0]["id"]]) == 1
    return persons[ims[0]["id"]][0]


def _stored_keypoints(ws) -> np.ndarray:
    return np.asarray(_only_person(ws)["keypoints"], dtype=float).reshape(poses.NUM_KEYPOINTS, 3)


# pixel keypoints of one person in a 64 x 48 image: (x, y, v); the v=0 joints carry nonzero garbage positions
KEYPOINTS = {name: (4.0 + 3 * i, 40.0 - 2 * i, 2.0) for i, name in enumerate(poses.KEYPOINT_NAMES)}
KEYPOINTS["right_ear"] = (8.0, 6.0, 1.0)                      # labelled but occluded: kept as it is
UNLABELLED = ("nose", "left_wrist", "right_ankle")
for _i, _name in enumerate(UNLABELLED):
    KEYPOINTS[_name] = (30.5 + 4 * _i, 20.25 + 2 * _i, 0.0)


def _assert_zeroed(k: np.ndarray, expected: dict[str, tuple[float, float, float]]) -> None:
    for name, (x, y, v) in expected.items():
        stored = tuple(float(c) for c in k[poses.KP[name]])
        if v == 0:
            assert stored == (0.0, 0.0, 0.0), \
                f"unlabelled {name} stored as {stored}, file had {(float(x), float(y), float(v))}"
        else:
            assert stored == pytest.approx((x, y, v), abs=1e-3), f"labelled {name} stored as {stored}"


def test_coco_import_zeroes_unlabelled_joints(ws, tmp_path):
    """Guards planted bug 3 for COCO: a v=0 keypoint whose file gives x, y = (30.5, 20.25) is stored as
    (0, 0, 0); labelled joints (v=1, v=2) keep their coordinates."""
    flat = [c for name in poses.KEYPOINT_NAMES for c in KEYPOINTS[name]]
    report = run_import(ws, parse("coco", make_coco(tmp_path / "c", n=1, keypoints=flat)), split="train")
    assert report.images == 1 and report.persons == 1
    _assert_zeroed(_stored_keypoints(ws), KEYPOINTS)
    assert _only_person(ws)["num_keypoints"] == 17 - len(UNLABELLED)


def test_yolo_pose_import_zeroes_unlabelled_joints(ws, tmp_path):
    """Guards planted bug 3 for YOLO-pose: normalised coordinates of a v=0 keypoint are not scaled and kept;
    it is stored as (0, 0, 0), and labelled joints come back in pixels (x * 64, y * 48)."""
    w, h = 64, 48
    values = [0, 0.5, 0.5, 0.9, 0.9]
    for name in poses.KEYPOINT_NAMES:
        x, y, v = KEYPOINTS[name]
        values += [x / w, y / h, v]
    data_yaml = make_yolo(tmp_path / "y", n=1, lines=" ".join(f"{v:.8g}" for v in values) + "\n")
    (tmp_path / "y/images/val").mkdir()                           # the yaml lists a val split; leave it empty
    report = run_import(ws, parse("yolo-pose", data_yaml))
    assert report.images == 1 and report.persons == 1
    _assert_zeroed(_stored_keypoints(ws), KEYPOINTS)
    assert _only_person(ws)["num_keypoints"] == 17 - len(UNLABELLED)


def test_lspet_import_zeroes_unlabelled_joints(ws, tmp_path):
    """Guards planted bug 3 for LSP/LSPET: an LSPET joint flagged 0 ("nobody annotated it; its coordinates
    can be garbage") is stored as (0, 0, 0) — among the COCO joints and among the extra joints (neck,
    head top) alike — while annotated joints keep their coordinates."""
    root = tmp_path / "lspet"
    write_image(root / "images/im00001.jpg", size=(100, 100))
    from engine.io.schemas import LSP14

    joints = np.zeros((14, 3, 1))                                 # LSPET layout: 14 x 3 x N
    for i in range(14):
        joints[i, :, 0] = (10.0 + 5 * i, 80.0 - 4 * i, 1.0)
    garbage = {"right_ankle": (61.5, 17.25), "left_wrist": (3.75, 92.5), "head_top": (44.5, 55.5)}
    for name, (x, y) in garbage.items():
        joints[LSP14.index(name), :, 0] = (x, y, 0.0)
    savemat(str(root / "joints.mat"), {"joints": joints})
    report = run_import(ws, parse("lsp", root))
    assert report.images == 1 and report.persons == 1
    expected = {}
    for i, name in enumerate(LSP14):
        x, y, flag = joints[i, :, 0]
        expected[name] = (x, y, 2.0 if flag > 0 else 0.0)
    p = _only_person(ws)
    _assert_zeroed(_stored_keypoints(ws), {n: e for n, e in expected.items() if n in poses.KP})
    assert set(p["extra"]) == {"neck", "head_top"}
    assert p["extra"]["head_top"] == [0.0, 0.0, 0.0], f"unlabelled head_top stored as {p['extra']['head_top']}"
    assert p["extra"]["neck"] == pytest.approx(list(expected["neck"]))
    assert p["num_keypoints"] == 12 - 2                            # 12 limb joints, 2 of them unlabelled
