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
