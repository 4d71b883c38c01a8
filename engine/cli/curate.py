"""``curate`` and ``select``."""
from __future__ import annotations

from pathlib import Path

import click

from engine.cli.base import State, main, pass_state
from engine.errors import RealcalError


@main.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML with batches, embedder, stages (name + params, thresholds fixed or "
                   "{real_percentile: P}) and selection weights.")
@click.option("--background", is_flag=True, help="Only queue the job for the worker.")
@click.option("--executor", type=click.Choice(["local", "ray"]), help="Where batches run (default local).")
@click.option("--ray-address", help="An existing Ray cluster (ray://host:10001 or auto); default: start one here.")
@pass_state
def curate(state: State, config_path, background, executor, ray_address) -> None:
    """Filter synthetic images in stages (calibrated on real train anchors) and rank the survivors."""
    from engine.cli.base import load_config
    from engine.cli.jobs import run_or_queue
    from engine.curate.run import resolve_params

    ws = state.workspace()
    from engine.cli.base import executor_override

    overrides = load_config(config_path, "curation config")
    exe = executor_override(executor, ray_address, None)
    if exe:
        overrides["executor"] = exe
    params = resolve_params(ws, overrides)
    final = run_or_queue(ws, "curate", params, background, "curate")
    if final:
        r = final["result"]
        click.echo(f"curation run {r['run_id']}: {r['kept']} kept in {r['seconds']} s")
        for f in r["funnel"]:
            extra = f", {f['unavailable']} unavailable" if f["unavailable"] else ""
            click.echo(f"  {f['stage']:<18} entered {f['entered']:>6}  passed {f['passed']:>6}  "
                       f"failed {f['failed']:>6}{extra}")
        for batch, m in r["set_metrics"].items():
            click.echo(f"  batch {batch}: " + ", ".join(f"{k} {v:.4g}" for k, v in m.items()
                                                        if isinstance(v, float)))


@main.command()
@click.option("--budget", type=click.IntRange(min=1), required=True, help="How many images to select.")
@click.option("--uncertainty-weight", type=float, default=0.5, show_default=True)
@click.option("--diversity-weight", type=float, default=0.5, show_default=True)
@click.option("--student-weight", type=float, default=0.0, show_default=True,
              help="Weight of the student signals (needs `realcal student-signals` on this curation run).")
@pass_state
def select(state: State, budget, uncertainty_weight, diversity_weight, student_weight) -> None:
    """Select a budget of the latest curation run's survivors by uncertainty and diversity."""
    from engine.curate.run import select as run_select
    from store import curation as store_curation

    ws = state.workspace()
    with ws.connect() as db:
        run = store_curation.latest_run(db)
        if run is None:
            raise RealcalError("no curation run yet: run `realcal curate` first")
        weights = {"uncertainty": uncertainty_weight, "diversity": diversity_weight}
        if student_weight:
            weights["student"] = student_weight
        rows = run_select(ws, db, run["id"], weights, budget)
    click.echo(f"run {run['id']}: selected {len(rows)} of the survivors (the review queue order)")
    for r in rows[:20]:
        c = r["components"]
        extra = f"  student {c['student']:.3f}" if c.get("student") is not None else ""
        click.echo(f"  {r['rank']:>4}. image {r['image_id']}  uncertainty {c['uncertainty']:.3f}  "
                   f"diversity {c['diversity']:.3f}{extra}")


@main.command("student-signals")
@click.option("--training-run", "training_run_id", type=int, required=True,
              help="The student: a finished training run (its weights score the candidates).")
@click.option("--curation-run", "run_id", type=int, help="Default: the latest curation run.")
@click.option("--imgsz", type=int, default=320, show_default=True)
@click.option("--background", is_flag=True, help="Only queue the job for the worker.")
@pass_state
def student_signals(state: State, training_run_id, run_id, imgsz, background) -> None:
    """Score a curation run's survivors with a trained student: hardness (vs the label, where pose consistency
    confirmed it), disagreement with the teacher, flip instability. `realcal select --student-weight W` uses them."""
    from engine.cli.jobs import run_or_queue
    from engine.curate.student import resolve_params

    ws = state.workspace()
    params = resolve_params(ws, {"training_run_id": training_run_id, "run_id": run_id, "imgsz": imgsz})
    final = run_or_queue(ws, "student_signals", params, background, "student signals")
    if final:
        r = final["result"]
        click.echo(f"curation run {r['run_id']}: {r['images']} survivors scored by training run "
                   f"{r['training_run_id']} in {r['seconds']} s")
        for name, sm in r["signals"].items():
            mean = f"{sm['mean']:.3f}" if sm["mean"] is not None else "n/a"
            click.echo(f"  {name:<22} scored {sm['scored']:>6}  mean {mean}")


@main.command("mine-failures")
@click.option("--training-run", "training_run_id", type=int, required=True,
              help="The student: a finished training run.")
@click.option("--k", type=click.IntRange(1, 50), default=6, show_default=True, help="Pose groups.")
@click.option("--labels/--no-labels", default=True, show_default=True,
              help="--no-labels: treat labelled train images outside the student's training set as unlabelled "
                   "(their labels are never read; e.g. when they belong to a larger real-only arm).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
@click.option("--background", is_flag=True, help="Only queue the job for the worker.")
@pass_state
def mine_failures(state: State, training_run_id, k, labels, as_json, background) -> None:
    """Where a trained student fails, on train data only: labelled train people it did not train on (against
    their labels) and unlabelled train images (against the teacher), grouped by pose and ranked by error."""
    import json

    from engine.cli.jobs import run_or_queue
    from engine.curate.failures import resolve_params

    ws = state.workspace()
    final = run_or_queue(ws, "mine_failures", resolve_params(ws, {"training_run_id": training_run_id, "k": k,
                                                                        "labels": labels}),
                         background, "mine failures")
    if not final:
        return
    r = final["result"]
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"training run {r['training_run_id']}: {r['people']} people ({r['against_labels']} against labels, "
               f"{r['against_teacher']} against the teacher), mean error {r['mean_error']:.3f}; {r['path']}")
    for c in r["clusters"]:
        joints = sorted(((v, n) for n, v in c["per_joint_error"].items() if v is not None), reverse=True)[:3]
        click.echo(f"  group {c['cluster']}: {c['people']:>4} people  error {c['mean_error']:.3f}  "
                   f"anchor coverage {c['anchor_coverage']:.1%}  worst joints "
                   + ", ".join(f"{n} {v:.2f}" for v, n in joints))
    worst = next((c for c in r["clusters"] if c["target_person_ids"]), None)
    if worst:
        click.echo("generate around the worst group with, in a generation config:\n"
                   f"  pose_source: {{targets: {worst['target_person_ids'][:20]}, target_p: 0.7, "
                   f"target_label: \"training run {r['training_run_id']}, pose group {worst['cluster']}\"}}")
