"""A plain folder of unlabelled images (``--format images``), e.g. for pseudo-labelling."""
from __future__ import annotations

from pathlib import Path

from engine.errors import DatasetError
from engine.io.common import ImageRecord, ParsedDataset, list_image_files
from engine.registry import register


@register("import_format", "images")
def parse(path: str | Path) -> ParsedDataset:
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path} is not a folder of images")
    files = list_image_files(path)
    if not files:
        raise DatasetError(f"{path} holds no image files (.jpg, .jpeg, .png, .bmp, .webp, .tif)")
    records = [ImageRecord(file_name=f.relative_to(path).as_posix(), path=f, source_id=f.stem)
               for f in files]
    return ParsedDataset("images", path.resolve().name, str(path.resolve()), records)
