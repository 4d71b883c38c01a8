"""What every ``realcal`` subcommand module shares: the root group, the state, progress bars, config
files. Subcommand modules import this module; ``engine/cli/__init__.py`` imports them (never the
other way round)."""
from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import click

from engine import env

env.configure()  # before anything imports torch, ultralytics or the hub clients

from engine import __version__  # noqa: E402
from engine.errors import ENVIRONMENT_ERRNOS, RealcalError  # noqa: E402
from engine.workspace import Workspace  # noqa: E402


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so that it cleans up exactly as for Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def environment_error(exc: BaseException) -> str | None:
    """One line for an error of the machine rather than of realcal (disk full, read-only, permissions, a
    database that cannot be used); None for anything else, which stays a traceback (a bug)."""
    from store.db import describe_error

    meaning = describe_error(exc)
    if meaning is not None:
        return f"the workspace database {meaning}"
    if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{ENVIRONMENT_ERRNOS[exc.errno]}{where}"
    return None


def _raise_terminated(signum, frame) -> None:
    # Once: a second SIGTERM/SIGHUP must not interrupt the clean-up the first one started (SIGKILL still ends it).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


class RealcalGroup(click.Group):
    """Prints user-facing errors as one line (no traceback) and exits 1; SIGTERM and SIGHUP clean up like
    Ctrl-C (the step in progress is rolled back, a foreground job is cancelled) and exit 128 + the signal."""

    def invoke(self, ctx: click.Context):
        env.tune_malloc()          # CPU inference without allocator page faults (REALCAL_MALLOC=default: off)
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                if signal.getsignal(sig) is not signal.SIG_IGN:      # `nohup realcal ...` stays immune
                    previous[sig] = signal.getsignal(sig)
                    signal.signal(sig, _raise_terminated)
        try:
            return super().invoke(ctx)
        except RealcalError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except Terminated as exc:
            click.echo(f"terminated ({signal.Signals(exc.signum).name}): the current step was rolled back",
                       err=True)
            sys.exit(128 + exc.signum)
        except KeyboardInterrupt:
            click.echo("interrupted: the current step was rolled back", err=True)
            sys.exit(130)
        except Exception as exc:
            message = environment_error(exc)
            if message is None:
                raise
            click.echo(f"error: {message}", err=True)
            sys.exit(1)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


@dataclass
class State:
    workspace_arg: str | None

    def workspace(self) -> Workspace:
        return Workspace.open(self.workspace_arg)


pass_state = click.make_pass_decorator(State)


@click.group(cls=RealcalGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                 "max_content_width": 100})
@click.option("-w", "--workspace", envvar="REALCAL_WORKSPACE", metavar="DIR",
              help="Workspace folder (default: $REALCAL_WORKSPACE).")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Diagnostics on stderr (default: $REALCAL_LOG_LEVEL, else WARNING; the worker logs INFO).")
@click.version_option(__version__, prog_name="realcal")
@click.pass_context
def main(ctx: click.Context, workspace: str | None, log_level: str | None) -> None:
    """realcal: real-calibrated synthetic training data for human pose estimation.

    \b
    Typical start:
      realcal -w ws init
      realcal -w ws import --format coco annotations.json
      realcal -w ws status --json
    """
    from engine import logs

    if log_level:
        os.environ["REALCAL_LOG_LEVEL"] = log_level.upper()   # the worker and jobs it starts inherit it
    logs.configure("WARNING")
    ctx.obj = State(workspace)


def progress_bar(desc: str):
    """A tqdm bar on stderr as a ``progress(done, total)`` callback (hidden when not a TTY)."""
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=None,
                       dynamic_ncols=True)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update




def load_config(path: Path | None, what: str = "config") -> dict:
    """A YAML mapping from ``path`` ({} when no path); a one-line error when it cannot be read."""
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RealcalError(f"cannot read the {what} {path}: {exc}") from None
    if not isinstance(data, dict):
        raise RealcalError(f"{path}: expected a mapping of {what} options")
    return data


def executor_override(executor: str | None, ray_address: str | None, actors: int | None) -> dict | None:
    """The ``--executor/--ray-address/--actors`` flags as an executor config (None: not given)."""
    if executor is None and ray_address is None and actors is None:
        return None
    cfg: dict = {"name": executor or "ray"}
    if ray_address:
        cfg["address"] = ray_address
    if actors:
        cfg["actors"] = actors
    return cfg
