"""The ``train`` job: Ultralytics YOLO-pose on a manifest, progress per epoch, test evaluation.

The default recipe is the low-data fine-tuning one measured not to wreck the pretrained model
(freeze=10, AdamW lr0=2e-4, mosaic 0, warmup 0, imgsz 320), not Ultralytics' defaults. With
``checkpoint: best`` the epoch Ultralytics scores best on **val** is kept; with ``checkpoint: last`` no
epoch is validated and the last is kept. The kept weights are scored on val and once on **test** under
the run's evaluation protocol (``engine.train.protocols``), and the run records what made it
(``engine.provenance``). Progress comes from Ultralytics' ``on_train_epoch_end`` callback; a cancel
stops training there.
"""
from __future__ import annotations

import csv
import math
import warnings
from typing import Any

from engine import assets, config
from engine.errors import RealcalError
from engine.jobs import JobContext, job_kind
from engine.workspace import Workspace
from store import images as store_images
from store import training as store_training
from store.db import write_transaction

RECIPE: dict[str, Any] = {
    "model": "yolo11n-pose",     # an asset name, a .pt path, or a model .yaml (from scratch)
    "epochs": 10, "imgsz": 320, "batch": 16, "lr0": 2e-4, "optimizer": "AdamW", "freeze": 10,
    "mosaic": 0.0, "warmup_epochs": 0.0, "seed": 0, "patience": 100,
    "nbs": 64,                   # Ultralytics' nominal batch: one optimizer step every round(nbs / batch) batches
    "mask_unannotated": True,    # fill people the teacher finds but nobody labelled in real train images
    "bn_stats": "train",         # "frozen": BatchNorm keeps the pretrained running statistics (small batches)
    "checkpoint": "best",        # "best": the epoch Ultralytics scores best on val; "last": no per-epoch validation
}
BN_STATS = ("train", "frozen")
CHECKPOINTS = {
    "best": "validate every epoch and keep the epoch that scores best on val (the val figures are then optimistic: "
            "val chose the epoch)",
    "last": "no validation during training; keep the last epoch (val stays untouched until it is scored once; "
            "cheaper on a CPU)",
}


FREEZE_PRESETS = {
    "keypoint-branch": "everything but the pose head's keypoint branch: backbone, neck and the head's box and "
                       "class branches keep their pretrained weights (and BatchNorm statistics)",
}


def check_freeze(value: Any) -> None:
    """``freeze`` is a layer count (int), a list of layers/sub-modules (``[0, 1, "23.cv2"]``) or a preset."""
    import re

    if isinstance(value, bool):
        raise RealcalError("freeze must be a number of layers, a list of layers or a preset, not true/false")
    if isinstance(value, int):
        if not 0 <= value <= 1000:
            raise RealcalError("freeze must be within 0..1000 layers")
        return
    if isinstance(value, str):
        if value not in FREEZE_PRESETS:
            raise RealcalError(f"unknown freeze preset {value!r}; valid: {', '.join(FREEZE_PRESETS)}, "
                               f"a number of layers, or a list of layers")
        return
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                       or isinstance(v, str) and re.fullmatch(r"\d+(\.\w+)*", v) for v in value):
        return
    raise RealcalError(f"freeze {value!r}: expected a number of layers, a list such as [0, 1, \"23.cv2\"], "
                       f"or one of {', '.join(FREEZE_PRESETS)}")


def check_nbs(value: Any) -> None:
    """``nbs``, Ultralytics' nominal batch size: a whole number of images, 1..4096."""
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()) \
            or not 1 <= value <= 4096:
        raise RealcalError(f"nbs (nominal batch size) must be within 1..4096 images, got {value!r}")


def check_checkpoint(value: Any) -> None:
    if value not in CHECKPOINTS:
        raise RealcalError(f"checkpoint must be one of {', '.join(CHECKPOINTS)} (best: the epoch best on val; last: the "
                           f"last epoch, no validation during training), got {value!r}")


def check_bn_stats(value: Any) -> None:
    if value not in BN_STATS:
        raise RealcalError(f"bn_stats must be one of {', '.join(BN_STATS)} (frozen: BatchNorm layers keep their "
                           f"pretrained running statistics while their weights train), got {value!r}")


def _freeze_bn_stats(trainer) -> None:
    """Ultralytics puts the model in train mode every epoch; put every BatchNorm back in eval mode before each
    batch, so its running statistics stay the pretrained ones (its scale and shift still train)."""
    import torch

    for m in trainer.model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


def step_plan(n_train: int, epochs: int, batch: int, nbs: int) -> dict[str, Any]:
    """How many optimizer steps a run takes: Ultralytics steps once every ``max(round(nbs / batch), 1)`` batches.

    ``warning`` is set when the run is too short to move a pretrained model much (fewer than 100 steps):
    with the default nominal batch of 64, 10 epochs of 100 images at batch 16 are only 17 steps.
    """
    batches = max(1, math.ceil(int(n_train) / int(batch))) * int(epochs)
    accumulate = max(round(int(nbs) / int(batch)), 1)
    steps = batches // accumulate
    text = (f"{n_train} train images, {epochs} epochs at batch {batch}: {batches} batches, one optimizer step every "
            f"{accumulate} batch{'es' if accumulate > 1 else ''} (nbs {nbs}) = {steps} optimizer steps")
    warning = None
    if steps < 100:
        warning = (f"only {steps} optimizer steps: the model will barely move from its starting weights. "
                   + (f"Set nbs to the batch size ({batch}) for {batches} steps, or train longer."
                      if accumulate > 1 else "Train longer (more epochs)."))
    return {"batches": batches, "accumulate": accumulate, "steps": steps, "text": text, "warning": warning}


def manifest_step_plan(counts: dict, params: dict[str, Any]) -> dict[str, Any]:
    """``step_plan`` for resolved training ``params`` on a manifest with these stored ``counts``."""
    from engine.train.manifest import train_images

    return step_plan(train_images(counts), int(params["epochs"]), int(params["batch"]), int(params["nbs"]))


def parse_freeze(value: str | None) -> int | str | list | None:
    """``freeze`` from a text field: "10" -> 10, "0,1,23.cv2" -> [0, 1, "23.cv2"], else the text (a preset)."""
    if value is None:
        return None
    value = str(value).strip()
    if value.isdigit():
        return int(value)
    if "," in value:
        return [int(v.strip()) if v.strip().isdigit() else v.strip() for v in value.split(",") if v.strip()]
    return value


def freeze_layers(model, value: Any) -> int | list:
    """The ``freeze`` argument for Ultralytics (its names match ``model.<entry>.`` prefixes)."""
    check_freeze(value)
    if value == "keypoint-branch":
        layers = model.model.model            # the Sequential of the detection model
        head = len(layers) - 1
        kinds = {n for n, _ in layers[head].named_children()}
        if not {"cv2", "cv3", "cv4"} <= kinds:
            raise RealcalError(f"freeze 'keypoint-branch' needs a pose head with box (cv2), class (cv3) and "
                               f"keypoint (cv4) branches; this model's last layer has {sorted(kinds)}")
        return [*range(head), f"{head}.cv2", f"{head}.cv3"]
    return value


def resolve_params(ws: Workspace, manifest_id: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from engine.train import protocols

    unknown = set(overrides or {}) - set(RECIPE) - {"device", "protocol"}
    if unknown:
        raise RealcalError(f"unknown training option(s) {', '.join(sorted(unknown))}; valid: {', '.join(RECIPE)}, "
                           f"device, protocol")
    params = {**RECIPE, "protocol": "auto", **{k: v for k, v in (overrides or {}).items() if v is not None}}
    protocols.check(params["protocol"])
    db = ws.connect()
    try:
        if store_training.manifest(db, manifest_id) is None:
            raise RealcalError(f"no manifest {manifest_id}")
        params.setdefault("device", config.resolve(db)["device"])
    finally:
        db.close()
    if not 1 <= int(params["epochs"]) <= 10_000:
        raise RealcalError("epochs must be within 1..10,000")
    check_freeze(params["freeze"])
    check_nbs(params["nbs"])
    check_bn_stats(params["bn_stats"])
    check_checkpoint(params["checkpoint"])
    m = str(params["model"])
    params["weights"] = m if m.endswith((".yaml", ".yml")) else str(assets.resolve(m) if m in assets.ASSETS else assets.resolve("yolo11n-pose", explicit=m))
    params["manifest_id"] = manifest_id
    return params


@job_kind("train", title="Train YOLO-pose")
def run(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    from ultralytics import YOLO

    from engine.train.evaluate import evaluate
    from engine.train.manifest import export_yolo

    from engine import provenance

    ws = ctx.ws
    db = ws.connect()
    try:
        # what made this run, recorded where it trains (a queued job may run under other code than queued it)
        params = {**params, **provenance.record(),
                  "manifest_hash": (store_training.manifest(db, params["manifest_id"]) or {}).get("hash")}
        with write_transaction(db):
            store_training.mark_interrupted(db)
            run_id = store_training.create_run(db, ctx.job_id, params["manifest_id"], params)
    finally:
        db.close()
    run_dir = ws.root / "runs" / f"train{run_id:05d}"
    regions = None
    if params.get("mask_unannotated", True):
        from engine.train.evaluate import unannotated_regions

        db = ws.connect()
        try:
            m = store_training.manifest(db, params["manifest_id"])
            real_ids = {im["id"] for im in store_images.list_images(db, kinds=["real"], splits=["train"])}
            images, persons = split_items(db, m, "train")
        finally:
            db.close()
        images = [im for im in images if im["id"] in real_ids]
        ctx.progress(0, int(params["epochs"]), f"finding unannotated people in {len(images)} real train images",
                     force=True)
        regions = unannotated_regions(ws, images, persons, device=config.resolve_device(params["device"]))
    data_yaml = export_yolo(ws, params["manifest_id"], run_dir / "data", mask_regions=regions)
    device = config.resolve_device(params["device"])
    epochs = int(params["epochs"])
    model = YOLO(params["weights"], task="pose")

    def on_epoch_end(trainer):
        losses = trainer.label_loss_items(trainer.tloss, prefix="train") if getattr(trainer, "tloss", None) is not None else {}
        text = ", ".join(f"{k.split('/')[-1]} {float(v):.3f}" for k, v in (losses or {}).items())
        ctx.progress(trainer.epoch + 1, epochs, f"epoch {trainer.epoch + 1}/{epochs}" + (f": {text}" if text else ""))

    model.add_callback("on_train_epoch_end", on_epoch_end)
    if params.get("bn_stats", "train") == "frozen":
        model.add_callback("on_train_batch_start", _freeze_bn_stats)
    ctx.progress(0, epochs, "training", force=True)
    try:
        with warnings.catch_warnings():
            # Ultralytics' Ray Tune callback (active because ray is installed) asks Ray for a trial id at
            # every epoch and Ray warns when training is not run by a Tuner; nothing is wrong.
            warnings.filterwarnings("ignore", message=".*get_trial_id.*")
            model.train(data=str(data_yaml), epochs=epochs, imgsz=int(params["imgsz"]), batch=int(params["batch"]),
                        lr0=float(params["lr0"]), optimizer=params["optimizer"], freeze=freeze_layers(model, params["freeze"]),
                        mosaic=float(params["mosaic"]), warmup_epochs=float(params["warmup_epochs"]),
                        seed=int(params["seed"]), nbs=int(params.get("nbs", 64)), deterministic=True, patience=int(params["patience"]),
                        val=params.get("checkpoint", "best") == "best",
                        plots=False, project=str(run_dir), name="ultralytics", exist_ok=True, workers=0,
                        device=device, amp=device.startswith("cuda"), verbose=False)
    except Exception:
        db = ws.connect()
        try:
            with write_transaction(db):
                store_training.finish_run(db, run_id, status="failed", weights=None, curves=None, metrics=None)
        finally:
            db.close()
        raise
    out = run_dir / "ultralytics"
    best = out / "weights" / ("last.pt" if params.get("checkpoint", "best") == "last" else "best.pt")
    if not best.exists():
        best = out / "weights" / "last.pt"
    curves = []
    if (out / "results.csv").exists():
        with open(out / "results.csv") as fh:
            curves = [{k.strip(): _num(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    db = ws.connect()
    try:
        m = store_training.manifest(db, params["manifest_id"])
        splits = {s: split_items(db, m, s) for s in ("val", "test")}
    finally:
        db.close()
    ctx.progress(epochs, epochs, f"evaluating on {len(splits['val'][0])} val and {len(splits['test'][0])} test images",
                 force=True)
    trained = YOLO(str(best), task="pose")
    # a split the manifest does not have is not scored (e.g. a val-only recipe check never touches test)
    protocol = params.get("protocol", "auto")
    val_metrics: dict[str, Any] = {"images": 0}
    if splits["val"][0]:
        val_metrics, _ = evaluate(trained, ws, *splits["val"], imgsz=int(params["imgsz"]), device=device,
                                  protocol=protocol)
        save_coco(run_dir / "val_eval.json.gz", val_metrics.pop("_coco"))
    metrics: dict[str, Any] = {"images": 0}
    rows: list[dict] = []
    test_eval = None
    if splits["test"][0]:
        metrics, rows = evaluate(trained, ws, *splits["test"], imgsz=int(params["imgsz"]), device=device,
                                 protocol=protocol)
        coco = metrics.pop("_coco")
        test_eval = run_dir / "test_eval.json.gz"
        save_coco(test_eval, coco)
        if coco["dets"] and coco["gt"]["annotations"]:
            from engine.stats import bootstrap_ap

            ci = bootstrap_ap(coco["gt"], coco["dets"], n_boot=int(params.get("n_boot", 200)))
            metrics.update({"AP_ci": ci["AP_ci"], "AP50_ci": ci["AP50_ci"], "n_boot": ci["n_boot"]})
    metrics["val"] = val_metrics
    metrics["masked_unannotated_regions"] = sum(len(v) for v in (regions or {}).values())
    db = ws.connect()
    try:
        with write_transaction(db):
            store_training.put_eval_rows(db, run_id, rows)
            store_training.finish_run(db, run_id, status="done", weights=str(best), curves=curves, metrics=metrics)
    finally:
        db.close()
    return {"run_id": run_id, "weights": str(best), "metrics": metrics, "epochs": len(curves),
            "test_eval": str(test_eval) if test_eval else None,
            "val_eval": str(run_dir / "val_eval.json.gz") if splits["val"][0] else None}


def export_model(ws: Workspace, run_id: int, fmt: str = "pt") -> "Path":
    """The trained model of a finished run as ``.pt`` (Ultralytics checkpoint) or ``.onnx``.

    ONNX goes through Ultralytics' exporter (static shape at the run's image size, no simplifier,
    needs the ``onnx`` package) and is made once, next to the weights."""
    from pathlib import Path

    db = ws.connect()
    try:
        r = store_training.run(db, run_id)
    finally:
        db.close()
    if r is None:
        raise RealcalError(f"no training run {run_id}")
    if r["status"] != "done" or not r.get("weights") or not Path(r["weights"]).exists():
        raise RealcalError(f"training run {run_id} has no trained weights (status {r['status']})")
    weights = Path(r["weights"])
    if fmt == "pt":
        return weights
    if fmt != "onnx":
        raise RealcalError(f"unknown model format {fmt!r}; valid: pt, onnx")
    onnx_path = weights.with_suffix(".onnx")
    if not onnx_path.exists():
        try:
            import onnx  # noqa: F401
        except ImportError as e:
            raise RealcalError("ONNX export needs the onnx package: pip install onnx") from e
        from ultralytics import YOLO

        out = YOLO(str(weights), task="pose").export(format="onnx", imgsz=int(r["config"]["imgsz"]),
                                                      simplify=False, dynamic=False, device="cpu", verbose=False)
        if not out or not Path(out).exists():
            raise RealcalError(f"ONNX export of run {run_id} produced no file")
        onnx_path = Path(out)
    return onnx_path


@job_kind("export_model", title="Export a trained model")
def export_job(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.progress(0, 1, f"exporting run {params['run_id']} as {params['format']}", force=True)
    path = export_model(ctx.ws, int(params["run_id"]), params["format"])
    return {"run_id": int(params["run_id"]), "format": params["format"], "path": str(path),
            "bytes": path.stat().st_size}


def save_coco(path, coco: dict) -> None:
    """Test ground truth + detections of one evaluation (for paired AP comparisons later)."""
    import gzip
    import json

    with gzip.open(path, "wt") as fh:
        json.dump(coco, fh)


def load_coco(path) -> dict | None:
    import gzip
    import json
    from pathlib import Path

    if not path or not Path(path).exists():
        return None
    with gzip.open(path, "rt") as fh:
        return json.load(fh)


def split_items(db, manifest: dict, split: str) -> tuple[list[dict], dict[int, list[dict]]]:
    """The manifest's images of one split and, per image, the persons it labels."""
    ids = [it["image_id"] for it in manifest["items"] if it["split"] == split]
    wanted = {pid for it in manifest["items"] if it["split"] == split for pid in it["person_ids"]}
    images = store_images.images_with_ids(db, ids)
    persons = {k: [p for p in v if p["id"] in wanted] for k, v in store_images.persons_for_images(db, ids).items()}
    return images, persons


def _num(v: str):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v
