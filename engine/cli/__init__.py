"""The ``realcal`` command line. Every pipeline step runs from here without the app.

Subcommands live in one module per feature area (``engine/cli/<area>.py``); each registers its
commands on the root group :data:`engine.cli.base.main`, which this package re-exports.
"""
from __future__ import annotations

from engine.cli import app as _app  # noqa: E402,F401  (registers app/demo)
from engine.cli import components as _components  # noqa: E402,F401  (registers components)
from engine.cli import curate as _curate  # noqa: E402,F401  (registers curate/select)
from engine.cli import data as _data  # noqa: E402,F401  (registers import/export/batches)
from engine.cli import experiment as _experiment  # noqa: E402,F401  (registers experiment/report)
from engine.cli import generate as _generate  # noqa: E402,F401  (registers generate/lineage)
from engine.cli import jobs as _jobs  # noqa: E402,F401  (registers worker/jobs/pseudo-label)
from engine.cli import loop as _loop  # noqa: E402,F401  (registers loop run/status)
from engine.cli import maintenance as _maintenance  # noqa: E402,F401  (registers fsck/gc)
from engine.cli import pipeline as _pipeline  # noqa: E402,F401  (registers run)
from engine.cli import review as _review  # noqa: E402,F401  (registers user/review)
from engine.cli import train as _train  # noqa: E402,F401  (registers manifest/train)
from engine.cli import workspace as _workspace  # noqa: E402,F401  (registers init/status)
from engine.cli.base import main

__all__ = ["main"]
