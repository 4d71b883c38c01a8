"""The pose-driven generator (engine/generate/pose_warp.py): labels checked from pixels, not from its
transform code. Dots painted at an anchor's joints must land within 1.5 px of the emitted keypoints
after part-based warping into sampled poses, large limb rotations, mirrors and interpolations included."""
import cv2
import numpy as np
import pytest

from engine import poses, registry
from engine.component import Resources
from engine.errors import RealcalError
from engine.generate import GenerationRequest
from engine.generate.pose_sources import PoseSourceConfig, bone_lengths, sample_pose

COLOURS = [tuple(int(c) for c in cv2.cvtColor(np.uint8([[[int(180 * i / 17), 255, 255]]]),
                                               cv2.COLOR_HSV2BGR)[0, 0]) for i in range(17)]
# a standing person facing the camera (their left is the image's right), 200 x 300 px
STANDING = {"nose": (100, 40), "left_eye": (107, 34), "right_eye": (93, 34), "left_ear": (116, 40),
            "right_ear": (84, 40), "left_shoulder": (132, 82), "right_shoulder": (68, 82),
            "left_elbow": (146, 132), "right_elbow": (54, 132), "left_wrist": (152, 180),
            "right_wrist": (48, 180), "left_hip": (120, 165), "right_hip": (80, 165),
            "left_knee": (123, 222), "right_knee": (77, 222), "left_ankle": (125, 278),
            "right_ankle": (75, 278)}


def _anchor(tmp_path, pid, joints=STANDING, name="anchor.png", scale=1.0):
    h, w = int(300 * scale), int(200 * scale)
    img = np.full((h, w, 3), 40, np.uint8)
    k = np.zeros((17, 3))
    for j, jn in enumerate(poses.KEYPOINT_NAMES):
        x, y = (v * scale for v in joints[jn])
        k[j] = (x + 0.5, y + 0.5, 2)
    # a body: thick grey limbs and a torso, so every dot sits on the person's mask
    body = np.zeros((h, w), np.uint8)
    for a, b in poses.SKELETON:
        cv2.line(body, tuple(int(v) for v in k[a, :2]), tuple(int(v) for v in k[b, :2]), 255, int(18 * scale))
    torso = np.array([k[poses.KP[n], :2] for n in ("left_shoulder", "right_shoulder", "right_hip", "left_hip")])
    cv2.fillPoly(body, [torso.astype(np.int32)], 255)
    cv2.circle(body, (int(k[0, 0]), int(k[0, 1])), int(22 * scale), 255, -1)
    img[body > 0] = 128
    for j in range(17):
        cv2.circle(img, (int(k[j, 0]), int(k[j, 1])), 2, COLOURS[j], -1)
    path = tmp_path / name
    cv2.imwrite(str(path), img)
    contours, _ = cv2.findContours(body, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    seg = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
    x, y, bw, bh = cv2.boundingRect(body)
    return {"id": pid, "image_id": pid, "path": path, "keypoints": k.reshape(-1).tolist(), "extra": None,
            "bbox_x": float(x), "bbox_y": float(y), "bbox_w": float(bw), "bbox_h": float(bh),
            "segmentation": seg, "source": "ground_truth", "width": w, "height": h}


def _find_dot(img_bgr, colour, near, radius=7):
    x0, y0 = int(max(0, near[0] - radius)), int(max(0, near[1] - radius))
    win = img_bgr[y0:int(near[1] + radius), x0:int(near[0] + radius)].astype(float)
    d = np.linalg.norm(win - np.array(colour, float), axis=2)
    weight = np.clip(1 - d / 60.0, 0, None) ** 2
    if weight.sum() < 0.5:
        return None
    ys, xs = np.mgrid[0:win.shape[0], 0:win.shape[1]]
    return (float((xs * weight).sum() / weight.sum()) + x0 + 0.5,
            float((ys * weight).sum() / weight.sum()) + y0 + 0.5)


def _generator(**over):
    params = {"width": 320, "height": 320, "background": "procedural", "feather_px": 0.0, "placement": "pose",
              **over}
    gen = registry.build("generator", "pose_warp", params)
    gen.setup(Resources())
    return gen


@pytest.mark.parametrize("mode", ["perturb", "interpolate"])
def test_painted_dots_land_on_the_emitted_keypoints(tmp_path, mode):
    anchors = [_anchor(tmp_path, 1)]
    if mode == "interpolate":   # a second person with other proportions and pose
        other = dict(STANDING, left_wrist=(175, 95), right_wrist=(25, 95), left_knee=(140, 215),
                     left_ankle=(160, 270))
        anchors.append(_anchor(tmp_path, 2, other, "other.png", scale=0.8))
    cfg = PoseSourceConfig(mirror_p=0.5, max_rotate_deg=25, perturb_p=1.0, perturb_deg=60,
                           interpolate_p=1.0 if mode == "interpolate" else 0.0, height_frac=(0.6, 0.8))
    gen = _generator()
    checked, worst, rotated = 0, 0.0, 0
    for seed in range(22):
        rng = np.random.default_rng(100 + seed)
        pose = sample_pose(anchors, rng, cfg, 320, 320)
        rotated += any(abs(a) > 30 for _, a in pose.transform.get("perturb", []))
        res = gen.generate([GenerationRequest(0, seed, 320, 320, pose=pose, anchors=anchors + [anchors[0]])])[0]
        out = cv2.cvtColor(res.image, cv2.COLOR_RGB2BGR)
        k = res.persons[0].keypoints
        mirrored = res.lineage["appearance"]["mirrored"]
        src = {a["id"]: a for a in anchors}[res.lineage["appearance"]["person_id"]]
        for j in range(17):
            if k[j, 2] != 2:
                continue
            painted = poses.FLIP_IDX[j] if mirrored else j
            if poses.as_keypoints(src["keypoints"])[painted, 2] == 0:
                continue
            found = _find_dot(out, COLOURS[painted], k[j, :2])
            assert found is not None, f"seed {seed}: the dot of joint {poses.KEYPOINT_NAMES[j]} is missing"
            err = float(np.hypot(found[0] - k[j, 0], found[1] - k[j, 1]))
            worst = max(worst, err)
            assert err <= 1.5, f"seed {seed}: {poses.KEYPOINT_NAMES[j]} is {err:.2f} px from its dot"
            checked += 1
    assert checked >= 22 * 10 and rotated >= 5, (checked, rotated)


def test_perturbed_limbs_keep_their_bone_lengths_and_follow_the_sampled_pose(tmp_path):
    anchor = _anchor(tmp_path, 1)
    cfg = PoseSourceConfig(mirror_p=0.0, max_rotate_deg=0, scale_range=(1.0, 1.0), perturb_p=1.0, perturb_deg=50,
                           interpolate_p=0.0, height_frac=(0.7, 0.7), max_translate_frac=0.0)
    gen = _generator()
    pose = sample_pose([anchor], np.random.default_rng(3), cfg, 320, 320)
    res = gen.generate([GenerationRequest(0, 1, 320, 320, pose=pose, anchors=[anchor, anchor])])[0]
    k = res.persons[0].keypoints
    labelled = k[:, 2] > 0
    assert np.allclose(k[labelled, :2], pose.keypoints[labelled, :2], atol=1e-6)   # the label is the sampled pose
    assert res.lineage["torso_refit_px"] < 1e-6
    src = bone_lengths(pose.keypoints)
    assert bone_lengths(k) == pytest.approx(src, rel=1e-6)


def test_appearance_swap_placement_and_seamless_compositing_are_recorded(tmp_path):
    a, b = _anchor(tmp_path, 1), _anchor(tmp_path, 2, name="b.png", scale=1.2)
    gen = _generator(swap_p=1.0, placement="anchors", blend="poisson", colour_match=0.5, match_blur=True,
                     match_noise=True, clothing_hue_deg=30, occluder_p=1.0)
    cfg = PoseSourceConfig(interpolate_p=0.0)
    pose = sample_pose([a], np.random.default_rng(0), cfg, 320, 320)
    res = gen.generate([GenerationRequest(0, 4, 320, 320, pose=pose, anchors=[a, b])])[0]
    lin = res.lineage
    assert lin["appearance"]["person_id"] == 2 and lin["appearance"]["swapped"]
    assert lin["placement"]["from_person"] == 2 and lin["compositing"]["blend"] == "poisson"
    assert {"colour_match", "blur_sigma", "noise_sigma"} <= set(lin["compositing"])
    assert lin["clothing_hue_deg"] and lin["occluders"]
    assert res.source_image_ids["cutout"] == [2] and res.source_image_ids["anchor"] == [1, 2]
    assert res.image.shape == (320, 320, 3) and res.persons[0].bbox is not None
    again = gen.generate([GenerationRequest(0, 4, 320, 320, pose=pose, anchors=[a, b])])[0]
    assert np.array_equal(again.image, res.image)                       # same seed, same sample


def _only(anchor, names):
    """The anchor with only ``names`` labelled (the picture keeps the whole body and every dot)."""
    k = poses.as_keypoints(anchor["keypoints"]).copy()
    k[[j for j, n in enumerate(poses.KEYPOINT_NAMES) if n not in names], 2] = 0
    return {**anchor, "keypoints": k.reshape(-1).tolist()}


def _dots_land(res, src):
    out = cv2.cvtColor(res.image, cv2.COLOR_RGB2BGR)
    k, mirrored, n = res.persons[0].keypoints, res.lineage["appearance"]["mirrored"], 0
    for j in np.nonzero(k[:, 2] == 2)[0]:
        painted = poses.FLIP_IDX[j] if mirrored else j
        assert poses.as_keypoints(src["keypoints"])[painted, 2] > 0      # only the appearance's labelled joints
        found = _find_dot(out, COLOURS[painted], k[j, :2])
        assert found is not None and np.hypot(found[0] - k[j, 0], found[1] - k[j, 1]) <= 1.5
        n += 1
    return n


def test_a_pose_that_shares_too_few_joints_with_the_appearance_is_mirrored_or_replaced(tmp_path):
    right = [n for n in poses.KEYPOINT_NAMES if n.startswith("right_")]
    left = [n for n in poses.KEYPOINT_NAMES if n.startswith("left_")]
    gen = _generator()
    cfg = PoseSourceConfig(mirror_p=0.0, perturb_p=0.0, interpolate_p=0.0)
    # a side view labelled on its right side only, in a pose labelled on the left side only: the mirrored
    # appearance carries it (it used to fail the whole generation job)
    a = _only(_anchor(tmp_path, 1), right)
    pose = sample_pose([_only(_anchor(tmp_path, 2, name="b.png"), left)], np.random.default_rng(0), cfg, 320, 320)
    res = gen.generate([GenerationRequest(0, 3, 320, 320, pose=pose, anchors=[a])])[0]
    assert res.lineage["appearance"]["mirrored"] and res.lineage["pose"]["fallback"] is None
    assert _dots_land(res, a) >= 5
    # legs only against arms only: nothing in common either way, so the appearance's own pose is placed
    legs = _only(_anchor(tmp_path, 3, name="c.png"), [n for n in poses.KEYPOINT_NAMES if n.endswith(
        ("_hip", "_knee", "_ankle"))])
    arms = _only(_anchor(tmp_path, 4, name="d.png"), [n for n in poses.KEYPOINT_NAMES if n.endswith(
        ("_shoulder", "_elbow", "_wrist"))])
    pose = sample_pose([arms], np.random.default_rng(1), cfg, 320, 320)
    res = gen.generate([GenerationRequest(0, 5, 320, 320, pose=pose, anchors=[legs])])[0]
    assert "its own pose was placed instead" in res.lineage["pose"]["fallback"]
    assert res.lineage["pose"]["anchors"] == [3]
    assert set(np.nonzero(res.persons[0].keypoints[:, 2] > 0)[0]) <= set(
        np.nonzero(poses.as_keypoints(legs["keypoints"])[:, 2] > 0)[0])
    assert _dots_land(res, legs) >= 4


def test_bad_parameters_and_missing_inputs_are_named():
    with pytest.raises(RealcalError, match="swap_p must be within 0..1"):
        registry.build("generator", "pose_warp", {"swap_p": 2})
    with pytest.raises(RealcalError, match="blend: 'magic' is not one of"):
        registry.build("generator", "pose_warp", {"blend": "magic"})
    gen = _generator()
    with pytest.raises(RealcalError, match="needs a sampled pose"):
        gen.generate([GenerationRequest(0, 1, 320, 320)])
    with pytest.raises(RealcalError, match="real backgrounds need the teacher"):
        registry.build("generator", "pose_warp", {"background": "real"}).setup(None)
