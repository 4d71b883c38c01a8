"""`realcal app` as a process: Ctrl-C stops the app and the worker it started, never one it found."""
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from engine.worker import worker_running
from tests.test_browser import _free_port

REPO = Path(__file__).resolve().parent.parent


def _start_app(ws, *extra):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "engine", "-w", str(ws.root), "app", "--port", str(port), *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail(f"the app did not start: {proc.stdout.read().decode()[-2000:]}")


def _wait_worker(ws, want_running: bool, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if bool(worker_running(ws)) == want_running:
            return worker_running(ws)
        time.sleep(0.2)
    pytest.fail(f"worker running = {worker_running(ws)}, wanted {want_running}")


def _ctrl_c(proc) -> str:
    os.killpg(proc.pid, signal.SIGINT)             # what a terminal sends to its foreground group
    out, _ = proc.communicate(timeout=90)
    return out.decode()


def test_ctrl_c_stops_the_app_and_the_worker_it_started(ws):
    proc = _start_app(ws)
    pid = _wait_worker(ws, True)
    out = _ctrl_c(proc)
    assert proc.returncode == 0, out
    assert f"stopping the worker (pid {pid})" in out and "worker stopped" in out
    assert worker_running(ws) is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_worker_that_was_running_before_the_app_keeps_running(ws):
    worker = subprocess.Popen([sys.executable, "-m", "engine", "-w", str(ws.root), "worker"], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_worker(ws, True)
        proc = _start_app(ws)
        out = _ctrl_c(proc)
        assert "already running" in out and "stopping the worker" not in out
        assert worker_running(ws) == worker.pid
        proc = _start_app(ws, "--keep-worker")
        _ctrl_c(proc)
        assert worker_running(ws) == worker.pid
    finally:
        worker.terminate()
        worker.wait(60)
