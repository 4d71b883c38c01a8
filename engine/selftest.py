"""A diagnostic job: waits in steps, reporting progress, so the worker path can be checked
end to end (queue, claim, heartbeat, progress, cancel) without loading any model."""
from __future__ import annotations

import time
from typing import Any

from engine.errors import RealcalError
from engine.jobs import JobContext, job_kind


@job_kind("selftest", title="Worker self-test", resumable=False)
def run(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    steps = int(params.get("steps", 5))
    for i in range(steps):
        time.sleep(float(params.get("step_s", 0.2)))
        ctx.progress(i + 1, steps, f"step {i + 1}/{steps}", force=True)
    if params.get("fail"):
        raise RealcalError(str(params["fail"]))
    return {"steps": steps}


def square_fn(delay_s: float = 0.0, pid_dir: str | None = None):
    """A diagnostic batch function for executors (no model): items -> (item, item**2, worker pid).
    With ``pid_dir`` each instance leaves a file named after its process id there (to test
    recovery from a killed worker)."""
    import os
    from pathlib import Path

    if pid_dir:
        Path(pid_dir, str(os.getpid())).touch()

    def run(items):
        time.sleep(delay_s * len(items))
        return [(x, x * x, os.getpid()) for x in items]
    return run
