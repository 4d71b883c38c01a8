"""Exports respect review: honeypots and rejected images never leave, synthetic images only from the
named pool (accepted by default), a correction replaces the label it corrects, and the export records
which pool it wrote."""
from __future__ import annotations

import hashlib
import inspect
import json
import time

import numpy as np
import pytest
from click.testing import CliRunner

from engine import registry, review
from engine.cli import main
from engine.io import coco, exporter, parse, yolo_pose
from engine.io.common import run_import
from store import curation as store_curation
from store import images as store_images
from tests.helpers import make_coco


@pytest.fixture
def reviewed(ws, tmp_path):
    """3 real images (2 train, 1 val) and 7 synthetic ones: 6 in the latest curation selection and
    queued with a honeypot; reviewed: accepted, rejected, fixed, the honeypot accepted by mistake,
    three left open; the 7th never curated."""
    run_import(ws, parse("coco", make_coco(tmp_path / "real", n=2, seed=100)), split="train")
    run_import(ws, parse("coco", make_coco(tmp_path / "realval", n=1, seed=200)), split="val")
    run_import(ws, parse("coco", make_coco(tmp_path / "syn", n=7, seed=300)), split="train", kind="synthetic")
    with ws.connect() as db:
        syn = store_images.list_images(db, kinds=["synthetic"])
        db.execute("UPDATE persons SET source = 'conditioning' WHERE image_id IN "
                   f"({', '.join(str(im['id']) for im in syn)})")
        with db.conn:
            run_id = store_curation.create_run(db, None, {"stages": []})
            store_curation.put_selection(db, run_id, [
                {"image_id": im["id"], "rank": i + 1, "priority": 1.0, "components": {}}
                for i, im in enumerate(syn[:6])])
            store_curation.finish_run(db, run_id, calibration={}, funnel=[{"stage": "none"}], set_metrics={})
        review.build_queue(ws, db, overlap=0.0, honeypots=1)
        honeypot = next(im["id"] for im in store_images.list_images(db, kinds=["synthetic"])
                        if im["dataset"] == "honeypots")
        ids = [im["id"] for im in syn]
        plan = {ids[0]: "accept", ids[1]: "reject", ids[2]: "fix", honeypot: "accept"}
        slots = {s["image_id"]: s for s in review.lease(db, "ann", n=10)}
        for image_id, decision in plan.items():
            s = slots[image_id]
            kpts = None
            if decision == "fix":
                kpts = np.asarray(store_images.persons_for_images(db, [image_id])[image_id][0]["keypoints"],
                                  dtype=float).reshape(17, 3)
                kpts[5, :2] += 3.0
            review.decide(db, "ann", s["item_id"], s["slot"], decision, shown_at=time.time() - 2, keypoints=kpts)
        real = [im["id"] for im in store_images.list_images(db, kinds=["real"])]
    return {"ws": ws, "real": real, "syn": ids, "honeypot": honeypot, "accepted": ids[0], "rejected": ids[1],
            "fixed": ids[2], "open": ids[3:6], "uncurated": ids[6]}


def _sha_to_id(ws) -> dict[str, int]:
    with ws.connect() as db:
        return {im["sha256"]: im["id"] for im in store_images.list_images(db)}


def _coco_ids(ws, out) -> dict[int, dict]:
    """Exported image id -> {"split", "annotations", "info"} from a COCO export folder."""
    by_sha = _sha_to_id(ws)
    found: dict[int, dict] = {}
    for path in sorted((out / "annotations").glob("*.json")):
        data = json.loads(path.read_text())
        for im in data["images"]:
            anns = [a for a in data["annotations"] if a["image_id"] == im["id"]]
            found[by_sha[im["realcal_sha256"]]] = {"split": im["split"], "annotations": anns, "info": data["info"]}
    return found


def test_coco_export_leaves_out_honeypots_rejected_and_unreviewed_synthetic(reviewed, tmp_path):
    ws = reviewed["ws"]
    summary = coco.export(ws, tmp_path / "c")
    found = _coco_ids(ws, tmp_path / "c")
    assert reviewed["honeypot"] not in found
    assert reviewed["rejected"] not in found
    assert set(found) == set(reviewed["real"]) | {reviewed["accepted"], reviewed["fixed"]}
    info = found[reviewed["accepted"]]["info"]["realcal"]
    assert info["synthetic_pool"] == "accepted"
    assert info["left_out"] == {"honeypot": 1, "rejected": 1, "synthetic_not_in_pool": 4}
    assert summary["selection"] == info


def test_a_correction_replaces_the_label_it_corrects(reviewed, tmp_path):
    ws = reviewed["ws"]
    coco.export(ws, tmp_path / "c")
    anns = _coco_ids(ws, tmp_path / "c")[reviewed["fixed"]]["annotations"]
    assert [a["realcal_source"] for a in anns] == ["corrected"]
    assert [a["realcal_source"] for a in _coco_ids(ws, tmp_path / "c")[reviewed["accepted"]]["annotations"]] \
        == ["conditioning"]


@pytest.mark.parametrize("pool, extra", [("curated", "open"), ("all", "all")])
def test_other_pools_are_named_and_still_never_leak_rejected_or_honeypots(reviewed, tmp_path, pool, extra):
    ws = reviewed["ws"]
    coco.export(ws, tmp_path / pool, synthetic=pool)
    found = _coco_ids(ws, tmp_path / pool)
    expected = set(reviewed["real"]) | {reviewed["accepted"], reviewed["fixed"]} | set(reviewed["open"])
    if extra == "all":
        expected.add(reviewed["uncurated"])
    assert set(found) == expected
    info = next(iter(found.values()))["info"]["realcal"]
    assert info["synthetic_pool"] == pool
    assert info["left_out"]["honeypot"] == 1 and info["left_out"]["rejected"] == 1


def test_yolo_export_respects_review_and_writes_a_manifest(reviewed, tmp_path):
    ws = reviewed["ws"]
    summary = yolo_pose.export(ws, tmp_path / "y")
    out = tmp_path / "y"
    # file names repeat between the datasets (img0.jpg ...): identify images by content
    shas = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (out / "images").rglob("*.*")}
    by_sha = _sha_to_id(ws)
    assert {by_sha[s] for s in shas} == set(reviewed["real"]) | {reviewed["accepted"], reviewed["fixed"]}
    assert len(list((out / "labels").rglob("*.txt"))) == 5
    manifest = json.loads((out / yolo_pose.MANIFEST_NAME).read_text())
    assert manifest["synthetic_pool"] == "accepted"
    assert manifest["left_out"] == {"honeypot": 1, "rejected": 1, "synthetic_not_in_pool": 4}
    assert summary["manifest"] == str(out / yolo_pose.MANIFEST_NAME)


def test_cli_export_names_the_pool_and_refuses_a_bad_one(reviewed, tmp_path):
    ws = reviewed["ws"]
    runner = CliRunner()
    r = runner.invoke(main, ["-w", str(ws.root), "export", "--format", "coco", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert "left out: 1 honeypots, 1 rejected, 4 synthetic not in the accepted pool" in r.output
    r = runner.invoke(main, ["-w", str(ws.root), "export", "--format", "yolo-pose", str(tmp_path / "y"),
                             "--synthetic", "all", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["selection"]["synthetic_pool"] == "all"
    r = runner.invoke(main, ["-w", str(ws.root), "export", "--format", "coco", str(tmp_path / "x"),
                             "--synthetic", "everything"])
    assert r.exit_code != 0 and "everything" in r.output and not (tmp_path / "x").exists()


def test_every_export_format_takes_a_synthetic_pool_and_the_cli_refuses_one_that_does_not(reviewed, tmp_path):
    for fmt in registry.names("export_format"):
        assert "synthetic" in inspect.signature(exporter(fmt)).parameters, fmt

    def old_style(ws, out, *, splits, sources, kinds, progress):   # would export everything
        raise AssertionError("must not be called")

    registry.register("export_format", "old-style")(old_style)
    try:
        r = CliRunner().invoke(main, ["-w", str(reviewed["ws"].root), "export", "--format", "old-style",
                                      str(tmp_path / "o")])
    finally:
        registry.unregister("export_format", "old-style")
    assert r.exit_code != 0 and "synthetic pool" in r.output
    assert "Traceback" not in r.output


def test_an_unknown_pool_in_the_api_is_a_clear_error(reviewed, tmp_path):
    from engine.errors import DatasetError

    with pytest.raises(DatasetError, match="unknown synthetic pool"):
        coco.export(reviewed["ws"], tmp_path / "c", synthetic="reviewed")
    assert not (tmp_path / "c").exists()
