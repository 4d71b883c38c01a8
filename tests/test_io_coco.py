import json

import numpy as np
import pytest

from engine.io import coco, parse
from engine.io.common import run_import
from store import images as store_images
from tests.helpers import make_coco


def _by_file(data):
    images = {im["id"]: im for im in data["images"]}
    out = {}
    for a in data["annotations"]:
        out.setdefault(images[a["image_id"]]["file_name"], []).append(a)
    return out


def test_coco_round_trip_on_real_sample(ws, coco_sample, tmp_path):
    report = run_import(ws, parse("coco", coco_sample), split="train")
    assert report.images == 4 and report.persons == 14 and report.persons_without_keypoints == 2
    assert not report.skipped
    summary = coco.export(ws, tmp_path / "out", splits=["train"])
    exported = json.loads((tmp_path / "out/annotations/person_keypoints_train.json").read_text())
    original = json.loads(coco_sample.read_text())
    a, b = _by_file(original), _by_file(exported)
    assert set(a) == set(b) and summary["splits"]["train"]["persons"] == 14
    for name in a:
        key = lambda ann: ann["bbox"]  # noqa: E731
        for x, y in zip(sorted(a[name], key=key), sorted(b[name], key=key)):
            assert np.allclose(x["keypoints"], y["keypoints"], atol=0.01)
            assert np.allclose(x["bbox"], y["bbox"], atol=0.01)
            assert x["area"] == pytest.approx(y["area"], rel=1e-6)
            assert x["num_keypoints"] == y["num_keypoints"]
            assert x["segmentation"] == y["segmentation"]
            assert (tmp_path / "out/images/train" / name).read_bytes() == \
                (coco_sample.parent / name).read_bytes()


def test_reimporting_an_export_keeps_the_splits(ws, coco_sample, tmp_path):
    from engine.workspace import Workspace

    run_import(ws, parse("coco", coco_sample), split="auto")
    coco.export(ws, tmp_path / "out")
    ws2 = Workspace.init(tmp_path / "ws2")
    for ann in sorted((tmp_path / "out/annotations").glob("*.json")):
        run_import(ws2, parse("coco", ann), split="source")
    with ws.connect() as db1, ws2.connect() as db2:
        s1 = {r["sha256"]: r["split"] for r in store_images.list_images(db1)}
        s2 = {r["sha256"]: r["split"] for r in store_images.list_images(db2)}
        assert s1 == s2


def test_rle_masks_and_segmentation_area(ws, ochuman_sample):
    report = run_import(ws, parse("coco", ochuman_sample))
    assert report.images == 3 and report.persons == 5
    with ws.connect() as db:
        persons = [p for ps in store_images.persons_for_images(
            db, [r["id"] for r in store_images.list_images(db)]).values() for p in ps]
    assert all(p["area_source"] == "segmentation" for p in persons)
    assert all(isinstance(p["segmentation"], dict) and "counts" in p["segmentation"] for p in persons)


def test_auto_split_is_stable_across_reimports(tmp_path, coco_sample):
    from engine.workspace import Workspace

    splits = []
    for name in ("a", "b"):
        w = Workspace.init(tmp_path / name)
        run_import(w, parse("coco", coco_sample), split="auto", split_seed=7)
        with w.connect() as db:
            splits.append({r["sha256"]: r["split"] for r in store_images.list_images(db)})
    assert splits[0] == splits[1]


def test_box_only_persons_are_kept(ws, tmp_path):
    path = make_coco(tmp_path / "d", n=1, keypoints=[0] * 51)
    report = run_import(ws, parse("coco", path))
    assert report.persons == 1 and report.persons_without_keypoints == 1


def test_crowdpose_schema_is_mapped_by_name(ws, tmp_path):
    from engine.io.schemas import CROWDPOSE14

    kps = []
    for i, _ in enumerate(CROWDPOSE14):
        kps += [10 + i, 20 + i, 2]
    path = make_coco(tmp_path / "d", n=1, names=list(CROWDPOSE14), keypoints=kps)
    report = run_import(ws, parse("coco", path))
    assert report.persons == 1 and "crowdpose-14" in report.schema
    with ws.connect() as db:
        p = next(iter(store_images.persons_for_images(db, [1]).values()))[0]
    k = np.asarray(p["keypoints"]).reshape(17, 3)
    assert tuple(k[5]) == (10, 20, 2)           # left_shoulder is crowdpose's first joint
    assert tuple(k[0]) == (0, 0, 0)             # nose: not in crowdpose
    assert p["extra"]["head"] == [22, 32, 2] and p["extra"]["neck"] == [23, 33, 2]
