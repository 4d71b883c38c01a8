"""Leeds Sports Pose (LSP) and LSP Extended (LSPET) ``joints.mat`` import.

``PATH`` is the dataset folder (holding ``joints.mat`` and ``images/``) or the ``.mat`` file.
Two layouts exist:

* LSPET: ``joints`` of shape 14 x 3 x N; the flag is 1 for an annotated joint and 0 for a joint
  nobody annotated (its coordinates can be garbage): imported as COCO v=2 and v=0.
* LSP: shape 3 x 14 x N; every joint is annotated and the flag marks occlusion (1 = occluded):
  imported as v=1 (occluded) and v=2.

The 12 limb joints map onto COCO-17 (LSP lists right before left); COCO's face joints get v=0;
LSP's neck and head top are kept as extra joints. LSP has no boxes: the box is the labelled
joints' extent (head top included) padded by 10 % of its longer side each way and clipped to
the image, and the OKS scale is 0.53 x its area. Annotations whose image file is absent are
skipped and counted.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine import poses
from engine.errors import DatasetError
from engine.io import schemas
from engine.io.common import ImageRecord, ParsedDataset, PersonRecord
from engine.registry import register


@register("import_format", "lsp")
def parse(path: str | Path) -> ParsedDataset:
    path = Path(path)
    mat_path = path if path.is_file() else path / "joints.mat"
    if not mat_path.is_file():
        raise DatasetError(f"{path}: no joints.mat found; give the LSP/LSPET folder or its joints.mat")
    try:
        from scipy.io import loadmat

        mat = loadmat(str(mat_path))
    except NotImplementedError:
        raise DatasetError(f"{mat_path} is a MATLAB v7.3 (HDF5) file; save it as -v7 or older") from None
    except Exception as exc:  # scipy raises several types for a corrupt file
        raise DatasetError(f"{mat_path} is not a readable MATLAB file: {exc}") from None
    joints = mat.get("joints")
    if not isinstance(joints, np.ndarray) or joints.ndim != 3:
        raise DatasetError(f"{mat_path} has no 3-D matrix named 'joints' (LSP: 3 x 14 x N, "
                           f"LSPET: 14 x 3 x N)")
    if joints.shape[:2] == (14, 3):
        layout, arr = "lspet", joints.astype(float)                      # (14, 3, N)
    elif joints.shape[:2] == (3, 14):
        layout, arr = "lsp", np.transpose(joints.astype(float), (1, 0, 2))
    else:
        raise DatasetError(
            f"{mat_path}: 'joints' has shape {joints.shape}; the LSP schema has 14 joints "
            f"(LSP: 3 x 14 x N, LSPET: 14 x 3 x N). realcal maps lsp-14 onto {poses.SCHEMA_NAME}")
    mapping = schemas.resolve(schemas.LSP14)
    image_dir = mat_path.parent / "images"
    if not image_dir.is_dir():
        image_dir = mat_path.parent
    n = arr.shape[2]
    digits = 5 if layout == "lspet" else 4
    records = []
    for i in range(n):
        name = f"im{i + 1:0{digits}d}.jpg"
        img = image_dir / name
        src = arr[:, :, i].copy()                                       # (14, 3): x, y, flag
        if layout == "lspet":
            vis = np.where(src[:, 2] > 0.5, 2.0, 0.0)
        else:
            vis = np.where(src[:, 2] > 0.5, 1.0, 2.0)
        src[:, 2] = vis
        src[vis == 0, :2] = 0.0
        k = np.zeros((poses.NUM_KEYPOINTS, 3))
        for ci, si in enumerate(mapping.to_coco):
            if si is not None:
                k[ci] = src[si]
        extra = {jn: src[si].tolist() for jn, si in mapping.extras.items()}
        persons = [PersonRecord(keypoints=k, extra=extra, source_ann_id=str(i + 1))]
        problem = None
        if not (src[:, 2] > 0).any():
            problem = "bad annotation: no joint is annotated"
        records.append(ImageRecord(file_name=f"images/{name}" if image_dir.name == "images" else name,
                                   path=img if img.is_file() else None, persons=persons,
                                   source_id=str(i + 1), problem=problem))
    dataset = "lspet" if layout == "lspet" else "lsp"
    notes = [f"{layout.upper()} layout, {n} annotations in {mat_path.name}"]
    return ParsedDataset("lsp", dataset, str(mat_path.resolve()), records, [], notes,
                         schema="lsp-14")
