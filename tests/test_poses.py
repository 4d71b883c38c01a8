import copy
import json
import math

import numpy as np
import pytest
from PIL import Image

from engine import poses


def test_schema_is_consistent():
    assert len(poses.KEYPOINT_NAMES) == 17 == len(poses.SIGMAS) == len(poses.FLIP_IDX)
    for i, j in enumerate(poses.FLIP_IDX):
        a, b = poses.KEYPOINT_NAMES[i], poses.KEYPOINT_NAMES[j]
        assert a.replace("left", "right") == b or a.replace("right", "left") == b or a == b == "nose"
    cat = poses.coco_category()
    assert min(min(e) for e in cat["skeleton"]) == 1 and max(max(e) for e in cat["skeleton"]) == 17


def _coco_gt_and_predictions(coco_json, rng):
    data = json.loads(coco_json.read_text())
    anns = [a for a in data["annotations"] if a["num_keypoints"] > 0]
    preds = []
    for a in anns:
        k = np.asarray(a["keypoints"], dtype=float).reshape(17, 3)
        noise = rng.normal(0, 6 + 10 * rng.random(), size=(17, 2))
        p = k.copy()
        p[:, :2] += noise
        p[:, 2] = 1.0
        preds.append({"image_id": a["image_id"], "category_id": 1, "score": 0.9,
                      "keypoints": p.reshape(-1).tolist()})
    return data, anns, preds


def test_oks_matches_pycocotools(coco_sample, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    data, anns, preds = _coco_gt_and_predictions(coco_sample, rng)
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps(data))
    coco = COCO(str(gt_file))
    dt = coco.loadRes(copy.deepcopy(preds))
    ev = COCOeval(coco, dt, "keypoints")
    ev.params.useCats = 1
    ev.evaluate()
    checked = 0
    for image_id in {a["image_id"] for a in anns}:
        ious = ev.ious[(image_id, 1)]
        gts = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, catIds=[1]))]
        dts = sorted(dt.loadAnns(dt.getAnnIds(imgIds=image_id)), key=lambda d: -d["score"])
        for gi, g in enumerate(gts):
            if g["num_keypoints"] == 0:
                continue
            for di, d in enumerate(dts):
                ours = poses.oks(np.reshape(g["keypoints"], (17, 3)), np.reshape(d["keypoints"], (17, 3)),
                                 g["area"])
                assert ours == pytest.approx(ious[di, gi], abs=1e-9)
                checked += 1
    assert checked >= 10


def test_oks_basic_properties():
    gt = np.zeros((17, 3))
    gt[:, 0] = np.arange(17) * 10
    gt[:, 1] = 50
    gt[:, 2] = 2
    assert poses.oks(gt, gt, 1000) == pytest.approx(1.0)
    far = gt.copy()
    far[:, 0] += 1000
    assert poses.oks(gt, far, 1000) < 1e-6
    gt_none = gt.copy()
    gt_none[:, 2] = 0
    assert math.isnan(poses.oks(gt_none, gt, 1000))
    m = poses.oks_matrix(np.stack([gt, gt]), np.stack([gt, far, gt]), [1000, 1000])
    assert m.shape == (2, 3) and m[0, 0] == pytest.approx(1) and m[1, 2] == pytest.approx(1)


def test_object_area_convention():
    assert poses.object_area(1234.0, (0, 0, 10, 20)) == (1234.0, "segmentation")
    assert poses.object_area(None, (0, 0, 10, 20)) == (pytest.approx(0.53 * 200), "bbox")


def _person(points: dict[str, tuple[float, float]]) -> np.ndarray:
    k = np.zeros((17, 3))
    for name, (x, y) in points.items():
        k[poses.KP[name]] = (x, y, 2)
    return k


def test_pck_hand_worked():
    # Torso diagonal: left shoulder (0, 0) to right hip (30, 40): 50 px; alpha 0.2 -> 10 px.
    gt = _person({"left_shoulder": (0, 0), "right_hip": (30, 40), "right_shoulder": (30, 0),
                  "left_hip": (0, 40), "left_wrist": (100, 100)})
    pred = gt.copy()
    pred[poses.KP["left_wrist"], :2] = (106, 108)     # 10 px away: correct (<=)
    pred[poses.KP["left_hip"], :2] = (0, 51)          # 11 px away: wrong
    per_joint = poses.pck_per_joint(gt, pred, alpha=0.2)
    assert per_joint[poses.KP["left_wrist"]] == 1.0
    assert per_joint[poses.KP["left_hip"]] == 0.0
    assert np.isnan(per_joint[poses.KP["nose"]])      # unlabelled: not scored
    assert poses.pck(gt, pred) == pytest.approx(4 / 5)
    assert poses.pck(gt, None) == 0.0


def test_pck_torso_fallback_and_undefined():
    # Left shoulder missing: right shoulder (0, 0) to left hip (0, 20) = 20 px, threshold 4 px.
    gt = _person({"right_shoulder": (0, 0), "left_hip": (0, 20), "right_hip": (10, 20),
                  "nose": (50, 50)})
    assert poses.torso_diameter(gt) == pytest.approx(20)
    pred = gt.copy()
    pred[poses.KP["nose"], :2] = (53, 50)             # 3 px: correct
    assert poses.pck_per_joint(gt, pred)[poses.KP["nose"]] == 1.0
    pred[poses.KP["nose"], :2] = (55, 50)             # 5 px: wrong
    assert poses.pck_per_joint(gt, pred)[poses.KP["nose"]] == 0.0
    no_torso = _person({"nose": (1, 1), "left_wrist": (5, 5)})
    assert math.isnan(poses.pck(no_torso, no_torso))


def test_pck_min_confidence_counts_low_confidence_as_missed():
    gt = _person({"left_shoulder": (0, 0), "right_hip": (30, 40), "left_wrist": (5, 5)})
    pred = gt.copy()
    pred[:, 2] = 0.9
    pred[poses.KP["left_wrist"], 2] = 0.1
    assert poses.pck_per_joint(gt, pred, min_confidence=0.5)[poses.KP["left_wrist"]] == 0.0
    assert poses.pck_per_joint(gt, pred)[poses.KP["left_wrist"]] == 1.0


def test_flip_swaps_sides_and_mirrors():
    gt = _person({"left_shoulder": (10, 5), "right_shoulder": (30, 5)})
    flipped = poses.flip_keypoints(gt, width=100)
    assert tuple(flipped[poses.KP["right_shoulder"], :2]) == (90, 5)
    assert tuple(flipped[poses.KP["left_shoulder"], :2]) == (70, 5)
    assert np.allclose(poses.flip_keypoints(flipped, 100), gt)


def test_draw_skeleton_marks_joints_and_limbs():
    img = Image.new("RGB", (200, 200))
    k = _person({"left_shoulder": (50, 50), "left_elbow": (50, 150)})
    out = poses.draw_skeleton(img, [k])
    arr = np.asarray(out)
    assert arr[100, 50].sum() > 0          # on the limb
    assert arr[50, 50].tolist() == list(poses.LEFT_COLOUR)
    assert arr[10, 150].sum() == 0         # elsewhere untouched
    assert np.asarray(img).sum() == 0      # the input is not modified
    half = poses.draw_skeleton(Image.new("RGB", (100, 100)), [k], scale=0.5)
    assert np.asarray(half)[25, 25].tolist() == list(poses.LEFT_COLOUR)


def test_limb_angles_and_body_orientation_hand_worked():
    k = _person({"left_shoulder": (10, 10), "left_elbow": (10, 30), "right_shoulder": (30, 10),
                 "right_elbow": (50, 10), "left_hip": (12, 50), "right_hip": (28, 50)})
    a = poses.limb_angles(k)
    assert a["left upper arm"] == pytest.approx(0)        # hanging straight down
    assert a["right upper arm"] == pytest.approx(90)      # pointing to +x
    assert "left forearm" not in a
    assert poses.body_orientation(k) == pytest.approx(0)  # upright
    inverted = k.copy()
    inverted[:, 1] = 100 - inverted[:, 1]
    inverted[~(k[:, 2] > 0)] = 0
    assert abs(poses.body_orientation(inverted)) == pytest.approx(180)
