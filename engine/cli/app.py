"""``app`` (the Streamlit app) and ``demo`` (the demo workspace)."""
from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from engine.cli.base import State, main, pass_state
from engine.errors import RealcalError

APP_PY = Path(__file__).resolve().parents[2] / "app.py"
APP_SERVER_PY = APP_PY.with_name("app_server.py")   # app.py plus the login page
DEFAULT_DEMO = "demo-workspace"


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def user_count(ws) -> int:
    """Active accounts."""
    from store import review as store_review

    with ws.connect() as db:
        return store_review.active_user_count(db)


def start_mode(ws) -> str:
    """The access mode the app is started in and keeps: accounts as soon as any account exists."""
    from engine import auth

    with ws.connect() as db:
        return auth.start_mode(db)


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
@click.option("--keep-worker", is_flag=True,
              help="Leave the worker this command started running after the app stops (by default "
                   "Ctrl-C stops both; a running job is requeued and resumes with the next worker).")
@click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False),
              help="Serve over TLS with this certificate (PEM); login cookies are then marked Secure.")
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False),
              help="The certificate's private key (PEM), with --ssl-certfile.")
@pass_state
def app(state: State, host: str, port: int, with_demo: bool, no_worker: bool, keep_worker: bool,
        ssl_certfile: str | None, ssl_keyfile: str | None) -> None:
    """Start the realcal app (Streamlit) on a workspace.

    The access mode is fixed now: single-user (no accounts; loopback only) or accounts (any
    account exists, even disabled). It does not change while the app runs; with accounts and none
    active, nobody gets in.
    """
    from engine import auth
    from engine.workspace import Workspace

    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise RealcalError("TLS needs both --ssl-certfile and --ssl-keyfile")
    if with_demo:
        from engine.cli.jobs import job_progress_bar
        from engine.demo import build_demo

        ws = build_demo(state.workspace_arg or DEFAULT_DEMO, log=lambda m: click.echo(m, err=True),
                        on_progress=job_progress_bar("pseudo-label"))
    else:
        ws = Workspace.open(state.workspace_arg)
    mode = start_mode(ws)
    if not is_loopback(host) and mode == "single":
        raise RealcalError(
            f"refusing to serve on {host}: this workspace has no user accounts, so anyone who can "
            f"reach the address could use it. Serve on 127.0.0.1 (single-user mode) or add users "
            f"first")
    if not APP_PY.is_file() or not APP_SERVER_PY.is_file():
        raise RealcalError(f"{APP_SERVER_PY} not found: run the app from a source checkout (pip install -e .)")
    if mode == "accounts":
        auth.secret_key(ws.root)          # made now (0600) or checked: a problem shows here, not at login
        if user_count(ws) == 0:
            click.echo("warning: every account is disabled, so nobody can log in until an admin runs "
                       "`realcal user enable NAME`", err=True)
    worker_pid = None
    if not no_worker:
        from engine.worker import ensure_worker, worker_running

        worker_pid = ensure_worker(ws)
        if worker_pid:
            click.echo(f"worker started (pid {worker_pid})", err=True)
        else:
            click.echo(f"worker already running (pid {worker_running(ws)}): it keeps running after the app stops",
                       err=True)
    scheme = "https" if ssl_certfile else "http"
    label = "single-user mode (loopback only)" if mode == "single" else "accounts mode"
    click.echo(f"realcal app on {scheme}://{host}:{port}  workspace {ws.root}  [{label}]", err=True)
    env = {**os.environ, "REALCAL_WORKSPACE": str(ws.root), auth.MODE_ENV: mode}
    args = [sys.executable, "-m", "streamlit", "run", str(APP_SERVER_PY),
            f"--server.address={host}", f"--server.port={port}", "--server.headless=true",
            "--browser.gatherUsageStats=false", "--server.fileWatcherType=none",
            "--client.toolbarMode=minimal"]
    if ssl_certfile and ssl_keyfile:
        args += [f"--server.sslCertFile={Path(ssl_certfile).resolve()}",
                 f"--server.sslKeyFile={Path(ssl_keyfile).resolve()}"]
    sys.stdout.flush()
    sys.stderr.flush()
    rc = serve(args, env)
    if worker_pid and not keep_worker:
        stop_worker(ws, worker_pid)
    sys.exit(rc)


def serve(args: list[str], env: dict) -> int:
    """Run Streamlit until it stops; returns its exit status. It shares this process group, so a
    Ctrl-C in the terminal reaches it directly; SIGTERM and SIGHUP sent to this process are passed on."""
    proc = subprocess.Popen(args, env=env)
    stopping: list[int] = []

    def forward(signum, frame):
        stopping.append(signum)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                rc = proc.wait()
                break
            except KeyboardInterrupt:          # Streamlit got the same Ctrl-C and is stopping
                stopping.append(signal.SIGINT)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.terminate()
                except KeyboardInterrupt:      # a second Ctrl-C: stop it now
                    proc.kill()
        # Stopped on request (Ctrl-C, SIGTERM, SIGHUP) is a normal end, whatever Streamlit's status says.
        return 0 if stopping else rc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _reaped(pid: int) -> bool:
    """True once ``pid`` has exited and, being this process's child, has been collected."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:                  # not our child: gone once it no longer exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return done == pid


def stop_worker(ws, pid: int, timeout_s: float = 60) -> None:
    """Stop the worker ``realcal app`` started: SIGTERM (the running job, if any, is requeued and
    resumes with the next worker), then wait for its lock to be released."""
    from engine.worker import worker_running

    if worker_running(ws) != pid:
        return                                 # it exited already (or lost the start race to another)
    click.echo(f"stopping the worker (pid {pid}); a running job is requeued", err=True)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker_running(ws) != pid and _reaped(pid):
            click.echo("worker stopped", err=True)
            return
        time.sleep(0.2)
    click.echo(f"the worker (pid {pid}) did not stop within {timeout_s:.0f} s; `kill {pid}` stops it", err=True)
