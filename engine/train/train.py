"""The ``train`` job: Ultralytics YOLO-pose on a manifest, progress per epoch, test evaluation.

The default recipe is the low-data fine-tuning one the LSPET benchmark chose on val (nothing frozen,
AdamW lr0=5e-5, batch 8 with one optimizer step per batch (nbs 8), mosaic 0, warmup 0, imgsz 320), not
Ultralytics' defaults. With
``checkpoint: best`` the epoch Ultralytics scores best on **val** is kept; with ``checkpoint: last`` no
epoch is validated and the last is kept. The kept weights are scored on val and once on **test** under
the run's evaluation protocol (``engine.train.protocols``), and the run records what made it
(``engine.provenance``). Progress comes from Ultralytics' ``on_train_epoch_end`` callback; a cancel
stops training there.
"""
from __future__ import annotations

import contextlib
import csv
import time
import warnings
from pathlib import Path
from typing import Any

from engine import assets, config
from engine.errors import RealcalError
from engine.jobs import JobContext, job_kind
from engine.train.recipe import RECIPE_KEYS, Recipe, check_freeze, step_plan
from engine.train.schedule import Schedule
from engine.train.schedule import from_arm as schedule_from_arm
from engine.workspace import Workspace
from store import images as store_images
from store import training as store_training
from store.db import write_transaction

# The recipe's fields, defaults and checks live in engine/train/recipe.py (one type from the experiment file to
# model.train); RECIPE is its defaults as a mapping (for forms and reports).
RECIPE: dict[str, Any] = Recipe().as_dict()
__all__ = ["RECIPE", "Recipe", "RECIPE_KEYS", "step_plan", "manifest_step_plan", "resolve_params", "run"]


def _freeze_bn_stats(trainer) -> None:
    """Ultralytics puts the model in train mode every epoch; put every BatchNorm back in eval mode before each
    batch, so its running statistics stay the pretrained ones (its scale and shift still train)."""
    import torch

    for m in trainer.model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


def validated_epoch(epoch: int, epochs: int, period: int) -> bool:
    """Whether 1-based ``epoch`` of ``epochs`` is validated with ``val_period`` ``period``: every
    ``period``-th epoch and the last."""
    return epoch % period == 0 or epoch >= epochs


def manifest_step_plan(counts: dict, params: dict[str, Any]) -> dict[str, Any]:
    """The optimizer steps resolved training ``params`` take on a manifest with these stored ``counts``:
    ``step_plan``'s text and warning, with every stage of the run's schedule (``engine.train.schedule``)."""
    from engine.train.manifest import train_images
    from engine.train.schedule import plan as schedule_plan

    out = step_plan(train_images(counts), int(params["epochs"]), int(params["batch"]), int(params["nbs"]))
    sched = Schedule.from_dict(params.get("schedule") or {})
    if sched.kind != "union":
        recipe = Recipe.from_dict({k: v for k, v in params.items() if k in RECIPE_KEYS})
        sp = schedule_plan(sched, recipe, int(counts.get("train_real", 0)), int(counts.get("train_synthetic", 0)))
        out = {**out, "steps": sp["steps"], "text": sp["text"], "stages": sp["stages"],
               "warning": out["warning"] if sp["steps"] < 100 else None}
    return out


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

    unknown = set(overrides or {}) - set(RECIPE_KEYS) - {"device", "protocol", "schedule"}
    if unknown:
        raise RealcalError(f"unknown training option(s) {', '.join(sorted(unknown))}; valid: {', '.join(RECIPE_KEYS)}, "
                           f"device, protocol, schedule")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    recipe = Recipe.from_dict({k: v for k, v in given.items() if k in RECIPE_KEYS})
    params = {**recipe.as_dict(), "protocol": given.get("protocol", "auto")}
    sched = schedule_from_arm(given.get("schedule"), "schedule")
    if sched.kind != "union":       # a flat union records nothing extra (older runs compare equal)
        params["schedule"] = sched.as_dict()
    if "device" in given:
        params["device"] = given["device"]
    protocols.check(params["protocol"])
    with ws.connect() as db:
        if store_training.manifest(db, manifest_id) is None:
            raise RealcalError(f"no manifest {manifest_id}")
        params.setdefault("device", config.resolve(db)["device"])
    m = str(params["model"])
    if m.endswith((".yaml", ".yml")):
        params["weights"] = m
    else:
        params["weights"] = str(assets.resolve(m) if m in assets.ASSETS
                                else assets.resolve("yolo11n-pose", explicit=m))
    params["manifest_id"] = manifest_id
    return params


@contextlib.contextmanager
def cpu_threads(threads: int):
    """Training and evaluation on the CPU with ``threads`` threads (0: every core; -1: Ultralytics' own choice,
    cores - 1 capped at 8, which is one thread on a 2-core machine). Ultralytics sets torch's thread count
    whenever it selects a device (each ``train`` and ``predict``), so its setting is what is changed, and
    both are put back afterwards. Yields the count in effect."""
    import os

    import torch
    from ultralytics.utils import torch_utils

    before, before_torch = torch_utils.NUM_THREADS, torch.get_num_threads()
    if threads != -1:
        torch_utils.NUM_THREADS = int(threads) if threads > 0 else (os.cpu_count() or 1)
    try:
        yield torch_utils.NUM_THREADS
    finally:
        torch_utils.NUM_THREADS = before
        torch.set_num_threads(before_torch)


@job_kind("train", title="Train YOLO-pose")
def run(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    # a job queued before `threads` existed trains as it would have then (Ultralytics' choice)
    with cpu_threads(int(params.get("threads", -1))) as threads:
        return _run(ctx, params, threads)


def _run(ctx: JobContext, params: dict[str, Any], threads: int) -> dict[str, Any]:
    from ultralytics import YOLO

    from engine import provenance
    from engine.train.evaluate import evaluate
    from engine.train.manifest import export_yolo, train_kinds
    from engine.train.schedule import plan as schedule_plan
    from engine.train.schedule import repeats as schedule_repeats

    ws = ctx.ws
    clock = {"start": time.perf_counter(), "epoch_end": 0.0, "between_epochs": 0.0}
    with ws.connect() as db:
        # what made this run, recorded where it trains (a queued job may run under other code than queued it)
        params = {**params, **provenance.record(),
                  "manifest_hash": (store_training.manifest(db, params["manifest_id"]) or {}).get("hash")}
        with write_transaction(db):
            store_training.mark_interrupted(db)
            run_id = store_training.create_run(db, ctx.job_id, params["manifest_id"], params)
    run_dir = ws.root / "runs" / f"train{run_id:05d}"
    regions = None
    if params.get("mask_unannotated", True):
        from engine.train.evaluate import unannotated_regions

        with ws.connect() as db:
            m = load_manifest(db, params["manifest_id"])
            real_ids = {im["id"] for im in store_images.list_images(db, kinds=["real"], splits=["train"])}
            images, persons = split_items(db, m, "train")
        images = [im for im in images if im["id"] in real_ids]
        ctx.progress(0, int(params["epochs"]), f"finding unannotated people in {len(images)} real train images",
                     force=True)
        regions = unannotated_regions(ws, images, persons, device=config.resolve_device(params["device"]))
    recipe = Recipe.from_dict({k: v for k, v in params.items() if k in RECIPE_KEYS})
    sched = Schedule.from_dict(params.get("schedule") or {})
    by_kind = train_kinds(ws, params["manifest_id"])
    stages = schedule_plan(sched, recipe, len(by_kind["real"]), len(by_kind["synthetic"]))["stages"]
    if sched.kind == "synthetic_first":
        fit_data = [export_yolo(ws, params["manifest_id"], run_dir / "data_pretrain", kinds={"synthetic"}),
                    export_yolo(ws, params["manifest_id"], run_dir / "data", mask_regions=regions, kinds={"real"})]
    else:
        copies = (schedule_repeats(by_kind["real"], by_kind["synthetic"], sched.synthetic_fraction, recipe.seed)
                  if sched.kind == "weighted" else None)
        fit_data = [export_yolo(ws, params["manifest_id"], run_dir / "data", mask_regions=regions, repeats=copies)]
    device = config.resolve_device(params["device"])
    epochs = sum(st["epochs"] for st in stages)
    clock["prepared"] = time.perf_counter()
    weights = params["weights"]
    curves: list[dict] = []
    for n, (st, data_yaml) in enumerate(zip(stages, fit_data)):
        last_stage = n == len(stages) - 1
        stage_recipe = recipe.replace(epochs=st["epochs"], lr0=st["lr0"])
        offset = sum(s["epochs"] for s in stages[:n])
        model = YOLO(weights, task="pose")

        periodic = last_stage and recipe.checkpoint == "best" and recipe.val_period > 1

        def on_epoch_end(trainer, offset=offset, name=st["stage"], periodic=periodic):
            losses = (trainer.label_loss_items(trainer.tloss, prefix="train")
                      if getattr(trainer, "tloss", None) is not None else {})
            text = ", ".join(f"{k.split('/')[-1]} {float(v):.3f}" for k, v in (losses or {}).items())
            done = offset + trainer.epoch + 1
            ctx.progress(done, epochs, (f"{name}: " if len(stages) > 1 else "") + f"epoch {done}/{epochs}"
                         + (f": {text}" if text else ""))
            if periodic:
                # Ultralytics validates after this callback when args.val (and always at the last epoch); an
                # epoch left unvalidated gets no fitness, so it can never replace the best validated weights
                trainer.args.val = validated_epoch(trainer.epoch + 1, trainer.epochs, recipe.val_period)
                if not trainer.args.val:
                    trainer.fitness = None

        def on_fit_epoch_end(trainer):
            # between the end of an epoch's training and here: Ultralytics' validation and checkpoint saving
            clock["between_epochs"] += time.perf_counter() - clock["epoch_end"]

        def mark_epoch_end(trainer):
            clock["epoch_end"] = time.perf_counter()

        model.add_callback("on_train_epoch_end", on_epoch_end)
        model.add_callback("on_train_epoch_end", mark_epoch_end)
        model.add_callback("on_fit_epoch_end", on_fit_epoch_end)
        if recipe.bn_stats == "frozen":
            model.add_callback("on_train_batch_start", _freeze_bn_stats)
        ctx.progress(offset, epochs, f"training ({st['stage']})" if len(stages) > 1 else "training", force=True)
        args = stage_recipe.ultralytics_args()
        if not last_stage:
            args["val"] = False       # an earlier stage keeps its last weights: nothing to choose on val
        name = "ultralytics" if last_stage else st["stage"]
        try:
            with warnings.catch_warnings():
                # Ultralytics' Ray Tune callback (active because ray is installed) asks Ray for a trial id at
                # every epoch and Ray warns when training is not run by a Tuner; nothing is wrong.
                warnings.filterwarnings("ignore", message=".*get_trial_id.*")
                model.train(data=str(data_yaml), **args, freeze=freeze_layers(model, recipe.freeze),
                            deterministic=True, plots=False, project=str(run_dir), name=name, exist_ok=True,
                            workers=0, device=device, amp=device.startswith("cuda"), verbose=False)
        except Exception:
            with ws.connect() as db:
                with write_transaction(db):
                    store_training.finish_run(db, run_id, status="failed", weights=None, curves=None, metrics=None)
            raise
        stage_out = run_dir / name
        if (stage_out / "results.csv").exists():
            with open(stage_out / "results.csv") as fh:
                stage_rows = [{k.strip(): _num(v) for k, v in row.items()} for row in csv.DictReader(fh)]
            if periodic:          # Ultralytics repeats the last validation's figures on the epochs between
                stage_rows = [r if validated_epoch(i + 1, len(stage_rows), recipe.val_period) else
                              {k: (None if k.startswith(("metrics/", "val/")) else v) for k, v in r.items()}
                              for i, r in enumerate(stage_rows)]
            if len(stages) > 1:
                stage_rows = [{**r, "stage": st["stage"], "epoch": offset + int(r.get("epoch") or i + 1)}
                              for i, r in enumerate(stage_rows)]
            curves.extend(stage_rows)
        weights = str(stage_out / "weights" / "last.pt")
    clock["trained"] = time.perf_counter()
    out = run_dir / "ultralytics"
    best = out / "weights" / ("last.pt" if recipe.checkpoint == "last" else "best.pt")
    if not best.exists():
        best = out / "weights" / "last.pt"
    with ws.connect() as db:
        m = load_manifest(db, params["manifest_id"])
        splits = {s: split_items(db, m, s) for s in ("val", "test")}
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
    metrics["timings"] = {**run_timings(clock, time.perf_counter()), "cpu_threads": threads}
    with ws.connect() as db:
        with write_transaction(db):
            store_training.put_eval_rows(db, run_id, rows)
            store_training.finish_run(db, run_id, status="done", weights=str(best), curves=curves, metrics=metrics)
    return {"run_id": run_id, "weights": str(best), "metrics": metrics, "epochs": len(curves),
            "test_eval": str(test_eval) if test_eval else None,
            "val_eval": str(run_dir / "val_eval.json.gz") if splits["val"][0] else None}


def run_timings(clock: dict[str, float], end: float) -> dict[str, float]:
    """Where a run's wall time went (seconds): ``prepare`` (recording, ignore regions, dataset export),
    ``train`` (Ultralytics' fit, including its ``validate_and_save`` share: per-epoch validation and
    checkpoints), ``evaluate`` (val and test scoring, bootstrap) and ``overhead_share``: everything but the
    optimisation itself (prepare + validate_and_save + evaluate) as a fraction of the whole."""
    prepare = clock["prepared"] - clock["start"]
    train = clock["trained"] - clock["prepared"]
    evaluate = end - clock["trained"]
    between = clock["between_epochs"]
    total = end - clock["start"]
    return {"prepare": round(prepare, 2), "train": round(train, 2), "validate_and_save": round(between, 2),
            "evaluate": round(evaluate, 2), "total": round(total, 2),
            "overhead_share": round((prepare + between + evaluate) / total, 4) if total > 0 else 0.0}


def export_model(ws: Workspace, run_id: int, fmt: str = "pt") -> Path:
    """The trained model of a finished run as ``.pt`` (Ultralytics checkpoint) or ``.onnx``.

    ONNX goes through Ultralytics' exporter (static shape at the run's image size, no simplifier,
    needs the ``onnx`` package) and is made once, next to the weights."""
    from pathlib import Path

    with ws.connect() as db:
        r = store_training.run(db, run_id)
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


def load_manifest(db, manifest_id: int) -> dict:
    """The stored manifest, or a clear error when there is none with this id."""
    m = store_training.manifest(db, manifest_id)
    if m is None:
        raise RealcalError(f"no manifest {manifest_id} in this workspace (see `realcal manifest list`)")
    return m


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
