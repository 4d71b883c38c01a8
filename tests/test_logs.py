"""One logging configuration for the CLI, the worker and the app (engine/logs.py)."""
import io
import logging

from click.testing import CliRunner

from engine import logs


def test_one_format_and_the_level_from_the_environment(monkeypatch):
    out = io.StringIO()
    monkeypatch.delenv("REALCAL_LOG_LEVEL", raising=False)
    assert logs.configure("INFO", stream=out) == logging.INFO
    logging.getLogger("engine.somewhere").info("hello %s", "there")
    logging.getLogger("store.db").debug("hidden at INFO")
    line = out.getvalue().strip()
    assert line.endswith("INFO    engine.somewhere: hello there") and line[:4].isdigit()
    assert "hidden" not in out.getvalue()
    monkeypatch.setenv("REALCAL_LOG_LEVEL", "debug")
    assert logs.configure("INFO", stream=out) == logging.DEBUG
    logging.getLogger("store.db").debug("now shown")
    assert "DEBUG   store.db: now shown" in out.getvalue()
    assert logs.level_from_env("INFO") == logging.DEBUG
    monkeypatch.setenv("REALCAL_LOG_LEVEL", "nonsense")
    assert logs.level_from_env("INFO") == logging.WARNING


def test_the_worker_logs_through_the_engine_logger(ws, monkeypatch):
    from engine import jobs
    from engine.worker import run_worker

    out = io.StringIO()
    monkeypatch.delenv("REALCAL_LOG_LEVEL", raising=False)
    logs.configure("INFO", stream=out)
    jobs.submit(ws, "selftest", {"steps": 1})
    assert run_worker(ws, once=True) == 1
    assert "engine.worker: worker: job 1 (selftest) started" in out.getvalue()
    assert "engine.worker: worker: job 1 done" in out.getvalue()


def test_the_cli_log_level_option(ws, monkeypatch):
    from engine.cli import main

    monkeypatch.delenv("REALCAL_LOG_LEVEL", raising=False)
    r = CliRunner().invoke(main, ["--log-level", "error", "-w", str(ws.root), "status", "--json"])
    assert r.exit_code == 0, r.output
    assert logging.getLogger("engine").level == logging.ERROR
    r = CliRunner().invoke(main, ["--log-level", "loud", "status"])
    assert r.exit_code == 2 and "loud" in r.output
