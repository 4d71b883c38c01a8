"""What made a result: the code version, package versions and the machine, recorded with every run.

``code_version()`` names the code by a hash of the source files that compute results (``engine/`` and
``store/``; the app's pages cannot change a figure) — the identity that decides whether two runs were
made by the same code, with or without git — plus the git commit and a dirty flag where the source is
a git checkout (for people: which commit to check out). Computed once per process.
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("engine", "store")
PACKAGES = ("ultralytics", "torch", "numpy", "pycocotools", "opencv-python", "scipy")


def _source_files() -> list[Path]:
    files = []
    for d in SOURCE_DIRS:
        files += sorted((ROOT / d).rglob("*.py"))
    return [f for f in files if "__pycache__" not in f.parts]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10,
                             env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    h = hashlib.sha256()
    for f in _source_files():
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    commit = _git("rev-parse", "HEAD")
    dirty = None
    if commit:
        status = _git("status", "--porcelain", "--untracked-files=no", "--", *SOURCE_DIRS)
        dirty = bool(status) if status is not None else None
    return {"source_hash": h.hexdigest()[:16], "commit": commit[:12] if commit else None, "dirty": dirty}


def describe(code: dict | None) -> str:
    """``3f2a1c9d0b7e (dirty), source 1a2b...`` for people."""
    if not code:
        return "unknown (recorded before code versions were kept)"
    head = code.get("commit") or "no git commit"
    return f"{head}{' (dirty)' if code.get('dirty') else ''}, source {code.get('source_hash')}"


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def machine() -> dict[str, Any]:
    """Where a run trained: float results can differ between CPU kinds and thread counts."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def record() -> dict[str, Any]:
    """Everything a run records about what made it."""
    return {"code": code_version(), "versions": package_versions(), "machine": machine()}
