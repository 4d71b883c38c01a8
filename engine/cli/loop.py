"""``loop run`` and ``loop status``: the model in the loop, round by round."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from engine.cli.base import State, main, pass_state


@main.group()
def loop() -> None:
    """Rounds of train -> mine failures -> generate -> curate with the student -> select -> train."""


def _print(s: dict) -> None:
    metric = s["metric"]
    click.echo(f"loop {s['name']}: {s['status']}" + (f" ({s['stop_reason']})" if s.get("stop_reason") else ""))
    for r in s["rounds"]:
        val = "n/a" if r[f"val {metric}"] is None else f"{r[f'val {metric}']:.3f}"
        click.echo(f"  round {r['round']}: {r['status']:<8} val {metric} {val}  real {r['real'] or '-'}  "
                   f"synthetic {r['synthetic'] or 0} "
                   f"(+{r['added']}; {r['targets']} target anchors)  review {r['review decisions']} decisions "
                   f"{r['review seconds']:.0f} s  run {r['training run'] or '-'}")
    if s["best_round"] is not None:
        click.echo(f"best on val: round {s['best_round']} (training run {s['best_training_run']})")


@loop.command("run")
@click.argument("config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--max-minutes", type=click.FloatRange(min=1), help="Stop between steps after this long; run the "
                                                                  "same command again to continue.")
@click.option("--background", is_flag=True, help="Only queue the job for the worker.")
@click.option("--json", "as_json", is_flag=True, help="Print the loop's rounds as JSON.")
@pass_state
def loop_run(state: State, config_path, device, max_minutes, background, as_json) -> None:
    """Run (or resume) the loop described in a YAML file (see `engine/loop.py` for its keys)."""
    from engine.cli.base import load_config
    from engine.cli.jobs import run_or_queue
    from engine.loop import check, resolve

    ws = state.workspace()
    cfg = resolve(load_config(config_path, "loop file"))
    facts = check(ws, cfg)
    if not as_json:
        click.echo(f"loop {cfg['name']}: {facts['anchors']} real anchors; failures are mined on "
                   f"{facts['held_out_labelled']} labelled train images outside them and {facts['unlabelled']} "
                   f"unlabelled ones (val and test are never read for a decision)")
    params = {"config": cfg, "device": device}
    if max_minutes:
        params["deadline"] = time.time() + 60 * max_minutes
    final = run_or_queue(ws, "loop", params, background, "loop")
    if final:
        if as_json:
            click.echo(json.dumps({k: v for k, v in final["result"].items() if k != "config"}, default=str))
        else:
            _print(final["result"])


@loop.command("status")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def loop_status(state: State, name, as_json) -> None:
    """A loop's rounds (the latest loop by default): val per round, images added, reviewer time."""
    from engine.loop import summary

    s = summary(state.workspace(), name)
    if as_json:
        click.echo(json.dumps({k: v for k, v in s.items() if k != "config"}, default=str))
    else:
        _print(s)
