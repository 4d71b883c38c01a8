"""Process environment for Ultralytics and Hugging Face, set before either is imported.

* ``YOLO_CONFIG_DIR``: Ultralytics writes ``settings.json`` (with ``datasets_dir`` = the current
  folder) into ``~/.config/Ultralytics`` unless told otherwise; realcal points it to its own cache.
* The font stand-in: Ultralytics downloads ``Arial.ttf`` from GitHub the first time it plots, even
  with ``plots=False``; matplotlib's DejaVuSans is copied under both names it asks for.
* ``YOLO_AUTOINSTALL=False``: Ultralytics must never ``pip install`` into the user's environment.
* Offline mode (``REALCAL_OFFLINE=1``): ``YOLO_OFFLINE=True`` and ``HF_HUB_OFFLINE=1``, so nothing
  probes the network or retries a hub for minutes. Values already in the environment win.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

_TRUTHY = {"1", "true", "yes", "on", "y", "t"}


def cache_dir() -> Path:
    base = os.environ.get("REALCAL_CACHE_DIR")
    if base:
        return Path(base).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "realcal"


def offline() -> bool:
    return os.environ.get("REALCAL_OFFLINE", "").strip().lower() in _TRUTHY


_MALLOC_TUNED = False


def tune_malloc(force: bool = False) -> bool:
    """glibc's allocator returns every large block (a model's activation buffers) to the system at once and
    faults it in again on the next batch, which slows CPU inference markedly (bench/malloc_tuning.py). This
    keeps large blocks in the heap instead: no mmap for them, no trimming. Linux/glibc only; off with
    ``REALCAL_MALLOC=default``. Returns whether the settings are in effect."""
    import ctypes
    import ctypes.util
    import sys

    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    if not force and (os.environ.get("REALCAL_MALLOC", "tuned") == "default" or any(
            k.startswith("MALLOC_") for k in os.environ)):       # the user's own allocator settings win
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4
    ok = (mallopt(m_mmap_max, 0) == 1 and mallopt(m_trim_threshold, 1 << 30) == 1
          and mallopt(m_top_pad, 64 << 20) == 1)
    _MALLOC_TUNED = bool(ok)
    return _MALLOC_TUNED


def configure() -> None:
    """Idempotent; call before importing torch, ultralytics, diffusers or transformers."""
    if offline():
        os.environ.setdefault("YOLO_OFFLINE", "True")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    config_dir = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(cache_dir() / "ultralytics")))
    try:
        config_dir.mkdir(parents=True, exist_ok=True)
        _install_font_stand_in(config_dir)
    except OSError:
        pass  # a read-only home: Ultralytics falls back to a temp dir and may try the download


def _install_font_stand_in(config_dir: Path) -> None:
    missing = [n for n in ("Arial.ttf", "Arial.Unicode.ttf") if not (config_dir / n).exists()]
    if not missing:
        return
    try:
        import matplotlib
    except ImportError:
        return
    src = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    if src.exists():
        for name in missing:
            shutil.copyfile(src, config_dir / name)
