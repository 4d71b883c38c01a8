"""Where benchmark workspaces live: outside the checkout, so a long benchmark resumes in the next session
on the same machine even when the checkout is laid anew (``REALCAL_BENCH_DIR`` overrides); and what the
machine is (for reports)."""
from __future__ import annotations

import os
import platform
from pathlib import Path

OFFLINE = (("REALCAL_OFFLINE", "1"), ("HF_HUB_OFFLINE", "1"), ("YOLO_OFFLINE", "True"), ("YOLO_AUTOINSTALL", "False"))


def offline() -> None:
    """Offline unless told otherwise (as `make` sets it): no hub retries for weights that are not here. Call it
    before anything imports torch, ultralytics or the hub clients."""
    for key, value in OFFLINE:
        os.environ.setdefault(key, value)


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def shown_path(path: Path, root: Path) -> str:
    """``path`` as a report shows it: relative to ``root`` when it lies inside, else absolute (a split folder
    or a workspace may live anywhere)."""
    p, r = Path(path).resolve(), Path(root).resolve()
    return p.relative_to(r).as_posix() if p.is_relative_to(r) else str(p)


def bench_dir() -> Path:
    return Path(os.environ.get("REALCAL_BENCH_DIR") or Path.home() / ".cache" / "realcal" / "benchmark")


def train_val_workspace(root: Path, dataset: Path, split_dir: Path, log=print):
    """A workspace that holds only the train and val splits of the committed LSPET split (test is never
    imported, so nothing run in it can see test). Train is imported first, then val: the same image ids,
    and so the same per-seed anchor draws, as the benchmark's workspace."""
    from engine.workspace import Workspace
    from store import images as store_images

    ws = Workspace.open(root) if (root / "realcal.db").exists() else Workspace.init(root)
    with ws.connect() as db:
        n_images = store_images.count_images(db)
    if n_images == 0:
        if not (dataset / "joints.mat").exists():
            raise SystemExit(f"LSPET not found at {dataset} (expected joints.mat and images/)")
        from engine.io import parse
        from engine.io.common import read_ids_file, run_import

        parsed = parse("lsp", dataset)
        for split in ("train", "val"):
            rep = run_import(ws, parsed, split=split, ids=read_ids_file(split_dir / f"{split}.txt"))
            log(f"imported {split}: {rep.images} images")
    return ws


def run_script(script: str, args: list[str]) -> dict:
    """Run ``script`` (a bench file) again in a fresh Python process with ``args`` and return the JSON object on
    the last line of its output: one measurement per process (peak RSS, a cold start, thread settings)."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{Path(script).name} {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
