import numpy as np
import pytest
import yaml

from engine.io import parse, yolo_pose
from engine.io.common import run_import
from engine.workspace import Workspace
from store import images as store_images
from tests.helpers import make_coco, make_yolo


def _persons_by_sha(w):
    with w.connect() as db:
        ims = store_images.list_images(db)
        persons = store_images.persons_for_images(db, [i["id"] for i in ims])
        return {i["sha256"]: (i["split"], persons[i["id"]]) for i in ims}


def test_yolo_round_trip_on_real_sample(ws, coco_sample, tmp_path):
    run_import(ws, parse("coco", coco_sample), split="auto")
    summary = yolo_pose.export(ws, tmp_path / "yolo")
    data = yaml.safe_load((tmp_path / "yolo/data.yaml").read_text())
    assert data["path"] == str((tmp_path / "yolo").resolve())
    assert data["kpt_shape"] == [17, 3] and data["flip_idx"][:3] == [0, 2, 1]
    ws2 = Workspace.init(tmp_path / "ws2")
    report = run_import(ws2, parse("yolo-pose", tmp_path / "yolo"))
    assert report.images == 4 and report.persons == sum(s["persons"] for s in summary["splits"].values())
    a, b = _persons_by_sha(ws), _persons_by_sha(ws2)
    assert a.keys() == b.keys()
    for sha in a:
        assert a[sha][0] == b[sha][0]                    # the split survives the round trip
        ka = sorted((p["bbox_x"], p["keypoints"]) for p in a[sha][1] if not p["iscrowd"])
        kb = sorted((p["bbox_x"], p["keypoints"]) for p in b[sha][1])
        assert len(ka) == len(kb)
        for (xa, pa), (xb, pb) in zip(ka, kb):
            assert xa == pytest.approx(xb, abs=0.05)
            assert np.allclose(pa, pb, atol=0.05)


def test_exported_labels_pass_ultralytics_verification(ws, coco_sample, tmp_path):
    from ultralytics.data.utils import verify_image_label

    run_import(ws, parse("coco", coco_sample), split="train")
    yolo_pose.export(ws, tmp_path / "yolo")
    images = sorted((tmp_path / "yolo/images/train").iterdir())
    assert images
    for im in images:
        lb = tmp_path / "yolo/labels/train" / f"{im.stem}.txt"
        out = verify_image_label((str(im), str(lb), "", True, 1, 17, 3, False))
        nm, nf, ne, nc, msg = out[-5:]
        assert nc == 0, msg
        assert out[0] is not None and out[1].shape[1] == 5 and out[4].shape[1:] == (17, 3)


def test_yolo_import_keeps_declared_splits_and_visibility(ws, tmp_path):
    path = make_yolo(tmp_path / "y", n=2)
    report = run_import(ws, parse("yolo-pose", path))
    assert report.by_split == {"train": 1, "val": 1}
    p = _persons_by_sha(ws)
    for _split, persons in p.values():
        k = np.asarray(persons[0]["keypoints"]).reshape(17, 3)
        assert k[0, 2] == 0 and (k[1:, 2] == 2).all()
        assert persons[0]["area_source"] == "bbox"
        assert persons[0]["area"] == pytest.approx(0.53 * persons[0]["bbox_w"] * persons[0]["bbox_h"])


def test_image_without_label_file_is_a_background_image(ws, tmp_path):
    path = make_yolo(tmp_path / "y", n=2)
    (tmp_path / "y/labels/val/im1.txt").unlink()
    report = run_import(ws, parse("yolo-pose", path))
    assert report.images == 2 and report.persons == 1


def test_training_sets_and_the_export_format_share_one_writer(ws, tmp_path):
    from engine.train.manifest import build_manifest, export_yolo

    run_import(ws, parse("coco", make_coco(tmp_path / "a", n=3)), split="train")
    run_import(ws, parse("coco", make_coco(tmp_path / "b", n=2, seed=10)), split="val")
    m = build_manifest(ws, {"real_train": {"count": 3, "seed": 0}})
    train_yaml = yaml.safe_load(export_yolo(ws, m["id"], tmp_path / "t").read_text())
    yolo_pose.export(ws, tmp_path / "e")
    export_yaml = yaml.safe_load((tmp_path / "e/data.yaml").read_text())
    assert list(train_yaml) == ["path", "train", "val", "kpt_shape", "flip_idx", "names", "kpt_names"]
    assert {**train_yaml, "path": None} == {**export_yaml, "path": None}
    for split in ("train", "val"):
        assert sorted(p.read_text() for p in (tmp_path / "t/labels" / split).iterdir()) == \
            sorted(p.read_text() for p in (tmp_path / "e/labels" / split).iterdir())
    ws2 = Workspace.init(tmp_path / "ws2")  # a training set re-imports, joints mapped by kpt_names
    assert run_import(ws2, parse("yolo-pose", tmp_path / "t")).persons == 5
