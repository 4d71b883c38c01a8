"""Every bad-input case: whole-file problems abort and change nothing; record problems skip."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy.io import savemat

from engine.cli import main
from engine.errors import DatasetError, ImportAborted
from engine.io import parse
from engine.io.common import run_import
from tests.conftest import snapshot
from tests.helpers import make_coco, make_yolo, write_image


def cli(ws, *args):
    result = CliRunner().invoke(main, ["-w", str(ws.root), *map(str, args)])
    assert "Traceback" not in result.output
    return result


def assert_refused(ws, args, match):
    before = snapshot(ws)
    result = cli(ws, "import", *args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and match in result.output, result.output
    assert snapshot(ws) == before


# ----------------------------------------------------------------------------- whole file

def test_malformed_json(ws, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [ {"id": 1, ')
    assert_refused(ws, ["--format", "coco", bad], "not valid JSON")


def test_json_that_is_not_coco(ws, tmp_path):
    bad = tmp_path / "list.json"
    bad.write_text("[1, 2, 3]")
    assert_refused(ws, ["--format", "coco", bad], "not a COCO annotation file")


def test_wrong_keypoint_count_for_declared_schema(ws, tmp_path):
    path = make_coco(tmp_path / "d", n=2)
    data = json.loads(path.read_text())
    data["annotations"][1]["keypoints"] = data["annotations"][1]["keypoints"][:48]
    path.write_text(json.dumps(data))
    assert_refused(ws, ["--format", "coco", path], "has 48 keypoint values")


def test_unknown_schema_names_both(ws, tmp_path):
    names = [f"joint_{i}" for i in range(5)]
    path = make_coco(tmp_path / "d", n=1, names=names, keypoints=[1, 1, 2] * 5)
    before = snapshot(ws)
    result = cli(ws, "import", "--format", "coco", path)
    assert result.exit_code == 1
    assert "5-keypoint schema (joint_0" in result.output and "coco-17 (nose, left_eye" in result.output
    assert snapshot(ws) == before


@pytest.mark.parametrize("file_name", ["../outside.jpg", "/etc/passwd", "a/../../x.jpg"])
def test_path_escaping_the_dataset_folder(ws, tmp_path, file_name):
    path = make_coco(tmp_path / "d", n=2)
    write_image(tmp_path / "outside.jpg")
    data = json.loads(path.read_text())
    data["images"][1]["file_name"] = file_name
    path.write_text(json.dumps(data))
    assert_refused(ws, ["--format", "coco", path], "dataset")


def test_symlink_escaping_an_image_folder(ws, tmp_path):
    folder = tmp_path / "imgs"
    write_image(folder / "a.jpg")
    write_image(tmp_path / "secret.jpg", seed=3)
    (folder / "b.jpg").symlink_to(tmp_path / "secret.jpg")
    assert_refused(ws, ["--format", "images", folder], "escapes the dataset folder")


def test_yolo_wrong_value_count(ws, tmp_path):
    path = make_yolo(tmp_path / "y", n=1, lines="0 0.5 0.5 0.2 0.2 0.1 0.1 2\n")
    assert_refused(ws, ["--format", "yolo-pose", path], "has 8 values")


def test_yolo_other_schema(ws, tmp_path):
    path = make_yolo(tmp_path / "y", n=1, kpt_shape=(21, 3))
    assert_refused(ws, ["--format", "yolo-pose", path], "kpt_shape [21, 3]")


def test_yolo_split_path_escaping(ws, tmp_path):
    path = make_yolo(tmp_path / "y", n=1)
    path.write_text(path.read_text().replace("train: images/train", "train: ../../"))
    assert_refused(ws, ["--format", "yolo-pose", path], "escapes the dataset folder")


def test_yolo_malformed_yaml(ws, tmp_path):
    path = make_yolo(tmp_path / "y", n=1)
    path.write_text("kpt_shape: [17, 3\ntrain: [")
    assert_refused(ws, ["--format", "yolo-pose", path], "not valid YAML")


def test_lsp_wrong_shape(ws, tmp_path):
    savemat(str(tmp_path / "joints.mat"), {"joints": np.zeros((16, 3, 2))})
    assert_refused(ws, ["--format", "lsp", tmp_path], "14 joints")


def test_lsp_not_a_mat_file(ws, tmp_path):
    (tmp_path / "joints.mat").write_bytes(b"garbage" * 100)
    assert_refused(ws, ["--format", "lsp", tmp_path], "not a readable MATLAB file")


# ----------------------------------------------------------------------------- one record

def test_record_problems_are_skipped_and_named(ws, tmp_path):
    path = make_coco(tmp_path / "d", n=6)
    data = json.loads(path.read_text())
    (tmp_path / "d/img1.jpg").unlink()                                   # missing
    (tmp_path / "d/img2.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # undecodable
    Image.new("L", (9000, 9000)).save(tmp_path / "d/img3.jpg")           # 81 MP: too large
    data["annotations"][4]["keypoints"][6] = float("nan")               # NaN coordinate
    data["images"][5]["file_name"] = "img0.jpg"                          # same content twice
    path.write_text(json.dumps(data))
    report = run_import(ws, parse("coco", path))
    assert report.images == 1
    reasons = dict(report.skipped)
    assert reasons["img1.jpg"].startswith("missing image")
    assert reasons["img2.jpg"].startswith("bad image: image cannot be decoded")
    assert "over the 50 MP limit" in reasons["img3.jpg"]
    assert "NaN" in reasons["img4.jpg"]
    assert len(report.skipped) == 5
    assert report.skipped_by_reason()["duplicate"] == 1


def test_decompression_bomb_header_is_refused_before_decoding(ws, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")   # tiny file, 400 MP of pixels
    report = run_import(ws, parse("images", folder))
    assert report.images == 0 and "decompression" in report.skipped[0][1]
    assert report.batch_id is None  # nothing imported: no empty batch


def test_strict_turns_a_skip_into_an_abort(ws, tmp_path):
    path = make_coco(tmp_path / "d", n=3)
    (tmp_path / "d/img2.jpg").unlink()
    before = snapshot(ws)
    with pytest.raises(ImportAborted, match="img2.jpg"):
        run_import(ws, parse("coco", path), strict=True)
    assert snapshot(ws) == before
    result = cli(ws, "import", "--format", "coco", path, "--strict")
    assert result.exit_code == 1 and "nothing imported" in result.output
    assert snapshot(ws) == before


def test_failure_during_the_write_leaves_nothing_behind(ws, tmp_path, monkeypatch):
    from store import images as store_images

    path = make_coco(tmp_path / "d", n=3)
    before = snapshot(ws)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store_images, "insert_persons", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        run_import(ws, parse("coco", path))
    assert snapshot(ws) == before


def test_reimporting_the_same_images_skips_them_as_duplicates(ws, tmp_path):
    path = make_coco(tmp_path / "d", n=2)
    run_import(ws, parse("coco", path))
    report = run_import(ws, parse("coco", path))
    assert report.images == 0 and report.skipped_by_reason() == {"duplicate": 2}


def test_parse_errors_are_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        parse("coco", tmp_path / "none.json")
    with pytest.raises(DatasetError, match="no data.yaml"):
        parse("yolo-pose", tmp_path)
    with pytest.raises(DatasetError, match="no joints.mat"):
        parse("lsp", tmp_path)
    with pytest.raises(DatasetError, match="holds no image files"):
        parse("images", tmp_path)
