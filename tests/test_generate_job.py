"""Generation end to end in a temp workspace: pose sources, the job, lineage, leakage guard."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from engine import jobs, poses
from engine.cli import main
from engine.errors import RealcalError
from engine.generate.job import earlier_batch, next_free_seed, resolve_params
from engine.generate.pose_sources import PoseSourceConfig, bone_lengths, interpolate, perturb_joint_angles, sample_pose
from engine.io import parse
from engine.io.common import run_import
from store import images as store_images
from store import synthetic as store_synthetic
from tests.helpers import make_coco


def _full_pose(seed=0):
    rng = np.random.default_rng(seed)
    k = np.zeros((17, 3))
    k[:, 0] = rng.uniform(50, 150, 17)
    k[:, 1] = np.linspace(20, 280, 17)
    k[:, 2] = 2
    return k


def test_joint_angle_perturbation_keeps_bone_lengths():
    k = _full_pose()
    before = bone_lengths(k)
    for seed in range(5):
        moved, applied = perturb_joint_angles(k, np.random.default_rng(seed), 30)
        after = bone_lengths(moved)
        assert applied and not np.allclose(moved, k)
        for bone, length in before.items():
            assert after[bone] == pytest.approx(length, abs=1e-9)


def test_interpolation_is_between_and_keeps_plausible_bones():
    a, b = _full_pose(0), _full_pose(1)
    mid = interpolate(a, b, 0.5)
    la, lb, lm = bone_lengths(a), bone_lengths(b), bone_lengths(mid)
    for bone in la:
        lo, hi = sorted((la[bone], lb[bone]))
        scale_slack = 1.5  # torso normalisation rescales; lengths stay within the anchors' range
        assert lo / scale_slack <= lm[bone] <= hi * scale_slack
    assert np.allclose(interpolate(a, b, 0.0)[:, :2], a[:, :2], atol=1e-6)


def test_sample_pose_mirror_uses_flip_idx_and_records_lineage():
    k = _full_pose()
    anchor = {"id": 7, "image_id": 3, "keypoints": k.reshape(-1).tolist(), "extra": None,
              "width": 200, "height": 300}
    cfg = PoseSourceConfig(mirror_p=1.0, perturb_p=0.0, interpolate_p=0.0, max_rotate_deg=0,
                           scale_range=(1, 1), max_translate_frac=0)
    s = sample_pose([anchor], np.random.default_rng(0), cfg, 256, 256)
    assert s.transform["mirror"] is True and s.anchor_person_ids == [7] and s.anchor_image_ids == [3]
    # the placed pose is the flip_idx mirror of the anchor, scaled (no rotation here)
    expected = poses.flip_keypoints(k, 200)
    scale = s.transform["scale"]
    assert np.allclose(s.keypoints[:, :2] - s.keypoints[0, :2],
                       scale * (expected[:, :2] - expected[0, :2]), atol=0.05)
    # the joint labelled left now sits where the mirrored right joint was
    assert expected[poses.KP["left_shoulder"], 0] == pytest.approx(200 - k[poses.KP["right_shoulder"], 0])
    again = sample_pose([anchor], np.random.default_rng(0), cfg, 256, 256)
    assert np.array_equal(again.keypoints, s.keypoints)          # seeded and reproducible


@pytest.fixture
def gen_ws(ws, tmp_path):
    """Labelled images in train, val and test."""
    for offset, (split, n) in enumerate((("train", 4), ("val", 2), ("test", 2))):
        run_import(ws, parse("coco", make_coco(tmp_path / split, n=n, seed=100 * offset, file_names=[
            f"{split}{i}.jpg" for i in range(n)])), split=split)
    return ws


def test_generation_job_end_to_end(gen_ws):
    params = resolve_params(gen_ws, {"generator": "copy_paste", "count": 5, "seed": 3,
                                     "generator_params": {"width": 96, "height": 96}})
    final = jobs.run_foreground(gen_ws, "generate", params)
    assert final["status"] == "done", final["error"]
    r = final["result"]
    assert r["images"] == 5 and r["source_splits_other_than_train"] == {}
    with gen_ws.connect() as db:
        ims = store_images.list_images(db, kinds=["synthetic"])
        assert len(ims) == 5 and {i["split"] for i in ims} == {"train"}
        persons = store_images.persons_for_images(db, [i["id"] for i in ims])
        assert all(p["source"] == "conditioning" for ps in persons.values() for p in ps)
        lin = store_synthetic.lineage_for(db, ims[0]["id"])
        assert lin["generator"] == "copy_paste" and lin["details"]["params"]["width"] == 96
        assert {s["role"] for s in lin["sources"]} >= {"cutout"}
        real = {i["id"]: i["split"] for i in store_images.list_images(db, kinds=["real"])}
        for im in ims:
            for s in store_synthetic.lineage_for(db, im["id"])["sources"]:
                assert real[s["source_image_id"]] == "train"   # nothing from val/test, ever
    # the same seed reproduces the same samples: nothing new is stored
    with gen_ws.connect() as db:
        first = earlier_batch(db, params)
        assert first is not None and first["id"] == r["batch_id"]
        assert earlier_batch(db, {**params, "count": 50, "label": "x"})["id"] == r["batch_id"]  # count: same images
        assert earlier_batch(db, {**params, "seed": 4}) is None
        assert next_free_seed(db) == 4 and next_free_seed(db, "pose_warp") == 0
    again = jobs.run_foreground(gen_ws, "generate", params)
    assert again["result"]["images"] == 0 and again["result"]["duplicates_not_stored"] == 5
    assert "nothing new" in again["result"]["note"] and "another seed" in again["result"]["note"]
    more = jobs.run_foreground(gen_ws, "generate", {**params, "count": 7})
    assert more["result"]["images"] == 2 and "5 of 7 images are identical" in more["result"]["note"]


def test_leakage_guard_refuses_val_sources(gen_ws, monkeypatch):
    from engine.generate import job as gen_job

    with gen_ws.connect() as db:
        val_id = store_images.list_images(db, splits=["val"])[0]["id"]
    orig = gen_job.build_requests

    def leaky(*a, **k):  # requests whose cut-outs claim to come from a val image
        reqs = orig(*a, **k)
        for r in reqs:
            r.anchors = [dict(p, image_id=val_id) for p in r.anchors]
        return reqs

    monkeypatch.setattr(gen_job, "build_requests", leaky)
    params = resolve_params(gen_ws, {"count": 2, "generator_params": {"width": 64, "height": 64}})
    final = jobs.run_foreground(gen_ws, "generate", params)
    assert final["status"] == "failed" and "leakage guard" in final["error"]


def test_bad_generation_parameters_are_clear(gen_ws, tmp_path):
    with pytest.raises(RealcalError, match="unknown generator 'sdxl'; valid names: controlnet, copy_paste"):
        resolve_params(gen_ws, {"generator": "sdxl"})
    with pytest.raises(RealcalError, match="--count"):
        resolve_params(gen_ws, {"count": 0})
    with pytest.raises(RealcalError, match="unknown generation option"):
        resolve_params(gen_ws, {"colour": "red"})
    with pytest.raises(RealcalError, match="unknown pose source option"):
        resolve_params(gen_ws, {"pose_source": {"wobble": 1}})
    r = CliRunner().invoke(main, ["-w", str(gen_ws.root), "generate", "--generator", "nope"])
    assert r.exit_code == 1 and "valid names" in r.output and "Traceback" not in r.output


def test_no_anchors_gives_a_clear_error(ws):
    params = resolve_params(ws, {"count": 1, "generator_params": {"width": 64, "height": 64}})
    final = jobs.run_foreground(ws, "generate", params)
    assert final["status"] == "failed" and "no real anchors" in final["error"]


def test_generate_cli_and_lineage(gen_ws, tmp_path):
    cfg = tmp_path / "gen.yaml"
    cfg.write_text("generator_params:\n  width: 64\n  height: 64\n  background: procedural\n"
                   "image_format: png\n")
    r = CliRunner().invoke(main, ["-w", str(gen_ws.root), "generate", "--count", "2", "--seed", "1",
                                  "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert "2 synthetic images from copy_paste" in r.output
    with gen_ws.connect() as db:
        image_id = store_images.list_images(db, kinds=["synthetic"])[0]["id"]
    r = CliRunner().invoke(main, ["-w", str(gen_ws.root), "lineage", str(image_id)])
    assert r.exit_code == 0 and json.loads(r.output)["details"]["background"]["kind"] == "procedural"


def test_controlnet_job_end_to_end_on_a_tiny_pipeline(gen_ws, tmp_path):
    from tests.tiny_models import save_tiny_controlnet_pipeline

    base, cn = save_tiny_controlnet_pipeline(tmp_path / "tiny")
    params = resolve_params(gen_ws, {"generator": "controlnet", "count": 3, "seed": 5,
                                     "generator_params": {"base": str(base), "controlnet": str(cn),
                                                          "steps": 2, "width": 64, "height": 64,
                                                          "batch_size": 2, "device": "cpu",
                                                          "allow_cpu": True}})
    final = jobs.run_foreground(gen_ws, "generate", params)
    assert final["status"] == "done", final["error"]
    with gen_ws.connect() as db:
        ims = store_images.list_images(db, kinds=["synthetic"])
        assert len(ims) == 3
        lin = store_synthetic.lineage_for(db, ims[0]["id"])
        assert lin["generator"] == "controlnet" and lin["prompt"].startswith("a photo of")
        assert set(lin["details"]["prompt_axes"]) >= {"person", "clothing", "scene", "lighting", "camera"}
        assert lin["details"]["transform"]["canvas"] == [64, 64]
        assert [s["role"] for s in lin["sources"]] == ["anchor"] * len(lin["sources"])


def test_controlnet_is_refused_before_queueing_without_gpu_or_weights(gen_ws):
    with pytest.raises(RealcalError, match="not in the local Hugging Face cache|needs a CUDA GPU"):
        resolve_params(gen_ws, {"generator": "controlnet"})


def test_pose_warp_job_uses_train_anchors_only_and_records_its_sources(gen_ws):
    """The pose-driven generator through the job: the appearance (cut-out), the pose's people and the placement
    donor (anchors) and the background are all real train images, and each is recorded in the lineage."""
    from store import synthetic as store_synthetic

    params = resolve_params(gen_ws, {"generator": "pose_warp", "count": 6, "seed": 2,
                                     "pose_source": {"min_keypoints": 4},
                                     "generator_params": {"width": 96, "height": 96, "swap_p": 0.5}})
    assert params["generator_params"]["swap_p"] == 0.5 and params["generator_params"]["blend"] == "alpha"
    final = jobs.run_foreground(gen_ws, "generate", params)
    assert final["status"] == "done", final["error"]
    assert final["result"]["images"] == 6 and final["result"]["source_splits_other_than_train"] == {}
    with gen_ws.connect() as db:
        synth = store_images.list_images(db, kinds=["synthetic"])
        splits = {im["id"]: im["split"] for im in store_images.list_images(db, kinds=["real"])}
        for im in synth:
            lin = store_synthetic.lineage_for(db, im["id"])
            roles = {s["role"] for s in lin["sources"]}
            assert {"cutout", "anchor"} <= roles
            assert all(splits[s["source_image_id"]] == "train" for s in lin["sources"])
            assert lin["details"]["appearance"]["person_id"] and lin["generator"] == "pose_warp"
