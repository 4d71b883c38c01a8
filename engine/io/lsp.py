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

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from engine import poses
from engine.errors import DatasetError
from engine.io import schemas
from engine.io.common import ImageRecord, ParsedDataset, PersonRecord
from engine.registry import register

# Reads ``joints`` in a child interpreter: scipy's MATLAB reader is not hardened against damaged files
# (some crash the process with a segmentation fault), so a damaged file costs a child, not the import.
_READER = """
import sys
if sys.path and sys.path[0] == "":   # never import from the current folder
    del sys.path[0]
import numpy as np
from scipy.io import loadmat
try:
    mat = loadmat(sys.argv[1], variable_names=["joints"])
except NotImplementedError:
    sys.exit(3)
except Exception as exc:
    print(" ".join(str(exc).split())[:300] or type(exc).__name__, file=sys.stderr)
    sys.exit(2)
joints = mat.get("joints")
if joints is None:
    sys.exit(5)
if not isinstance(joints, np.ndarray) or joints.dtype.kind not in "iuf":
    print(f"{type(joints).__name__} of {getattr(joints, 'dtype', '?')}", file=sys.stderr)
    sys.exit(4)
np.save(sys.stdout.buffer, joints.astype(np.float64), allow_pickle=False)
"""
READ_TIMEOUT_S = 300


def _read_joints(mat_path: Path) -> np.ndarray:
    """The ``joints`` matrix of ``mat_path`` as float64; DatasetError for anything else."""
    try:
        proc = subprocess.run([sys.executable, "-c", _READER, str(mat_path)], capture_output=True,
                              timeout=READ_TIMEOUT_S, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        raise DatasetError(f"{mat_path}: reading it took over {READ_TIMEOUT_S} s; the file looks damaged") from None
    message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    detail = message[-1] if message else ""
    if proc.returncode == 3:
        raise DatasetError(f"{mat_path} is a MATLAB v7.3 (HDF5) file; save it as -v7 or older")
    if proc.returncode == 5:
        raise DatasetError(f"{mat_path} has no matrix named 'joints' (LSP: 3 x 14 x N, LSPET: 14 x 3 x N)")
    if proc.returncode == 4:
        raise DatasetError(f"{mat_path}: 'joints' must be a numeric matrix (LSP: 3 x 14 x N, LSPET: 14 x 3 x N), "
                           f"found {detail}")
    if proc.returncode < 0:
        raise DatasetError(f"{mat_path} is not a readable MATLAB file: the reader crashed on it "
                           f"(signal {-proc.returncode}); the file is damaged")
    if proc.returncode != 0:
        raise DatasetError(f"{mat_path} is not a readable MATLAB file: {detail}")
    try:
        return np.load(io.BytesIO(proc.stdout), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"{mat_path} is not a readable MATLAB file: {exc}") from None


@register("import_format", "lsp")
def parse(path: str | Path) -> ParsedDataset:
    path = Path(path)
    try:
        mat_path = path if path.is_file() else path / "joints.mat"
        found = mat_path.is_file()
    except (OSError, ValueError):
        found = False
    if not found:
        raise DatasetError(f"{path}: no joints.mat found; give the LSP/LSPET folder or its joints.mat")
    joints = _read_joints(mat_path)
    if joints.ndim != 3:
        raise DatasetError(f"{mat_path} has no 3-D matrix named 'joints' (LSP: 3 x 14 x N, "
                           f"LSPET: 14 x 3 x N)")
    if joints.shape[:2] == (14, 3):
        layout, arr = "lspet", joints                                    # (14, 3, N)
    elif joints.shape[:2] == (3, 14):
        layout, arr = "lsp", np.transpose(joints, (1, 0, 2))
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
