"""Importers and exporters, one module per format."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from engine.errors import DatasetError

IMPORT_FORMATS = ("coco", "yolo-pose", "lsp", "images")
EXPORT_FORMATS = ("coco", "yolo-pose")


def parse(fmt: str, path: str | Path, **options):
    """Parse a dataset in ``fmt`` without touching any workspace."""
    if fmt == "coco":
        from engine.io import coco

        return coco.parse(path, image_root=options.get("image_root"))
    if fmt == "yolo-pose":
        from engine.io import yolo_pose

        return yolo_pose.parse(path)
    if fmt == "lsp":
        from engine.io import lsp

        return lsp.parse(path)
    if fmt == "images":
        from engine.io import images

        return images.parse(path)
    raise DatasetError(f"unknown format {fmt!r}; choose one of {', '.join(IMPORT_FORMATS)}")


def exporter(fmt: str) -> Callable:
    if fmt == "coco":
        from engine.io import coco

        return coco.export
    if fmt == "yolo-pose":
        from engine.io import yolo_pose

        return yolo_pose.export
    raise DatasetError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
