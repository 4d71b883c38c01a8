"""Keypoint schemas realcal can map onto COCO-17.

A dataset declaring another schema is refused with a message naming both, unless a mapping
exists here: the known schemas below, or any list of names that contains all 17 COCO names
(e.g. COCO-WholeBody's body part), whose other joints are kept as extra joints.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.errors import DatasetError
from engine.poses import KEYPOINT_NAMES, SCHEMA_NAME

# Leeds Sports Pose order (joints.mat), named in COCO's vocabulary where a joint exists there.
LSP14 = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
         "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
         "left_wrist", "neck", "head_top")
CROWDPOSE14 = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
               "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
               "right_ankle", "head", "neck")
KNOWN_SCHEMAS: dict[str, tuple[str, ...]] = {
    SCHEMA_NAME: KEYPOINT_NAMES,
    "lsp-14": LSP14,
    "crowdpose-14": CROWDPOSE14,
}


@dataclass
class SchemaMapping:
    name: str
    source_names: tuple[str, ...]
    to_coco: list[int | None]                      # for each COCO joint, the source index or None
    extras: dict[str, int] = field(default_factory=dict)  # extra joint name -> source index

    @property
    def identity(self) -> bool:
        return self.to_coco == list(range(len(KEYPOINT_NAMES))) and not self.extras


def _by_name(name: str, source_names: Sequence[str]) -> SchemaMapping:
    index = {n: i for i, n in enumerate(source_names)}
    to_coco = [index.get(n) for n in KEYPOINT_NAMES]
    extras = {n: i for i, n in enumerate(source_names) if n not in KEYPOINT_NAMES}
    return SchemaMapping(name, tuple(source_names), to_coco, extras)


def resolve(source_names: Sequence[str], where: str = "the file") -> SchemaMapping:
    names = tuple(str(n).strip().lower().replace(" ", "_") for n in source_names)
    for schema, known in KNOWN_SCHEMAS.items():
        if names == known:
            return _by_name(schema, names)
    if len(set(names)) == len(names) and set(KEYPOINT_NAMES) <= set(names):
        return _by_name(f"{len(names)}-keypoint superset of {SCHEMA_NAME}", names)
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    raise DatasetError(
        f"{where} declares a {len(names)}-keypoint schema ({shown}), but realcal stores "
        f"{SCHEMA_NAME} ({', '.join(KEYPOINT_NAMES)}) and no mapping exists from that schema. "
        f"Known mappings: {', '.join(k for k in KNOWN_SCHEMAS if k != SCHEMA_NAME)}, and any schema "
        f"whose names include all 17 COCO names. Convert the file to COCO-17 names first.")
