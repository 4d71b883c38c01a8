"""Failure mining on train data only (engine/curate/failures.py) and generation around the poses it finds
(pose_source targets)."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from engine import assets, poses
from engine.cli import main
from engine.curate.failures import kmeans, person_errors, pose_features
from engine.errors import RealcalError
from engine.generate.pose_sources import PoseSourceConfig, sample_pose
from engine.io import parse
from engine.io.common import run_import
from engine.train.manifest import build_manifest
from store import images as store_images
from store import training as store_training
from store.db import write_transaction


def _standing(shift=0.0, arm_up=False):
    k = np.zeros((17, 3))
    pts = {"left_shoulder": (62, 30), "right_shoulder": (38, 30), "left_hip": (58, 70), "right_hip": (42, 70),
           "left_elbow": (66, 50), "right_elbow": (34, 50), "left_wrist": (68, 68), "right_wrist": (32, 68),
           "left_knee": (59, 95), "right_knee": (41, 95), "left_ankle": (60, 120), "right_ankle": (40, 120)}
    if arm_up:
        pts["left_elbow"], pts["left_wrist"] = (70, 12), (74, -6)
    for name, (x, y) in pts.items():
        k[poses.KP[name]] = (x + shift, y + 200, 2)
    return k


def test_pose_features_ignore_place_and_size_and_see_the_limbs():
    a = pose_features(_standing())
    moved = _standing(shift=40)
    moved[:, :2] = (moved[:, :2] - 50) * 2 + 50      # larger and elsewhere
    moved[:, 2] = 2
    assert np.allclose(a, pose_features(moved))
    assert not np.allclose(a, pose_features(_standing(arm_up=True)))
    no_torso = _standing()
    no_torso[poses.KP["left_hip"], 2] = no_torso[poses.KP["right_hip"], 2] = 0
    assert pose_features(no_torso) is None


def test_kmeans_separates_two_groups():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (20, 3)), rng.normal(5, 0.1, (20, 3))])
    labels, centres = kmeans(x, 2, seed=1)
    assert len(set(labels[:20])) == 1 and len(set(labels[20:])) == 1 and labels[0] != labels[20]


def test_person_errors_in_torso_lengths():
    gt = _standing()
    pred = {"keypoints": np.stack([np.concatenate([gt[:, :2] + 4.0, np.full((17, 1), 0.9)], axis=1)])}
    oks, per = person_errors(gt, 3000.0, pred)
    torso = poses.torso_diameter(gt)
    assert 0 < oks < 1 and np.allclose(per[gt[:, 2] > 0], np.hypot(4, 4) / torso)
    assert np.isnan(per[poses.KP["nose"]])                     # not labelled: no error
    oks0, per0 = person_errors(gt, 3000.0, {"keypoints": np.zeros((0, 17, 3))})
    assert oks0 == 0.0 and np.nanmax(per0) == 1.0


def test_targets_steer_the_pose_sampler_and_are_recorded():
    anchors = [{"id": i, "image_id": i, "keypoints": _standing(arm_up=i == 3).reshape(-1).tolist(), "extra": None,
                "width": 200, "height": 400} for i in range(1, 6)]
    plain = PoseSourceConfig()
    asked = PoseSourceConfig.from_dict({"targets": [3], "target_p": 1.0, "target_label": "run 1, group 0"})
    rng = np.random.default_rng(0)
    samples = [sample_pose(anchors, rng, asked, 128, 128) for _ in range(10)]
    assert all(s.anchor_person_ids[0] == 3 and s.transform["target"] == 3 for s in samples)
    assert samples[0].transform["target_label"] == "run 1, group 0"
    # without targets the sampler draws exactly as before (no extra random numbers)
    a = sample_pose(anchors, np.random.default_rng(5), plain, 128, 128)
    b = sample_pose(anchors, np.random.default_rng(5), PoseSourceConfig.from_dict({"targets": [], "target_p": 0.5}),
                    128, 128)
    assert np.array_equal(a.keypoints, b.keypoints)
    with pytest.raises(RealcalError, match="targets is a list of anchor person ids"):
        PoseSourceConfig.from_dict({"targets": "3"})
    with pytest.raises(RealcalError, match="target_p must be within 0..1"):
        PoseSourceConfig.from_dict({"target_p": 2})


@pytest.fixture
def fws(ws, tmp_path, coco_sample):
    """The COCO sample as real train images; a stand-in student (the packaged yolo11n-pose) 'trained' on two
    of them, so the other two are held out for mining."""
    run_import(ws, parse("coco", coco_sample), split="train")
    m = build_manifest(ws, {"real_train": {"count": 2, "seed": 0}})
    with ws.connect() as db, write_transaction(db):
        tr = store_training.create_run(db, None, m["id"], {"note": "stand-in student"})
        store_training.finish_run(db, tr, status="done", weights=str(assets.resolve("yolo11n-pose")),
                                  curves=[], metrics={})
    return ws, tr, m


def test_mining_scores_held_out_train_people_and_groups_them(fws):
    ws, tr, m = fws
    r = CliRunner().invoke(main, ["-w", str(ws.root), "mine-failures", "--training-run", str(tr), "--k", "2",
                                  "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    with ws.connect() as db:
        trained = {it["image_id"] for it in store_training.manifest(db, m["id"])["items"]}
        persons = store_images.persons_for_images(db, [im["id"] for im in store_images.list_images(db)])
    mined = {w["image_id"] for c in res["clusters"] for w in c["worst"]}
    assert mined and not mined & trained                        # only people the student did not train on
    assert res["against_labels"] == res["people"] > 0 and res["against_teacher"] == 0
    assert 0 <= res["mean_error"] <= 1 and [c["mean_error"] for c in res["clusters"]] == \
        sorted((c["mean_error"] for c in res["clusters"]), reverse=True)
    ids = {p["id"] for ps in persons.values() for p in ps}
    assert all(set(c["target_person_ids"]) <= ids for c in res["clusters"])
    # every train anchor with a usable pose lands in exactly one group (the coverage is its share)
    with ws.connect() as db:
        anchors = {p["id"] for p in store_images.train_anchor_persons(db)}
    grouped = [pid for c in res["clusters"] for pid in c["anchor_person_ids"]]
    assert grouped and len(grouped) == len(set(grouped)) and set(grouped) <= anchors
    assert all(c["anchor_coverage"] == pytest.approx(len(c["anchor_person_ids"]) / len(grouped), abs=1e-3)
               for c in res["clusters"])
    # each group keeps its centre: an anchor's nearest centre is its own group's (how a new pose is placed)
    from engine import poses
    from engine.curate.failures import pose_features

    with ws.connect() as db:
        kp = {p["id"]: p["keypoints"] for p in store_images.train_anchor_persons(db)}
    centres = np.array([c["centre"] for c in res["clusters"]])
    for c in res["clusters"]:
        for pid in c["anchor_person_ids"]:
            f = pose_features(poses.as_keypoints(kp[pid]))
            assert res["clusters"][int(np.argmin(((centres - f) ** 2).sum(-1)))]["cluster"] == c["cluster"]
    assert (ws.root / "failures" / f"train{tr:05d}.json").exists()
    r = CliRunner().invoke(main, ["-w", str(ws.root), "mine-failures", "--training-run", str(tr), "--k", "2"])
    assert r.exit_code == 0 and "pose_source: {targets:" in r.output, r.output
    # --no-labels: the same images, their labels never read (the teacher is the reference)
    r = CliRunner().invoke(main, ["-w", str(ws.root), "mine-failures", "--training-run", str(tr), "--k", "2",
                                  "--no-labels", "--json"])
    assert r.exit_code == 0, r.output
    blind = json.loads(r.output)
    assert blind["against_labels"] == 0 and blind["against_teacher"] == blind["people"] > 0
    assert {w["image_id"] for c in blind["clusters"] for w in c["worst"]} <= {
        w["image_id"] for c in res["clusters"] for w in c["worst"]} | set(persons)
    assert all(w["person_id"] is None for c in blind["clusters"] for w in c["worst"])


def test_the_train_page_charts_where_a_student_fails(fws, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    ws, tr, _ = fws
    monkeypatch.setenv("REALCAL_WORKSPACE", str(ws.root))
    page = str(Path(__file__).resolve().parents[1] / "app_pages" / "train.py")
    at = AppTest.from_file(page, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert any(b.label == "Find where it fails (job)" for b in at.button)        # not mined yet: offered as a job
    r = CliRunner().invoke(main, ["-w", str(ws.root), "mine-failures", "--training-run", str(tr), "--k", "2"])
    assert r.exit_code == 0, r.output
    at = AppTest.from_file(page, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert any("pose group" in c.proto.spec for c in charts)
    assert any("targets:" in c.value for c in at.code)


def test_mining_refuses_when_nothing_is_held_out(ws, tmp_path, coco_sample):
    run_import(ws, parse("coco", coco_sample), split="train")
    m = build_manifest(ws, {"real_train": {"count": 4, "seed": 0}})
    with ws.connect() as db, write_transaction(db):
        tr = store_training.create_run(db, None, m["id"], {})
        store_training.finish_run(db, tr, status="done", weights=str(assets.resolve("yolo11n-pose")),
                                  curves=[], metrics={})
    r = CliRunner().invoke(main, ["-w", str(ws.root), "mine-failures", "--training-run", str(tr)])
    assert r.exit_code == 1 and "nothing to mine" in r.output, r.output
