import numpy as np
import pytest
from scipy.io import savemat

from engine import poses
from engine.io import parse
from engine.io.common import run_import
from store import images as store_images
from tests.helpers import write_image


def _persons(w):
    with w.connect() as db:
        ims = store_images.list_images(db)
        ps = store_images.persons_for_images(db, [i["id"] for i in ims])
        return {i["file_name"]: ps[i["id"]] for i in ims}


def test_lspet_subset_with_absent_images_reported(ws, lspet, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("im00001.jpg\nim00002\n3  # by index\nim04001.jpg\nim09999.jpg\nnot-an-id\n")
    from engine.io.common import read_ids_file

    report = run_import(ws, parse("lsp", lspet), ids=read_ids_file(ids), split="train")
    assert report.images == 3 and report.persons == 3
    assert report.ids_not_found == ["not-an-id"]
    assert report.skipped_by_reason() == {"missing image": 2}
    assert sorted(n for n, _ in report.skipped) == ["images/im04001.jpg", "images/im09999.jpg"]

    from scipy.io import loadmat

    joints = loadmat(str(lspet / "joints.mat"))["joints"]
    persons = _persons(ws)
    k = np.asarray(persons["images/im00001.jpg"][0]["keypoints"]).reshape(17, 3)
    src = joints[:, :, 0]
    # LSP index 0 is the right ankle, 9 the left shoulder, 13 the head top.
    for lsp_i, coco_name in ((0, "right_ankle"), (9, "left_shoulder"), (6, "right_wrist")):
        if src[lsp_i, 2] > 0:
            assert tuple(k[poses.KP[coco_name], :2]) == pytest.approx(tuple(src[lsp_i, :2]), abs=1e-3)
            assert k[poses.KP[coco_name], 2] == 2
    assert (k[:5, 2] == 0).all()  # no face joints in LSP
    extra = persons["images/im00001.jpg"][0]["extra"]
    assert set(extra) == {"neck", "head_top"}


def test_lspet_unannotated_joints_become_v0(ws, lspet):
    from scipy.io import loadmat

    joints = loadmat(str(lspet / "joints.mat"))["joints"][:, :, :4000]
    idx = int(np.argmax((joints[:12, 2, :] == 0).any(axis=0)))
    assert (joints[:12, 2, idx] == 0).any(), "LSPET has images with unannotated joints"
    report = run_import(ws, parse("lsp", lspet), ids=[f"im{idx + 1:05d}.jpg"])
    assert report.images == 1
    k = np.asarray(next(iter(_persons(ws).values()))[0]["keypoints"]).reshape(17, 3)
    lsp_to_coco = {0: 16, 1: 14, 2: 12, 3: 11, 4: 13, 5: 15, 6: 10, 7: 8, 8: 6, 9: 5, 10: 7, 11: 9}
    for li, ci in lsp_to_coco.items():
        expected = 2 if joints[li, 2, idx] > 0 else 0
        assert k[ci, 2] == expected
        if expected == 0:
            assert tuple(k[ci, :2]) == (0, 0)


def test_original_lsp_layout_marks_occlusion(ws, tmp_path):
    root = tmp_path / "lsp"
    write_image(root / "images/im0001.jpg", size=(100, 100))
    joints = np.zeros((3, 14, 1))
    joints[0, :, 0] = np.linspace(10, 90, 14)
    joints[1, :, 0] = np.linspace(10, 90, 14)
    joints[2, 8, 0] = 1  # right shoulder occluded
    savemat(str(root / "joints.mat"), {"joints": joints})
    report = run_import(ws, parse("lsp", root))
    assert report.images == 1 and report.schema == "lsp-14"
    p = next(iter(_persons(ws).values()))[0]
    k = np.asarray(p["keypoints"]).reshape(17, 3)
    assert k[poses.KP["right_shoulder"], 2] == 1 and k[poses.KP["left_shoulder"], 2] == 2
    # the box covers every joint, head top included, and stays inside the image
    assert p["bbox_x"] >= 0 and p["bbox_y"] >= 0
    assert p["bbox_x"] + p["bbox_w"] <= 100 and p["bbox_y"] + p["bbox_h"] <= 100
    assert p["bbox_x"] <= 10 and p["bbox_x"] + p["bbox_w"] >= 90
    assert p["area_source"] == "bbox"
