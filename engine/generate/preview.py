"""Side-by-side previews for the Generate page: the same anchor, pose and seed rendered plainly and with the
chosen compositing settings. Procedural backgrounds only, so no model runs (the app process stays light)."""
from __future__ import annotations

import numpy as np

from engine import media, poses, registry
from engine.component import Resources
from engine.errors import RealcalError
from engine.generate import GenerationRequest
from engine.generate.pose_sources import PoseSourceConfig, sample_pose
from engine.workspace import Workspace
from store import images as store_images

COMPOSITING = ("blend", "colour_match", "match_blur", "match_noise", "clothing_hue_deg", "occluder_p")


def pose_warp_side_by_side(ws: Workspace, generator_params: dict, pose_source: dict, *, seed: int = 0,
                           n: int = 2, size: int = 256) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """``n`` (plain RGB, with-settings RGB, caption) triples; the plain one has every compositing switch off."""
    with ws.connect() as db:
        anchors = store_images.train_anchor_persons(db)
    if not anchors:
        raise RealcalError("no real anchors: import labelled train images first")
    for a in anchors:
        a["path"] = media.image_path(ws.root, a["sha256"], a["ext"])
    chosen_params = {**generator_params, "width": size, "height": size, "background": "procedural"}
    plain_params = {**chosen_params, **{k: v for k, v in registry.config_of("generator", "pose_warp").as_dict().items()
                                        if k in COMPOSITING}}
    chosen, plain = (registry.build("generator", "pose_warp", p) for p in (chosen_params, plain_params))
    for g in (chosen, plain):
        g.setup(Resources())
    cfg = PoseSourceConfig.from_dict(pose_source)
    out = []
    rng = np.random.default_rng(seed)
    for i in range(n):
        pose = sample_pose(anchors, rng, cfg, size, size)
        donor = anchors[int(rng.integers(len(anchors)))]
        by_id = {a["id"]: a for a in anchors}
        req = GenerationRequest(i, seed * 1000 + i, size, size, pose=pose,
                                anchors=[by_id[p] for p in pose.anchor_person_ids] + [donor])
        a, b = plain.generate([req])[0], chosen.generate([req])[0]
        out.append((_drawn(a), _drawn(b), ", ".join(sorted(pose.transform)) or "as sampled"))
    return out


def _drawn(res) -> np.ndarray:
    from PIL import Image

    img = poses.draw_skeleton(Image.fromarray(res.image), [res.persons[0].keypoints], line_width=2, radius=2)
    return np.asarray(img.convert("RGB"))
