"""Manifests, the leakage guard, and a tiny training job end to end, offline on the CPU."""
from pathlib import Path

import pytest

from engine import jobs
from engine.errors import RealcalError
from engine.io import parse
from engine.io.common import run_import
from engine.train.manifest import build_manifest
from store import training as store_training


@pytest.fixture
def tws(ws, lspet, coco_sample):
    run_import(ws, parse("lsp", lspet), limit=24, split="train")
    run_import(ws, parse("lsp", lspet), ids=[f"im{i:05d}.jpg" for i in range(100, 108)], split="val")
    run_import(ws, parse("coco", coco_sample), split="test")
    return ws


def test_manifest_hash_is_stable_and_seeded(tws):
    a = build_manifest(tws, {"real_train": {"count": 10, "seed": 1}})
    b = build_manifest(tws, {"real_train": {"count": 10, "seed": 1}})
    c = build_manifest(tws, {"real_train": {"count": 10, "seed": 2}})
    assert a["id"] == b["id"] and a["hash"] == b["hash"] and not b["new"]
    assert c["hash"] != a["hash"]
    assert a["counts"] == {"train_real": 10, "train_synthetic": 0, "val": 8, "test": 4}
    with tws.connect() as db:
        with pytest.raises(Exception, match="immutable"):
            db.execute("UPDATE manifests SET hash = 'x'")


def test_leakage_guard_refuses_synthetic_from_val(tws, tmp_path):
    from engine.generate.job import resolve_params as gen_params

    final = jobs.run_foreground(tws, "generate", gen_params(tws, {
        "count": 3, "generator_params": {"width": 128, "height": 128, "background": "procedural"}}))
    assert final["status"] == "done", final["error"]
    ok = build_manifest(tws, {"real_train": {"count": 5}, "synthetic": {"pool": "random", "count": 3}})
    assert ok["counts"]["train_synthetic"] == 3
    with tws.connect() as db:  # pretend one cut-out came from a val image
        val_id = next(r[0] for r in db.execute("SELECT id FROM images WHERE split = 'val'"))
        db.execute("UPDATE lineage_sources SET source_image_id = ? "
                   "WHERE rowid = (SELECT MIN(rowid) FROM lineage_sources)", [val_id])
        db.conn.commit()
    with pytest.raises(RealcalError, match="leakage guard"):
        build_manifest(tws, {"real_train": {"count": 5}, "synthetic": {"pool": "random", "count": 3}})


def test_tiny_training_job_end_to_end_offline(tws):
    from engine.train.train import resolve_params

    m = build_manifest(tws, {"real_train": {"count": 16, "seed": 0}})
    params = resolve_params(tws, m["id"], {"epochs": 1, "imgsz": 96, "batch": 8, "device": "cpu"})
    final = jobs.run_foreground(tws, "train", params)
    assert final["status"] == "done", final["error"]
    r = final["result"]
    assert r["epochs"] == 1 and r["weights"].endswith(".pt")
    met = r["metrics"]
    assert met["images"] == 4 and 0 <= met["AP50"] <= 1 and met["PCK@0.2"] is not None
    with tws.connect() as db:
        run = store_training.run(db, r["run_id"])
        assert run["status"] == "done" and run["config"]["freeze"] == 0 and run["config"]["optimizer"] == "AdamW"
        assert run["config"]["nbs"] == 8 and run["config"]["lr0"] == 5e-5
        rows = list(db.query("SELECT * FROM eval_images WHERE run_id = ?", [r["run_id"]]))
        assert len(rows) == met["persons"] and all(0 <= x["oks"] <= 1 for x in rows)
    assert Path(r["test_eval"]).exists()  # ground truth + detections kept for paired AP comparisons
    # where the time went, and the threads it trained with (Ultralytics' choice by default)
    import os

    t = met["timings"]
    from ultralytics.utils import torch_utils

    assert t["cpu_threads"] == torch_utils.NUM_THREADS == min(8, max(1, os.cpu_count() - 1))
    assert run["config"]["threads"] == -1
    assert all(t[k] > 0 for k in ("prepare", "train", "evaluate", "total"))
    assert 0 <= t["validate_and_save"] <= t["train"] and 0 < t["overhead_share"] < 1
    assert abs(t["prepare"] + t["train"] + t["evaluate"] - t["total"]) < 0.05
    # the trained model as ONNX: runs in onnxruntime and matches the PyTorch model
    import numpy as np
    import onnxruntime as ort
    import torch
    from ultralytics import YOLO

    from engine.train.train import export_model

    assert export_model(tws, r["run_id"], "pt") == Path(r["weights"])
    onnx_path = export_model(tws, r["run_id"], "onnx")
    assert onnx_path.suffix == ".onnx" and onnx_path.stat().st_size > 100_000
    x = np.random.default_rng(0).random((1, 3, 96, 96), dtype=np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    net = YOLO(r["weights"], task="pose").model.float().eval()
    with torch.no_grad():
        want = net(torch.from_numpy(x))
    want = (want[0] if isinstance(want, (list, tuple)) else want).numpy()
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-3, rtol=1e-3)
    with pytest.raises(RealcalError, match="no training run"):
        export_model(tws, 999, "onnx")


def test_training_threads_are_set_for_the_run_and_put_back():
    import os

    import torch
    from ultralytics.utils import torch_utils

    from engine.train.recipe import Recipe
    from engine.train.train import cpu_threads

    before, before_torch = torch_utils.NUM_THREADS, torch.get_num_threads()
    with cpu_threads(0) as n:
        assert n == torch_utils.NUM_THREADS == os.cpu_count()
        torch_utils.select_device("cpu", verbose=False)          # what Ultralytics does at train and predict
        assert torch.get_num_threads() == os.cpu_count()
    assert (torch_utils.NUM_THREADS, torch.get_num_threads()) == (before, before_torch)
    with cpu_threads(-1) as n:
        assert n == before                                      # Ultralytics' own choice, untouched
    with cpu_threads(1) as n:
        assert n == 1
    with pytest.raises(RealcalError, match="threads must be"):
        Recipe.from_dict({"threads": -2})


def test_anchor_pool_restricts_generation_and_manifests(tws):
    """A seed's synthetic images come from its own anchors only; manifests enforce it."""
    from engine.generate.job import resolve_params as gen_params
    from engine.train.manifest import anchor_pool

    pool0, pool1 = anchor_pool(tws, 6, 0), anchor_pool(tws, 6, 1)
    assert len(pool0) == 6 and set(pool0) != set(pool1)
    assert anchor_pool(tws, 4, 0) == pool0[:4]  # the real subset is a prefix of the pool draw
    gp = {"count": 4, "generator_params": {"width": 96, "height": 96, "background": "procedural"}}
    for seed, pool in ((0, pool0), (1, pool1)):
        final = jobs.run_foreground(tws, "generate", gen_params(tws, {**gp, "seed": seed, "anchor_image_ids": pool}))
        assert final["status"] == "done", final["error"]
    with tws.connect() as db:
        val_id = next(r[0] for r in db.execute("SELECT id FROM images WHERE split = 'val'"))
        synthetic_ids = [r[0] for r in db.execute("SELECT id FROM images WHERE kind = 'synthetic'")]
        srcs = store_training.lineage_sources(db, synthetic_ids)
    used = {s["source_image_id"] for v in srcs.values() for s in v}
    assert used <= set(pool0) | set(pool1)
    with pytest.raises(RealcalError, match="real train images"):
        gen_params(tws, {**gp, "anchor_image_ids": [val_id]})
    m = build_manifest(tws, {"real_train": {"count": 4, "seed": 0},
                             "synthetic": {"pool": "random", "seed": 0, "within": {"count": 6, "seed": 0}}})
    with tws.connect() as db:
        items = store_training.manifest(db, m["id"])["items"]
        syn = [it["image_id"] for it in items if it["split"] == "train" and it["image_id"] not in pool0]
        src = store_training.lineage_sources(db, syn)
    assert len(syn) == 4 and all(s["source_image_id"] in set(pool0) for v in src.values() for s in v)
    with pytest.raises(RealcalError, match="fewer than"):  # seed 1's images are not eligible for seed 0
        build_manifest(tws, {"real_train": {"count": 4, "seed": 0},
                             "synthetic": {"pool": "random", "count": 5, "within": {"count": 6, "seed": 0}}})


def test_manifest_and_train_commands(tws):
    from click.testing import CliRunner

    from engine.cli import main

    r = CliRunner().invoke(main, ["-w", str(tws.root), "manifest", "build", "--real-count", "6"])
    assert r.exit_code == 0 and "train_real 6" in r.output, r.output
    r = CliRunner().invoke(main, ["-w", str(tws.root), "manifest", "build", "--pool", "sideways"])
    assert r.exit_code == 2
    r = CliRunner().invoke(main, ["-w", str(tws.root), "train", "--manifest", "99"])
    assert r.exit_code == 1 and "no manifest 99" in r.output
    r = CliRunner().invoke(main, ["-w", str(tws.root), "train", "--manifest", "1", "--freeze", "everything"])
    assert r.exit_code == 1 and "unknown freeze preset 'everything'" in r.output, r.output
    r = CliRunner().invoke(main, ["-w", str(tws.root), "train", "--manifest", "1", "--nbs", "0"])
    assert r.exit_code == 1 and "nbs (nominal batch size) must be within 1..4096" in r.output, r.output
    r = CliRunner().invoke(main, ["-w", str(tws.root), "train", "--manifest", "1", "--epochs", "2", "--batch", "4",
                                  "--nbs", "64", "--background"])
    assert r.exit_code == 0, r.output
    assert ("6 train images, 2 epochs at batch 4: 4 batches, "
            "one optimizer step every 16 batches (nbs 64) = 0 optimizer steps") in r.output
    assert "warning: only 0 optimizer steps" in r.output and "Set nbs to the batch size (4) for 4 steps" in r.output
    from engine.train.train import parse_freeze, step_plan

    # Ultralytics steps the optimizer once every max(round(nbs / batch), 1) batches
    assert step_plan(100, 40, 8, 64)["steps"] == 65            # the LSPET benchmark's first recipe: 520 batches
    assert step_plan(100, 40, 8, 8) == {**step_plan(100, 40, 8, 8), "batches": 520, "accumulate": 1, "steps": 520,
                                        "warning": None}
    assert step_plan(100, 10, 16, 64)["steps"] == 17
    assert "nbs to the batch size (16) for 70 steps" in step_plan(100, 10, 16, 64)["warning"]
    assert step_plan(5, 10, 8, 8)["warning"].endswith("Train longer (more epochs).")
    assert parse_freeze("10") == 10 and parse_freeze("0, 1,23.cv2") == [0, 1, "23.cv2"]
    assert parse_freeze("keypoint-branch") == "keypoint-branch" and parse_freeze(None) is None


def test_unannotated_people_are_masked_in_exported_train_images(tws, tmp_path):
    import cv2
    import numpy as np

    from engine.train.manifest import export_yolo

    m = build_manifest(tws, {"real_train": {"count": 4, "seed": 0}})
    with tws.connect() as db:
        items = store_training.manifest(db, m["id"])["items"]
    train_id = next(it["image_id"] for it in items if it["split"] == "train")
    val_id = next(it["image_id"] for it in items if it["split"] == "val")
    out = export_yolo(tws, m["id"], tmp_path / "y", mask_regions={train_id: [[5, 6, 20, 30]], val_id: [[0, 0, 9, 9]]})
    masked = cv2.imread(str(out.parent / "images" / "train" / f"{train_id:07d}.png"))
    assert masked is not None
    patch = masked[7:35, 6:24].reshape(-1, 3)
    assert np.ptp(patch, axis=0).max() == 0  # one flat fill colour
    assert (out.parent / "images" / "val" / f"{val_id:07d}.jpg").exists()  # val/test are never altered
    assert (out.parent / "labels" / "train" / f"{train_id:07d}.txt").read_text().strip()


def test_keypoint_branch_recipe_on_a_val_only_workspace(ws, lspet):
    """The 'keypoint-branch' preset trains only the pose head's keypoint branch; a workspace without
    a test split is scored on val alone (a recipe check that never touches test)."""
    import torch
    from ultralytics import YOLO

    from engine.train.train import resolve_params

    run_import(ws, parse("lsp", lspet), limit=16, split="train")
    run_import(ws, parse("lsp", lspet), ids=[f"im{i:05d}.jpg" for i in range(100, 106)], split="val")
    m = build_manifest(ws, {"real_train": {"count": 16, "seed": 0}})
    assert m["counts"]["test"] == 0
    params = resolve_params(ws, m["id"], {"epochs": 1, "imgsz": 96, "batch": 8, "device": "cpu",
                                          "freeze": "keypoint-branch", "lr0": 0.01, "nbs": 8})
    final = jobs.run_foreground(ws, "train", params)
    assert final["status"] == "done", final["error"]
    r = final["result"]
    import yaml  # nbs = batch: one optimizer step per batch (no accumulation)
    args = yaml.safe_load((ws.root / "runs" / f"train{r['run_id']:05d}" / "ultralytics" / "args.yaml").read_text())
    assert args["nbs"] == 8 and args["batch"] == 8
    assert r["test_eval"] is None and r["metrics"]["images"] == 0 and "AP50" not in r["metrics"]
    assert r["metrics"]["val"]["images"] == 6 and 0 <= r["metrics"]["val"]["AP50"] <= 1
    before = YOLO(params["weights"], task="pose").model.state_dict()
    after = YOLO(r["weights"], task="pose").model.state_dict()
    head = max(int(k.split(".")[1]) for k in before)
    changed = {k for k in before
               if before[k].is_floating_point() and not torch.equal(before[k], after[k].to(before[k].dtype))}
    assert changed and all(k.startswith(f"model.{head}.cv4.") for k in changed), sorted(changed)[:5]
    with pytest.raises(RealcalError, match="unknown freeze preset"):
        resolve_params(ws, m["id"], {"freeze": "everything"})
    with pytest.raises(RealcalError, match="nbs"):
        resolve_params(ws, m["id"], {"nbs": 0})


def test_frozen_batchnorm_statistics_stay_pretrained_while_weights_train(ws, lspet):
    """bn_stats: frozen keeps every BatchNorm's running mean/variance at the pretrained values (small-batch
    fine-tuning); the convolutions and the BatchNorm scale/shift still train. The default moves them."""
    import torch
    from ultralytics import YOLO

    from engine.train.train import resolve_params

    run_import(ws, parse("lsp", lspet), limit=16, split="train")
    run_import(ws, parse("lsp", lspet), ids=[f"im{i:05d}.jpg" for i in range(100, 104)], split="val")
    m = build_manifest(ws, {"real_train": {"count": 16, "seed": 0}})
    moved = {}
    for bn in ("frozen", "train"):
        params = resolve_params(ws, m["id"], {"epochs": 1, "imgsz": 96, "batch": 8, "device": "cpu", "freeze": 0,
                                              "lr0": 0.001, "nbs": 8, "bn_stats": bn})
        final = jobs.run_foreground(ws, "train", params)
        assert final["status"] == "done", final["error"]
        before = YOLO(params["weights"], task="pose").model.state_dict()
        after = YOLO(final["result"]["weights"], task="pose").model.state_dict()
        stats_keys = [k for k in before if k.endswith(("running_mean", "running_var"))]
        moved[bn] = [k for k in stats_keys if not torch.allclose(before[k].float(), after[k].float())]
        conv = [k for k in before if k.endswith("conv.weight")]
        assert any(not torch.allclose(before[k].float(), after[k].float()) for k in conv)   # weights trained
    assert moved["frozen"] == [] and moved["train"]
    with pytest.raises(RealcalError, match="bn_stats: 'off' is not one of 'train', 'frozen'"):
        resolve_params(ws, m["id"], {"bn_stats": "off"})


def test_checkpoint_last_trains_without_looking_at_val(ws, lspet):
    """checkpoint: last validates no epoch during training and keeps the last one; val is scored once at the end."""
    from engine.train.train import resolve_params

    run_import(ws, parse("lsp", lspet), limit=8, split="train")
    run_import(ws, parse("lsp", lspet), ids=[f"im{i:05d}.jpg" for i in range(100, 104)], split="val")
    m = build_manifest(ws, {"real_train": {"count": 8, "seed": 0}})
    params = resolve_params(ws, m["id"], {"epochs": 2, "imgsz": 96, "batch": 8, "device": "cpu", "nbs": 8,
                                          "checkpoint": "last"})
    final = jobs.run_foreground(ws, "train", params)
    assert final["status"] == "done", final["error"]
    r = final["result"]
    assert r["weights"].endswith("last.pt") and r["metrics"]["val"]["images"] == 4
    import csv

    rows = list(csv.DictReader(open(ws.root / "runs" / f"train{r['run_id']:05d}" / "ultralytics" / "results.csv")))
    maps = [float(row["metrics/mAP50(P)"]) for row in rows]
    assert len(rows) == 2 and maps[0] == 0.0          # epoch 1 was not validated
    with pytest.raises(RealcalError, match="checkpoint: 'middle' is not one of 'best', 'last'"):
        resolve_params(ws, m["id"], {"checkpoint": "middle"})


def test_val_period_validates_every_kth_epoch_and_the_last_and_keeps_the_best_of_those(ws, lspet):
    from engine.train.train import resolve_params, validated_epoch

    assert [e for e in range(1, 8) if validated_epoch(e, 7, 3)] == [3, 6, 7]
    run_import(ws, parse("lsp", lspet), limit=8, split="train")
    run_import(ws, parse("lsp", lspet), ids=[f"im{i:05d}.jpg" for i in range(100, 104)], split="val")
    m = build_manifest(ws, {"real_train": {"count": 8, "seed": 0}})
    params = resolve_params(ws, m["id"], {"epochs": 3, "imgsz": 96, "batch": 8, "device": "cpu", "nbs": 8,
                                          "val_period": 2})
    final = jobs.run_foreground(ws, "train", params)
    assert final["status"] == "done", final["error"]
    r = final["result"]
    assert r["weights"].endswith("best.pt")
    with ws.connect() as db:
        curves = store_training.run(db, r["run_id"])["curves"]
    assert [c["epoch"] for c in curves] == [1, 2, 3]
    assert curves[0]["metrics/mAP50(P)"] is None                     # not validated: no figures repeated
    assert curves[1]["metrics/mAP50(P)"] is not None and curves[2]["metrics/mAP50(P)"] is not None
    import torch

    best = torch.load(r["weights"], map_location="cpu", weights_only=False)["train_metrics"]
    assert best["fitness"] is not None                                # saved at a validated epoch
    assert best["metrics/mAP50(P)"] in {curves[1]["metrics/mAP50(P)"], curves[2]["metrics/mAP50(P)"]}
    with pytest.raises(RealcalError, match="val_period must be within"):
        resolve_params(ws, m["id"], {"val_period": 0})


def test_excluded_images_stay_out_of_manifests_and_val_test_cannot_be_excluded(tws):
    from click.testing import CliRunner

    from engine.cli import main
    from engine.train.manifest import anchor_pool, exclude, include
    from store import images as store_images

    with tws.connect() as db:
        train = [im["id"] for im in store_images.list_images(db, kinds=["real"], splits=["train"])]
        held = [im["id"] for im in store_images.list_images(db, kinds=["real"], splits=["val", "test"])]
    spec = {"real_train": {"count": None, "seed": 0}, "synthetic": {"pool": "none"}}
    before = build_manifest(tws, spec)
    assert exclude(tws, [train[0], train[0]], reason="blurry") == {"excluded": 1, "already": 0}
    assert exclude(tws, [train[0]]) == {"excluded": 0, "already": 1}
    after = build_manifest(tws, spec)
    assert after["new"] and after["counts"]["train_real"] == before["counts"]["train_real"] - 1
    assert train[0] not in anchor_pool(tws, None, 0)
    with pytest.raises(RealcalError, match="val/test images.*cannot be excluded"):
        exclude(tws, [train[1], held[0]])
    with pytest.raises(RealcalError, match="no image 99999"):
        exclude(tws, [99999])
    with tws.connect() as db:
        assert store_training.excluded_image_ids(db) == {train[0]}     # a refused call changed nothing
    r = CliRunner().invoke(main, ["-w", str(tws.root), "include", str(train[0]), "12345"])
    assert r.exit_code == 0 and "included 1 image(s) again; 1 were not excluded" in r.output, r.output
    assert build_manifest(tws, spec)["id"] == before["id"]             # the same selection, the same manifest
    r = CliRunner().invoke(main, ["-w", str(tws.root), "exclude", str(held[0])])
    assert r.exit_code == 1 and "cannot be excluded" in r.output
    assert include(tws, [train[0]]) == {"included": 0, "not_excluded": 1}


def test_unannotated_people_found_do_not_depend_on_what_was_cached_before(ws, lspet):
    """The teacher's boxes for an image are a function of that image: the same whether it is predicted among
    others, alone, or after other images were cached (a run's masks must not depend on the workspace's history)."""
    import json

    from engine.train.evaluate import unannotated_regions
    from engine.train.train import split_items

    run_import(ws, parse("lsp", lspet), limit=10, split="train")
    m = build_manifest(ws, {"real_train": {"count": 10, "seed": 0}})
    with ws.connect() as db:
        images, persons = split_items(db, store_training.manifest(db, m["id"]), "train")
    cache = next((ws.root / "cache").glob("unannotated-*"), None) if (ws.root / "cache").exists() else None
    assert cache is None

    def boxes(batch: list[dict]) -> dict:
        unannotated_regions(ws, batch, persons, device="cpu", conf=0.05)
        return json.loads(next((ws.root / "cache").glob("unannotated-*")).read_text())

    assert len({(im["width"], im["height"]) for im in images}) == len(images)     # LSPET: every image its own shape
    together = boxes(images)                                    # the teacher's batches: 8 images, then 2
    assert sum(len(v) for v in together.values()) > 0          # low confidence: the teacher finds something
    for f in (ws.root / "cache").glob("unannotated-*"):
        f.unlink()
    boxes(images[:9])                                           # another history: 8 and then one image alone,
    assert boxes(images) == together                            # then the last one alone
