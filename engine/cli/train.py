"""``manifest build|list|export`` and ``train``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from engine.cli.base import State, main, pass_state


@main.group()
def manifest() -> None:
    """Immutable, hashed training sets (real anchors + a synthetic pool + real val/test)."""


@manifest.command("build")
@click.option("--real-count", type=int, help="Real train images (default: all labelled ones).")
@click.option("--real-seed", type=int, default=0, show_default=True)
@click.option("--pool", type=click.Choice(["none", "accepted", "curated", "random", "unfiltered"]),
              default="none", show_default=True, help="Where synthetic images come from.")
@click.option("--synthetic-count", type=int, help="Synthetic images (default: the whole pool).")
@click.option("--synthetic-seed", type=int, default=0, show_default=True)
@pass_state
def manifest_build(state: State, real_count, real_seed, pool, synthetic_count, synthetic_seed) -> None:
    """Snapshot a training set; the same selection always gives the same manifest."""
    from engine.train.manifest import build_manifest

    r = build_manifest(state.workspace(), {
        "real_train": {"count": real_count, "seed": real_seed},
        "synthetic": {"pool": pool, "count": synthetic_count, "seed": synthetic_seed}})
    click.echo(f"manifest {r['id']} ({'new' if r['new'] else 'existing'}, {r['hash'][:12]}): "
               + ", ".join(f"{k} {v}" for k, v in r["counts"].items()))


@manifest.command("list")
@pass_state
def manifest_list(state: State) -> None:
    from store import training as store_training

    db = state.workspace().connect()
    try:
        rows = store_training.list_manifests(db)
    finally:
        db.close()
    for m in rows:
        click.echo(f"{m['id']:>4}  {m['hash'][:12]}  {json.dumps(m['counts'])}  {m['created_at'][:19]}")
    if not rows:
        click.echo("no manifests yet: `realcal manifest build`")


@manifest.command("export")
@click.argument("manifest_id", type=int)
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@pass_state
def manifest_export(state: State, manifest_id, out) -> None:
    """Write a manifest as an Ultralytics YOLO-pose folder."""
    from engine.train.manifest import export_yolo

    click.echo(f"written {export_yolo(state.workspace(), manifest_id, out)}")


def _parse_freeze(value):
    from engine.train.train import parse_freeze

    return parse_freeze(value)


@main.command()
@click.option("--manifest", "manifest_id", type=int, required=True)
@click.option("--epochs", type=int)
@click.option("--imgsz", type=int)
@click.option("--batch", type=int)
@click.option("--lr0", type=float)
@click.option("--nbs", type=int, help="Nominal batch: one optimizer step every round(nbs/batch) batches "
                                     "(Ultralytics' 64; set it to --batch for a step per batch).")
@click.option("--freeze", callback=lambda ctx, param, v: _parse_freeze(v),
              help="Layers to freeze: a count (10), a comma list (0,1,23.cv2) or keypoint-branch.")
@click.option("--seed", type=int)
@click.option("--model", help="Asset name, .pt path or model .yaml (default yolo11n-pose).")
@click.option("--device")
@click.option("--protocol", type=click.Choice(["auto", "coco", "annotated_person"]),
              help="Evaluation protocol (default auto: annotated_person for LSP imports, else coco).")
@click.option("--checkpoint", type=click.Choice(["best", "last"]),
              help="best: the epoch best on val (default); last: no validation during training, the last epoch.")
@click.option("--val-period", type=int,
              help="checkpoint best: validate every k epochs and the last (default 1); best is chosen among those.")
@click.option("--threads", type=int,
              help="CPU threads for training and evaluation: -1 = Ultralytics' choice, cores - 1 (default); 0 = every "
                   "core (faster on an idle machine, much slower on a busy one).")
@click.option("--bn-stats", type=click.Choice(["train", "frozen"]),
              help="frozen: BatchNorm layers keep their pretrained running statistics.")
@click.option("--schedule", "schedule_kind", type=click.Choice(["union", "weighted", "synthetic_first"]),
              help="union (default): real and synthetic shuffled together; weighted: a set synthetic share per "
                   "epoch (--synthetic-fraction); synthetic_first: pre-train on synthetic, then fine-tune on real.")
@click.option("--synthetic-fraction", type=float, help="weighted: the synthetic share of every epoch (0..1).")
@click.option("--pretrain-epochs", type=int, help="synthetic_first: epochs on the synthetic images "
                                                   "(--epochs is the real fine-tuning stage).")
@click.option("--pretrain-lr0", type=float, help="synthetic_first: the pre-training learning rate (default --lr0).")
@click.option("--background", is_flag=True, help="Only queue the job for the worker.")
@click.option("--json", "as_json", is_flag=True, help="Print the finished run's result as JSON.")
@pass_state
def train(state: State, manifest_id, epochs, imgsz, batch, lr0, nbs, freeze, seed, model, device, protocol,
          checkpoint, val_period, threads, bn_stats, schedule_kind, synthetic_fraction, pretrain_epochs, pretrain_lr0,
          background, as_json) -> None:
    """Fine-tune YOLO-pose on a manifest (low-data recipe by default); score the test split once."""
    from engine.cli.jobs import run_or_queue
    from engine.train.train import resolve_params

    ws = state.workspace()
    schedule = {k: v for k, v in {"kind": schedule_kind, "synthetic_fraction": synthetic_fraction,
                                  "pretrain_epochs": pretrain_epochs, "pretrain_lr0": pretrain_lr0}.items()
                if v is not None}
    if schedule and "kind" not in schedule:
        raise click.UsageError("--synthetic-fraction and --pretrain-* need --schedule weighted|synthetic_first")
    params = resolve_params(ws, manifest_id, {"epochs": epochs, "imgsz": imgsz, "batch": batch, "lr0": lr0, "nbs": nbs,
                                              "freeze": freeze, "seed": seed, "model": model, "device": device,
                                              "protocol": protocol, "checkpoint": checkpoint, "bn_stats": bn_stats,
                                              "val_period": val_period, "threads": threads,
                                              "schedule": schedule or None})
    from engine.train.train import load_manifest, manifest_step_plan

    with ws.connect() as db:
        counts = load_manifest(db, manifest_id)["counts"]
    plan = manifest_step_plan(counts, params)
    click.echo(plan["text"])
    if plan["warning"]:
        click.echo(f"warning: {plan['warning']}", err=True)
    final = run_or_queue(ws, "train", params, background, "train")
    if final and as_json:
        import json

        click.echo(json.dumps(final["result"], default=str))
    elif final:
        r = final["result"]
        m = r["metrics"]
        scored = m if m.get("AP50") is not None else m.get("val", {})
        which = "test" if scored is m else "val (no test split)"
        click.echo(f"training run {r['run_id']}: {r['epochs']} epochs; {which} AP {scored.get('AP') or 0:.3f}, "
                   f"AP50 {scored.get('AP50') or 0:.3f}, PCK@0.2 {scored.get('PCK@0.2') or 0:.3f}; "
                   f"weights {r['weights']}")


@main.group()
def model() -> None:
    """Trained models: list them, export them."""


@model.command("list")
@pass_state
def model_list(state: State) -> None:
    from store import training as store_training

    db = state.workspace().connect()
    try:
        rows = store_training.list_runs(db)
    finally:
        db.close()
    for r in rows:
        m = r["metrics"] or {}
        click.echo(f"{r['id']:>4}  {r['status']:<11} manifest {r['manifest_id']:>4}  "
                   f"test AP50 {m.get('AP50', float('nan')):.3f}  {r['created_at'][:19]}")
    if not rows:
        click.echo("no training runs yet: `realcal train --manifest ID`")


@model.command("export")
@click.argument("run_id", type=int)
@click.option("--format", "fmt", type=click.Choice(["pt", "onnx"]), default="pt", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Copy the file here.")
@pass_state
def model_export(state: State, run_id, fmt, out) -> None:
    """The trained model of a run as .pt or ONNX."""
    import shutil

    from engine.train.train import export_model

    path = export_model(state.workspace(), run_id, fmt)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
        path = out
    click.echo(f"written {path}")
