"""``generate`` and ``lineage``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from engine.cli.base import State, main, pass_state
from engine.cli.jobs import requeue_option
from engine.errors import RealcalError


@main.command()
@click.option("--generator", help="copy_paste (offline, the default) or controlnet (diffusers).")
@click.option("--count", type=int, help="Number of images to generate.")
@click.option("--seed", type=int, help="Job seed; sample i uses a seed derived from (seed, i).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML with generator_params, pose_source, prompt, anchor_sources, image_format.")
@click.option("--background", is_flag=True, help="Only queue the job for the worker.")
@requeue_option
@click.option("--executor", type=click.Choice(["local", "ray"]), help="Where batches run (default local).")
@click.option("--ray-address", help="An existing Ray cluster (ray://host:10001 or auto); default: start one here.")
@pass_state
def generate(state: State, generator, count, seed, config_path, background, requeue_on_interrupt, executor,
             ray_address) -> None:
    """Generate labelled synthetic people from the real train anchors (the pose is the label)."""
    from engine.cli.base import executor_override, load_config
    from engine.cli.jobs import run_or_queue
    from engine.generate.job import earlier_batch, next_free_seed, resolve_params

    ws = state.workspace()
    overrides = load_config(config_path, "generation config")
    overrides.update({k: v for k, v in {"generator": generator, "count": count, "seed": seed}.items()
                      if v is not None})
    exe = executor_override(executor, ray_address, None)
    if exe:
        overrides["executor"] = exe
    params = resolve_params(ws, overrides)
    with ws.connect() as db:
        same, free = earlier_batch(db, params), next_free_seed(db)
    if same is not None:
        click.echo(f"warning: batch {same['id']} was made with the same settings and seed {params['seed']}, so "
                   f"its {same['images']} images would come out again and are not stored twice"
                   f"; --seed {free} makes new ones", err=True)
    final = run_or_queue(ws, "generate", params, background, "generate", requeue_on_interrupt)
    if final:
        r = final["result"]
        click.echo(f"batch {r['batch_id']}: {r['images']} synthetic images from {r['generator']} in "
                   f"{r['seconds']} s ({r['images_per_s']} images/s)"
                   + (f"; {r['duplicates_not_stored']} identical to stored images, not stored again"
                      if r["duplicates_not_stored"] else ""))
        if r.get("note") and not r["images"]:
            click.echo(f"warning: {r['note']}", err=True)


@main.command()
@click.argument("image_id", type=int)
@pass_state
def lineage(state: State, image_id: int) -> None:
    """Print how a synthetic image was made (generator, parameters, seed, sources) as JSON."""
    from store import synthetic

    with state.workspace().connect() as db:
        row = synthetic.lineage_for(db, image_id)
    if row is None:
        raise RealcalError(f"image {image_id} has no lineage (it is not a generated image)")
    click.echo(json.dumps(row, indent=2, default=str))
