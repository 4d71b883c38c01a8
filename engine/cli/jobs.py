"""``worker``, ``jobs``, ``job cancel`` and ``pseudo-label``."""
from __future__ import annotations

import json
import sys

import click

from engine.cli.base import State, main, pass_state
from engine.errors import RealcalError


def job_progress_bar(desc: str):
    from tqdm import tqdm

    bar = None

    def update(done, total, message):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, file=sys.stderr, disable=None, dynamic_ncols=True)
        if total is not None and bar.total != total:
            bar.total = total
        bar.n = done
        if message:
            bar.set_postfix_str(message[:60], refresh=False)
        bar.refresh()

    return update


def run_or_queue(ws, kind: str, params: dict, background: bool, desc: str,
                 requeue_on_interrupt: bool = False) -> dict | None:
    """The CLI convention: run in the foreground with a progress bar, or only queue it.

    Interrupted (Ctrl-C, SIGTERM, SIGHUP), a foreground job is cancelled, unless ``requeue_on_interrupt``
    leaves a resumable one queued for the worker to finish."""
    from engine import jobs
    from store import jobs as store_jobs

    if background:
        job_id = jobs.submit(ws, kind, params)
        click.echo(f"queued job {job_id} ({kind}); a running worker picks it up "
                   f"(`realcal -w {ws.root} worker`, or the app starts one)")
        return None
    job = jobs.start_foreground(ws, kind, params)
    try:
        final = jobs.run_job(ws, job, job_progress_bar(desc),
                             on_interrupt="requeue" if requeue_on_interrupt else "cancel")
    except KeyboardInterrupt:
        with ws.connect() as db:
            row = store_jobs.get(db, job["id"]) or {}
        status = row.get("status")
        click.echo(f"job {job['id']} ({kind}): " + (
            "queued again; a worker resumes it where it stopped" if status == "queued" else
            "cancelled (--requeue-on-interrupt leaves it for a worker to resume)" if status == "cancelled" else
            str(status)), err=True)
        raise
    if final["status"] == "failed":
        raise RealcalError(f"job {final['id']} failed: {final['error'].splitlines()[0]}")
    if final["status"] == "cancelled":
        raise RealcalError(f"job {final['id']} was cancelled")
    return final


def requeue_option(fn):
    """``--requeue-on-interrupt`` for commands that run a resumable job in the foreground."""
    return click.option("--requeue-on-interrupt", is_flag=True,
                        help="If interrupted (Ctrl-C, SIGTERM, SIGHUP), leave the job queued for a worker to "
                             "resume instead of cancelling it.")(fn)


@main.command()
@click.option("--once", is_flag=True, help="Run the queued jobs, then exit.")
@pass_state
def worker(state: State, once: bool) -> None:
    """Run the workspace's background worker (one per workspace)."""
    from engine import logs
    from engine.worker import run_worker

    logs.configure("INFO")      # the worker's events go to its log (<workspace>/logs/worker.log when detached)
    n = run_worker(state.workspace(), once=once)
    click.echo(f"worker: {n} jobs run", err=True)


@main.command("jobs")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=30, show_default=True)
@pass_state
def jobs_cmd(state: State, as_json: bool, limit: int) -> None:
    """List recent jobs with their status and progress."""
    from store import jobs as store_jobs

    with state.workspace().connect() as db:
        rows = store_jobs.list_jobs(db, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("no jobs yet")
        return
    for r in rows:
        pct = f"{100 * r['progress'] / r['total']:.0f}%" if r["total"] else "-"
        line = f"{r['id']:>4}  {r['kind']:<14} {r['status']:<10} {pct:>5}  {r['message'] or ''}"
        if r["error"]:
            line += f"  error: {r['error'].splitlines()[0]}"
        click.echo(line)


@main.group()
def job() -> None:
    """Act on one job."""


@job.command("cancel")
@click.argument("job_id", type=int)
@pass_state
def job_cancel(state: State, job_id: int) -> None:
    """Cancel a queued job, or ask a running one to stop at its next progress step."""
    from store import jobs as store_jobs

    with state.workspace().connect() as db:
        status = store_jobs.request_cancel(db, job_id)
    if status is None:
        raise RealcalError(f"no job {job_id}")
    click.echo(f"job {job_id}: {status}" + (" (stop requested)" if status == "running" else ""))


@main.command("pseudo-label")
@click.option("--conf", type=float, help="Minimum person detection confidence.")
@click.option("--keypoint-conf", type=float, help="Minimum joint confidence for v=2.")
@click.option("--imgsz", type=int, help="Inference image size.")
@click.option("--batch-size", type=int, help="Images per inference batch.")
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--weights", help="Teacher weights (.pt); default: the packaged yolo11n-pose.")
@click.option("--background", is_flag=True, help="Only queue the job for the worker.")
@requeue_option
@pass_state
def pseudo_label(state: State, conf, keypoint_conf, imgsz, batch_size, device, weights,
                 background, requeue_on_interrupt) -> None:
    """Label unlabelled real images with the teacher; stored as machine (predicted) persons."""
    from engine import pseudo_label as pl

    ws = state.workspace()
    params = pl.resolve_params(ws, {
        "pseudo_label.conf": conf, "pseudo_label.keypoint_conf": keypoint_conf,
        "pseudo_label.imgsz": imgsz, "pseudo_label.batch_size": batch_size, "device": device,
        "teacher.path": weights})
    final = run_or_queue(ws, "pseudo_label", params, background, "pseudo-label", requeue_on_interrupt)
    if final:
        r = final["result"]
        click.echo(f"batch {r['batch_id']}: {r['persons']} predicted persons on {r['images']} images "
                   f"({r['device']})")
