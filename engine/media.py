"""Content-addressed image files and their thumbnails.

A stored image keeps its original bytes (so its sha256 is the source file's) under
``images/<sha[:2]>/<sha>.<ext>``; its thumbnail is made once, at ingest, under
``thumbs/<sha[:2]>/<sha>.jpg``. Pixel coordinates refer to the stored pixels: EXIF orientation is
not applied, as in COCO and Ultralytics labels.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 50_000_000       # 50 MP: larger images are refused, not decoded
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
THUMB_SIZE = 256
FORMAT_EXT = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "WEBP": "webp", "TIFF": "tif", "MPO": "jpg"}


class BadImage(Exception):
    """One image cannot be used; the message says why (the import skips it and reports it)."""


@dataclass
class ImageInfo:
    sha256: str
    ext: str
    width: int
    height: int
    bytes: int


def inspect_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[ImageInfo, bytes]:
    """Read, hash and fully decode one image file, refusing anything unsafe or broken."""
    path = Path(path)
    if not path.is_file():
        raise BadImage("image file not found")
    size = path.stat().st_size
    if size == 0:
        raise BadImage("image file is empty")
    if size > max_bytes:
        raise BadImage(f"image file is {size / 1e6:.0f} MB, over the {max_bytes / 1e6:.0f} MB limit")
    return inspect_bytes(path.read_bytes(), max_pixels)


def inspect_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[ImageInfo, bytes]:
    """Hash and fully decode encoded image bytes, refusing anything unsafe or broken."""
    size = len(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise BadImage(f"image is {width}x{height} ({width * height / 1e6:.0f} MP), over the "
                                   f"{max_pixels / 1e6:.0f} MP limit (decompression-bomb guard)")
                fmt = im.format
                im.load()
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"decompression bomb refused: {exc}") from None
    except UnidentifiedImageError:
        raise BadImage("not a readable image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImage(f"image cannot be decoded: {exc}") from None
    except ImportError as exc:      # Pillow reached for an optional decoder plugin that is not installed
        raise BadImage(f"image cannot be decoded here (it needs a decoder that is not installed: {exc})") from None
    if fmt not in FORMAT_EXT:
        raise BadImage(f"unsupported image format {fmt}")
    if width < 1 or height < 1:
        raise BadImage("image has no pixels")
    info = ImageInfo(hashlib.sha256(data).hexdigest(), FORMAT_EXT[fmt], width, height, size)
    return info, data


def image_relpath(sha256: str, ext: str) -> str:
    """A stored image's path relative to the workspace root: ``images/<sha[:2]>/<sha>.<ext>``."""
    return f"images/{sha256[:2]}/{sha256}.{ext}"


def thumb_relpath(sha256: str) -> str:
    """A stored image's thumbnail, relative to the workspace root: ``thumbs/<sha[:2]>/<sha>.jpg``."""
    return f"thumbs/{sha256[:2]}/{sha256}.jpg"


def image_path(root: str | os.PathLike, sha256: str, ext: str) -> Path:
    """A stored image's file under the workspace ``root``."""
    return Path(root) / image_relpath(sha256, ext)


def thumb_path(root: str | os.PathLike, sha256: str) -> Path:
    """A stored image's thumbnail file under the workspace ``root``."""
    return Path(root) / thumb_relpath(sha256)


def _atomic_write(target: Path, data: bytes) -> None:
    """Write ``target`` whole or not at all. The temporary file is named before it exists, so an
    interruption at any point (Ctrl-C included) removes it; its name carries the target's, so
    ``realcal gc`` can tell whose it is after a process was killed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{secrets.token_hex(6)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def make_thumbnail(data: bytes, size: int = THUMB_SIZE) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
        rgb = im.convert("RGB")
        rgb.thumbnail((size, size), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def thumbnail_scale(width: int, height: int, size: int = THUMB_SIZE) -> float:
    """Factor from stored-image pixels to thumbnail pixels (PIL's ``thumbnail`` rounding aside)."""
    return min(1.0, size / max(width, height))


def store_image(root: Path, info: ImageInfo, data: bytes) -> tuple[list[Path], bool]:
    """Write the image and its thumbnail if absent. Returns (files written, already existed)."""
    image_file = image_path(root, info.sha256, info.ext)
    thumb_file = thumb_path(root, info.sha256)
    written: list[Path] = []
    existed = image_file.exists()
    # the thumbnail is made before anything is written: an interrupt (Ctrl-C, SIGTERM) while it is made
    # leaves no file behind that the caller has not been told about
    thumb = None if thumb_file.exists() else make_thumbnail(data)
    if not existed:
        _atomic_write(image_file, data)
        written.append(image_file)
    if thumb is not None:
        _atomic_write(thumb_file, thumb)
        written.append(thumb_file)
    return written, existed


def write_thumbnail(root: Path, sha256: str, data: bytes) -> Path:
    """(Re)write the thumbnail of the image whose encoded bytes are ``data``."""
    thumb_file = thumb_path(root, sha256)
    _atomic_write(thumb_file, make_thumbnail(data))
    return thumb_file


def remove_files(root: Path, sha256: str, ext: str) -> list[Path]:
    """Remove a stored image and its thumbnail; returns the files that were there.

    Only the workspace's file rule may call this (see ``engine.integrity``): inside a write
    transaction that found no row and no claim for ``sha256``."""
    removed = []
    for path in (image_path(root, sha256, ext), thumb_path(root, sha256)):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def prefetched(chunks: Sequence[Sequence[Any]], load: Callable[[Any], Any],
               workers: int = 2) -> Iterator[tuple[Any, list]]:
    """``(chunk, [load(item) ...])`` for each chunk, the next chunk loading in threads while the caller works
    on this one (OpenCV decodes without the GIL, so decoding overlaps the model). Holds at most two chunks
    of loaded items; an error loading an item is raised when its chunk is reached."""
    from concurrent.futures import ThreadPoolExecutor

    if not chunks:
        return
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="realcal-decode") as pool:
        pending = pool.map(load, chunks[0])
        for i, chunk in enumerate(chunks):
            loaded = list(pending)
            if i + 1 < len(chunks):
                pending = pool.map(load, chunks[i + 1])
            yield chunk, loaded
