"""The ``realcal`` command line. Every pipeline step runs from here without the app.

Subcommands live in one module per feature area (``engine/cli/<area>.py``) and register
themselves on :data:`main`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import click

from engine import env

env.configure()  # before anything imports torch, ultralytics or the hub clients

from engine import __version__  # noqa: E402
from engine.errors import RealcalError  # noqa: E402
from engine.workspace import Workspace  # noqa: E402


class RealcalGroup(click.Group):
    """Prints user-facing errors as one line (no traceback) and exits 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RealcalError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted: the current step was rolled back", err=True)
            sys.exit(130)


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
@click.version_option(__version__, prog_name="realcal")
@click.pass_context
def main(ctx: click.Context, workspace: str | None) -> None:
    """realcal: real-calibrated synthetic training data for human pose estimation.

    \b
    Typical start:
      realcal -w ws init
      realcal -w ws import --format coco annotations.json
      realcal -w ws status --json
    """
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


from engine.cli import data as _data  # noqa: E402,F401  (registers import/export/batches)
from engine.cli import workspace as _workspace  # noqa: E402,F401  (registers init/status)
from engine.cli import jobs as _jobs  # noqa: E402,F401  (registers worker/jobs/pseudo-label)
from engine.cli import app as _app  # noqa: E402,F401  (registers app/demo)
from engine.cli import generate as _generate  # noqa: E402,F401  (registers generate/lineage)
from engine.cli import curate as _curate  # noqa: E402,F401  (registers curate/select)
from engine.cli import review as _review  # noqa: E402,F401  (registers user/review)
from engine.cli import train as _train  # noqa: E402,F401  (registers manifest/train)
from engine.cli import experiment as _experiment  # noqa: E402,F401  (registers experiment/report)
from engine.cli import pipeline as _pipeline  # noqa: E402,F401  (registers run)
