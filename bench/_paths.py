"""Where benchmark workspaces live: outside the checkout, so a long benchmark resumes in the next session
on the same machine even when the checkout is laid anew (``REALCAL_BENCH_DIR`` overrides)."""
from __future__ import annotations

import os
from pathlib import Path


def bench_dir() -> Path:
    return Path(os.environ.get("REALCAL_BENCH_DIR") or Path.home() / ".cache" / "realcal" / "benchmark")
