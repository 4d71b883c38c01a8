"""``experiment run`` and ``report``."""
from __future__ import annotations

from pathlib import Path

import click

from engine.cli import State, main, pass_state


@main.group()
def experiment() -> None:
    """Arms x seeds at matched steps, compared with honest statistics."""


@experiment.command("run")
@click.argument("config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--background", is_flag=True, help="Only queue the job for the worker.")
@pass_state
def experiment_run(state: State, config_path, device, background) -> None:
    """Run (or resume) the experiment described in a YAML file."""
    from engine.cli.generate import _load_config
    from engine.cli.jobs import run_or_queue
    from engine.experiment import resolve

    ws = state.workspace()
    cfg = resolve(_load_config(config_path))
    final = run_or_queue(ws, "experiment", {"config": cfg, "device": device}, background, "experiment")
    if final:
        s = final["result"]["summary"]
        for row in s["table"]:
            click.echo(f"{row['arm']:<20} AP50 {row['AP50'] or 0:.3f}  PCK@0.2 {row['PCK@0.2'] or 0:.3f}  "
                       f"({row['seeds']} seeds)")
        for c in s["ap50"] + s["comparisons"]:
            click.echo(f"  {c['verdict']}")
        for f in s["flags"]:
            click.echo(f"  WARNING: {f}")


@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--experiment", "name", help="Experiment name (default: the latest).")
@pass_state
def report(state: State, out, name) -> None:
    """Write the experiment report (HTML + Markdown)."""
    from engine.report import write_experiment_report

    paths = write_experiment_report(state.workspace(), out, name)
    click.echo(f"written {paths['html']} and {paths['markdown']}")
