"""`realcal review build` at 1,000, 5,000 and 10,000 curated images: the command's wall time as a user
runs it (a fresh process: start-up, imports, reading the curation order, writing the queue).

    .venv/bin/python bench/review_build.py [--sizes 1000 5000 10000]

Each size gets a workspace from ``bench/app_scale.py``'s builder (small synthetic images, a finished
curation run with a selection order for every image, nothing queued yet). Prints the wall time, how
many items were queued and the load average.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import engine  # noqa: E402,F401  (configures the offline environment)


def main() -> None:
    from app_scale import build

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    args = ap.parse_args()
    realcal = Path(sys.executable).with_name("realcal")
    cmd = [str(realcal)] if realcal.exists() else [sys.executable, "-m", "engine"]
    print("images | review build wall s | output")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            ws = build(Path(tmp), n, queue=False)
            t0 = time.perf_counter()
            out = subprocess.run([*cmd, "--workspace", str(ws.root), "review", "build"], capture_output=True,
                                 text=True)
            wall = time.perf_counter() - t0
            if out.returncode:
                raise SystemExit(out.stderr[-2000:])
            print(f"{n:>6} | {wall:>19.2f} | {out.stdout.strip().splitlines()[-1][:100]}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
