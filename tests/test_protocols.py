"""Evaluation protocols on cases with known answers: no model decides what is ignored."""
import numpy as np
import pytest

from engine import poses
from engine.errors import RealcalError
from engine.train import protocols


def _scene(n=20, seed=0):
    """One labelled person per image (LSP-style), and a perfect detection of each."""
    rng = np.random.default_rng(seed)
    gt = {"images": [], "annotations": [], "categories": [poses.coco_category()]}
    dets = []
    for i in range(1, n + 1):
        gt["images"].append({"id": i, "width": 400, "height": 400})
        k = np.zeros((17, 3))
        k[:, 0], k[:, 1], k[:, 2] = rng.uniform(40, 160, 17), rng.uniform(40, 200, 17), 2
        box = list(poses.bbox_from_points(k))
        gt["annotations"].append({"id": 100 + i, "image_id": i, "category_id": 1, "keypoints": k.reshape(-1).tolist(),
                                  "num_keypoints": 17, "bbox": box, "area": poses.bbox_area_scale(box), "iscrowd": 0})
        dets.append({"image_id": i, "category_id": 1, "score": 0.9, "keypoints": k.reshape(-1).tolist(), "box": box})
    return gt, dets


def _person_elsewhere(image_id, score=0.95):
    """A confident detection of somebody in the image's other half (unlabelled bystander or hallucination)."""
    k = np.zeros((17, 3))
    k[:, 0], k[:, 1], k[:, 2] = np.linspace(260, 330, 17), np.linspace(220, 380, 17), 1
    return {"image_id": image_id, "category_id": 1, "score": score, "keypoints": k.reshape(-1).tolist(),
            "box": [255.0, 215.0, 80.0, 170.0]}


@pytest.mark.parametrize("protocol", ["coco", "annotated_person"])
def test_a_perfect_model_scores_one(protocol):
    gt, dets = _scene()
    m, rows = protocols.score(gt, dets, protocol)
    assert m["AP"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0)
    assert m["PCK@0.2"] == pytest.approx(1.0) and m["mean OKS"] == pytest.approx(1.0) and len(rows) == 20


def test_a_detection_elsewhere_changes_nothing_under_the_annotated_person_protocol():
    gt, dets = _scene()
    _, noisy = _scene()
    rng = np.random.default_rng(1)
    for d in noisy:   # an imperfect model, so AP is not at its ceiling either way
        k = np.array(d["keypoints"]).reshape(17, 3)
        k[:, :2] += rng.normal(0, 6, (17, 2))
        d["keypoints"], d["score"] = k.reshape(-1).tolist(), float(rng.uniform(0.3, 0.9))
    extra = [_person_elsewhere(im["id"]) for im in gt["images"]]
    base, base_rows = protocols.score(gt, noisy, "annotated_person")
    more, more_rows = protocols.score(gt, noisy + extra, "annotated_person")
    for k in ("AP", "AP50", "AP75", "PCK@0.2", "mean OKS"):
        assert more[k] == base[k], k
    assert base_rows == more_rows and more["scored_detections"] == base["scored_detections"] == 20
    # the COCO protocol (fully-labelled data) counts them as false positives
    assert protocols.score(gt, dets + extra, "coco")[0]["AP"] < 0.9


def test_a_duplicate_on_the_labelled_person_is_still_a_false_positive():
    gt, dets = _scene()
    dup = []
    for d in dets:
        k = np.array(d["keypoints"]).reshape(17, 3)
        k[:, :2] += 40                                  # wrong joints, box overlapping the person
        dup.append({**d, "score": 0.95, "keypoints": k.reshape(-1).tolist(),
                    "box": [d["box"][0] + 10, d["box"][1] + 10, d["box"][2], d["box"][3]]})
    m, _ = protocols.score(gt, dets + dup, "annotated_person")
    assert m["AP"] < 0.9 and m["scored_detections"] == 40


def test_per_person_scores_take_the_most_confident_detection_not_the_best_guess():
    """A model cannot raise PCK by adding many low-confidence guesses: the person is scored by its most
    confident attributed detection."""
    gt, perfect = _scene()
    _, bad = _scene(seed=5)                           # confident but wrong joints, on the person's box
    for d, g in zip(bad, gt["annotations"]):
        d["box"] = g["bbox"]
    wrong, _ = protocols.score(gt, bad, "annotated_person")
    spray = [{**d, "score": 0.01} for d in perfect]   # the right answer, at 1 % confidence
    sprayed, _ = protocols.score(gt, bad + spray, "annotated_person")
    assert sprayed["PCK@0.2"] == wrong["PCK@0.2"] < 0.5 and sprayed["mean OKS"] == wrong["mean OKS"]


def test_attribution_by_keypoints_when_the_box_is_off():
    gt, dets = _scene(n=5)
    for d in dets:
        d["box"] = [0.0, 0.0, 5.0, 5.0]               # a useless box, perfect keypoints
    m, _ = protocols.score(gt, dets, "annotated_person")
    assert m["AP"] == pytest.approx(1.0) and m["PCK@0.2"] == pytest.approx(1.0)


def test_a_missed_person_scores_zero_and_counts_in_recall():
    gt, dets = _scene(n=10)
    m, rows = protocols.score(gt, dets[:5], "annotated_person")
    assert m["recall (a detection on the person)"] == pytest.approx(0.5)
    assert sorted(r["pck"] for r in rows)[:5] == [0.0] * 5


def test_stored_detections_without_boxes_use_their_keypoints_extent():
    gt, dets = _scene(n=5)
    for d in dets:
        d.pop("box")
    assert protocols.score(gt, dets, "annotated_person")[0]["AP"] == pytest.approx(1.0)


def test_protocol_names_are_checked_and_auto_follows_the_import_format():
    with pytest.raises(RealcalError, match="unknown evaluation protocol"):
        protocols.check("teacher")
    assert protocols.for_formats({"lsp"}) == "annotated_person"
    assert protocols.for_formats({"coco", "yolo-pose"}) == "coco"
    assert protocols.for_formats({"lsp"}, "coco") == "coco"
    with pytest.raises(RealcalError, match="auto"):
        protocols.score(*_scene(n=2), "auto")
