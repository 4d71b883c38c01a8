"""``run``: a pipeline file end to end, resumable, stopping at the review gate."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.cli.base import State, main, pass_state


@main.command("run")
@click.argument("pipeline_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--from", "from_step", help="Rerun from this step (and everything after it).")
@click.option("--executor", type=click.Choice(["local", "ray"]), help="Override the pipeline's executor.")
@click.option("--ray-address", help="An existing Ray cluster (e.g. ray://head:10001 or auto).")
@click.option("--actors", type=click.IntRange(min=1), help="Ray actor pool size.")
@click.option("--check", is_flag=True, help="Only resolve and check the pipeline; print it and run nothing.")
@pass_state
def run_pipeline(state: State, pipeline_path, from_step, executor, ray_address, actors, check) -> None:
    """Run a pipeline file (generate, curate, select, review, experiment, report) as jobs."""
    import json

    import yaml

    from engine import pipeline
    from engine.cli.base import executor_override, load_config

    ws = state.workspace()
    cfg = load_config(pipeline_path, "pipeline file")
    override = executor_override(executor, ray_address, actors)
    if override:
        given = cfg.get("executor")
        cfg["executor"] = {**(given if isinstance(given, dict) else {}), **override}
    if check:
        click.echo(yaml.safe_dump(json.loads(json.dumps(pipeline.resolve(ws, cfg), default=str)), sort_keys=False))
        return
    try:
        pipeline.run(ws, cfg, from_step=from_step, log=lambda m: click.echo(m, err=True))
    except pipeline.ReviewGate as gate:
        click.echo(f"stopped at the review gate: {gate}", err=True)
        sys.exit(3)
    click.echo("pipeline finished")
