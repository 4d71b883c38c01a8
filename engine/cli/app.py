"""``app`` (the Streamlit app) and ``demo`` (the demo workspace)."""
from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

import click

from engine.cli.base import State, main, pass_state
from engine.errors import RealcalError

APP_PY = Path(__file__).resolve().parents[2] / "app.py"
DEFAULT_DEMO = "demo-workspace"


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def user_count(ws) -> int:
    from store import review as store_review

    with ws.connect() as db:
        return store_review.active_user_count(db)


@main.command()
@click.argument("folder", required=False, type=click.Path(file_okay=False))
@pass_state
def demo(state: State, folder: str | None) -> None:
    """Build the demo workspace (real photographs from installed packages, pseudo-labelled)."""
    from engine.cli.jobs import job_progress_bar
    from engine.demo import build_demo

    root = folder or state.workspace_arg or DEFAULT_DEMO
    ws = build_demo(root, log=lambda m: click.echo(m, err=True),
                    on_progress=job_progress_bar("pseudo-label"))
    click.echo(f"demo workspace ready: {ws.root}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on. A non-loopback address needs user accounts.")
@click.option("--port", default=8501, show_default=True, type=int)
@click.option("--demo", "with_demo", is_flag=True,
              help=f"Build the demo workspace first (in -w DIR, default ./{DEFAULT_DEMO}).")
@click.option("--no-worker", is_flag=True, help="Do not start the background worker.")
@pass_state
def app(state: State, host: str, port: int, with_demo: bool, no_worker: bool) -> None:
    """Start the realcal app (Streamlit) on a workspace."""
    from engine.workspace import Workspace

    if with_demo:
        from engine.cli.jobs import job_progress_bar
        from engine.demo import build_demo

        ws = build_demo(state.workspace_arg or DEFAULT_DEMO, log=lambda m: click.echo(m, err=True),
                        on_progress=job_progress_bar("pseudo-label"))
    else:
        ws = Workspace.open(state.workspace_arg)
    if not is_loopback(host) and user_count(ws) == 0:
        raise RealcalError(
            f"refusing to serve on {host}: this workspace has no user accounts, so anyone who can "
            f"reach the address could use it. Serve on 127.0.0.1 (single-user mode) or add users "
            f"first")
    if not APP_PY.is_file():
        raise RealcalError(f"{APP_PY} not found: run the app from a source checkout (pip install -e .)")
    if not no_worker:
        from engine.worker import ensure_worker

        pid = ensure_worker(ws)
        click.echo(f"worker {f'started (pid {pid})' if pid else 'already running'}", err=True)
    mode = "single-user mode (loopback only)" if user_count(ws) == 0 else "team mode"
    click.echo(f"realcal app on http://{host}:{port}  workspace {ws.root}  [{mode}]", err=True)
    env = {**os.environ, "REALCAL_WORKSPACE": str(ws.root)}
    args = [sys.executable, "-m", "streamlit", "run", str(APP_PY),
            f"--server.address={host}", f"--server.port={port}", "--server.headless=true",
            "--browser.gatherUsageStats=false", "--server.fileWatcherType=none",
            "--client.toolbarMode=minimal"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(sys.executable, args, env)
