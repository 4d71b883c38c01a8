"""``experiment run`` and ``report``."""
from __future__ import annotations

import time
from pathlib import Path

import click

from engine.cli.base import State, main, pass_state
from engine.cli.jobs import requeue_option


@main.group()
def experiment() -> None:
    """Arms x seeds at matched steps, compared with honest statistics."""


@experiment.command("run")
@click.argument("config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--background", is_flag=True, help="Only queue the job for the worker.")
@click.option("--allow-mixed-code", is_flag=True,
              help="Keep finished runs made by other code (the report lists the versions).")
@click.option("--rerun-other-code", is_flag=True, help="Redo finished runs made by other code.")
@click.option("--ledger", type=click.Path(file_okay=False, path_type=Path),
              help="Folder that keeps every finished run (results and evaluations, no weights) as it finishes; "
                   "a new workspace takes the runs in it that are still valid and trains only the rest.")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Start no run after this many minutes, nor one that would not finish by then (by its arm's mean "
                   "run time so far); run the command again to continue.")
@click.option("--n-boot", type=click.IntRange(100, 100_000), default=1000, show_default=True,
              help="Bootstrap resamples for the intervals.")
@requeue_option
@pass_state
def experiment_run(state: State, config_path, device, background, allow_mixed_code, rerun_other_code, ledger,
                   max_minutes, n_boot, requeue_on_interrupt) -> None:
    """Run (or resume) the experiment described in a YAML file.

    Finished runs are kept only when the same code made them; runs made by other code stop the
    experiment unless --allow-mixed-code or --rerun-other-code is given."""
    from engine.cli.base import load_config
    from engine.cli.jobs import run_or_queue
    from engine.experiment import resolve

    if allow_mixed_code and rerun_other_code:
        raise click.UsageError("choose one of --allow-mixed-code and --rerun-other-code")
    ws = state.workspace()
    cfg = resolve(load_config(config_path, "experiment file"))
    final = run_or_queue(ws, "experiment", {"config": cfg, "device": device, "allow_mixed_code": allow_mixed_code,
                                            "rerun_other_code": rerun_other_code, "n_boot": n_boot,
                                            **({"ledger": str(ledger.resolve())} if ledger else {}),
                                            **({"deadline": time.time() + 60 * max_minutes} if max_minutes else {})},
                         background, "experiment", requeue_on_interrupt)
    if final:
        s = final["result"]["summary"]
        for row in s["table"]:
            click.echo(f"{row['arm']:<20} AP50 {row['AP50'] or 0:.3f}  PCK@0.2 {row['PCK@0.2'] or 0:.3f}  "
                       f"({row['seeds']} seeds)")
        click.echo(s["headline"])
        for title, key in (("Against real-only", "comparisons"), ("Curated against random at the same volume",
                                                                   "ablation"),
                           ("Contrasts", "contrasts"), ("Gap closed", "gap_closed"), ("Noise floor", "noise_floor")):
            if s.get(key):
                click.echo(f"{title}:")
                for c in s[key]:
                    click.echo(f"  {c['verdict']}")
        for line in s.get("contrasts_waiting") or []:
            click.echo(f"  contrast {line}")
        for f in s["flags"]:
            click.echo(f"  WARNING: {f}")
        res = final["result"]
        if res.get("held_elsewhere"):
            click.echo(f"{len(res['held_elsewhere'])} run(s) were being trained by other processes (not waited for): "
                       f"{'; '.join(res['held_elsewhere'])}; the figures above leave them out")
        elif res.get("runs_left"):
            click.echo(f"{res['runs_left']} run(s) have not finished; run the same command again to continue")


@experiment.command("verify")
@click.argument("name")
@click.option("--arm", required=True, help="The arm to rerun, e.g. real-only.")
@click.option("--seed", type=int, required=True)
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@pass_state
def experiment_verify(state: State, name, arm, seed, device, as_json) -> None:
    """Rerun one finished run of experiment NAME and print how its figures differ from the stored ones.

    Exits 0 when the rerun matches exactly, 1 when any figure differs."""
    import json

    from engine.cli.jobs import job_progress_bar
    from engine.experiment import verify

    res = verify(state.workspace(), name, arm, seed, device, job_progress_bar(f"verify {arm} seed {seed}"))
    if as_json:
        click.echo(json.dumps(res, indent=2, default=str))
    else:
        click.echo(f"{name}: {arm} seed {seed}")
        click.echo(f"  stored run's code: {res['stored_code']}")
        click.echo(f"  this code:         {res['current_code']}")
        click.echo(f"  {'split':<5} {'metric':<9} {'stored':>8} {'rerun':>8} {'difference':>11}")
        for r in res["rows"]:
            if r["stored"] is None and r["rerun"] is None:
                continue
            f = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
            d = "n/a" if r["difference"] is None else f"{r['difference']:+.4f}"
            click.echo(f"  {r['split']:<5} {r['metric']:<9} {f(r['stored']):>8} {f(r['rerun']):>8} {d:>11}")
        click.echo("identical" if res["identical"] else
                   f"differs: largest difference {res['max_abs_difference']:.4f}"
                   if res["max_abs_difference"] is not None else "nothing to compare")
    raise SystemExit(0 if res["identical"] else 1)


@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--experiment", "name", help="Experiment name (default: the latest).")
@pass_state
def report(state: State, out, name) -> None:
    """Write the experiment report (HTML + Markdown)."""
    from engine.report import write_experiment_report

    paths = write_experiment_report(state.workspace(), out, name)
    click.echo(f"written {paths['html']} and {paths['markdown']}")
