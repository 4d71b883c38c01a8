"""Input that once ended in a traceback now ends in one ``error:`` line, with the workspace as it was:
huge numbers and list-valued ids in COCO, wrong types in a YOLO data.yaml, a joints.mat of strings or one
that crashes the MATLAB reader, a damaged or folder ``realcal.db``, a full or read-only disk, and SIGTERM
or SIGHUP in the middle of an import."""
import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.io import savemat

from engine.cli import main
from engine.errors import DatasetError, WorkspaceError
from engine.io import parse
from engine.workspace import Workspace
from tests.conftest import snapshot
from tests.helpers import make_coco, make_yolo, write_image

REPO = Path(__file__).resolve().parent.parent
BIG = int("9" * 400)


def cli(ws_root, *args):
    result = CliRunner().invoke(main, ["-w", str(ws_root), *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def assert_one_line_refusal(ws, args, match):
    before = snapshot(ws)
    result = cli(ws.root, *args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert match in result.output, result.output
    assert snapshot(ws) == before


def _coco(tmp_path, mutate):
    path = make_coco(tmp_path / "d", n=2)
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    return path


# ----------------------------------------------------------------------------- COCO

@pytest.mark.parametrize("mutate, match", [
    (lambda d: d["images"][0].update(id=[1, 2]), "images[0] has an id that is not a number: [1, 2]"),
    (lambda d: d["images"][0].update(id={"a": 1}), "images[0] has an id that is not a number"),
    (lambda d: d["categories"][0].update(id=[1]), "category 'person' has an id that is not a number"),
])
def test_coco_ids_that_are_not_numbers_are_refused(ws, tmp_path, mutate, match):
    assert_one_line_refusal(ws, ["import", "--format", "coco", _coco(tmp_path, mutate)], match)


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: d["annotations"][0]["keypoints"].__setitem__(3, BIG), "non-numeric keypoints"),
    (lambda d: d["annotations"][0]["keypoints"].__setitem__(3, [1]), "non-numeric keypoints"),
    (lambda d: d["annotations"][0]["bbox"].__setitem__(2, BIG), "bbox is not 4 numbers"),
    (lambda d: d["annotations"][0].update(bbox="1234"), "bbox is not 4 numbers"),
])
def test_coco_huge_or_wrong_numbers_skip_their_record(ws, tmp_path, mutate, reason):
    """A 400-digit integer cannot be a float: that record is skipped with its reason, the rest imports."""
    result = cli(ws.root, "import", "--format", "coco", _coco(tmp_path, mutate), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["images"] == 1 and report["skipped_count"] == 1
    assert reason in report["skipped"][0]["reason"]


def test_coco_huge_area_and_list_valued_references_import(ws, tmp_path):
    def mutate(d):
        d["annotations"][0]["area"] = BIG                 # unusable: the mask's own area is used instead
        d["annotations"][1]["image_id"] = [2]             # names no image: the annotation is skipped
        d["annotations"][1]["category_id"] = {"id": 1}    # names no category: not a person annotation
    result = cli(ws.root, "import", "--format", "coco", _coco(tmp_path, mutate), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["persons"] == 1


def test_coco_parse_refuses_unhashable_ids_in_the_engine_too(tmp_path):
    with pytest.raises(DatasetError, match="not a number"):
        parse("coco", _coco(tmp_path, lambda d: d["images"][1].update(id=[2])))


# ----------------------------------------------------------------------------- YOLO-pose

@pytest.mark.parametrize("old, new, match", [
    ("flip_idx: [", "flip_idx: 5\nx: [", "flip_idx must be a list of keypoint indices"),
    ("flip_idx: [", "flip_idx: [a, b]\nx: [", "flip_idx must be a list of keypoint indices"),
    ("path: .", "path: 123", "path must name the dataset folder (text), got 123"),
    ("path: .", "path: [1, 2]", "path must name the dataset folder (text), got [1, 2]"),
    ("path: .", "path: \"" + "x" * 5000 + "\"", "cannot be used: File name too long"),
])
def test_yolo_data_yaml_with_wrong_types_is_refused(ws, tmp_path, old, new, match):
    path = make_yolo(tmp_path / "y", n=2)
    path.write_text(path.read_text().replace(old, new))
    assert_one_line_refusal(ws, ["import", "--format", "yolo-pose", path], match)


def test_yolo_yaml_errors_are_one_line(ws, tmp_path):
    path = make_yolo(tmp_path / "y", n=1)
    path.write_text("kpt_shape: [17, 3\ntrain: [")
    assert_one_line_refusal(ws, ["import", "--format", "yolo-pose", path], "not valid YAML")


# ----------------------------------------------------------------------------- LSP

@pytest.mark.parametrize("joints, match", [
    (np.full((14, 3, 2), "ab"), "'joints' must be a numeric matrix"),
    (np.zeros((14, 3, 2)) + 1j, "'joints' must be a numeric matrix"),
    (np.array([[[np.array([1.0, 2.0]), "s"]] * 3] * 14, dtype=object), "'joints' must be a numeric matrix"),
])
def test_lsp_joints_that_are_not_numbers_are_refused(ws, tmp_path, joints, match):
    savemat(str(tmp_path / "joints.mat"), {"joints": joints})
    assert_one_line_refusal(ws, ["import", "--format", "lsp", tmp_path], match)


def test_lsp_without_joints_is_refused(ws, tmp_path):
    savemat(str(tmp_path / "joints.mat"), {"other": np.zeros((14, 3, 2))})
    assert_one_line_refusal(ws, ["import", "--format", "lsp", tmp_path], "has no matrix named 'joints'")


def test_a_mat_file_that_crashes_the_reader_is_refused(ws, tmp_path):
    """scipy's MATLAB reader dies with a segmentation fault on some damaged files (here: zeros over a
    variable header, found by the fuzz test). The reader runs in a child process, so it costs a child."""
    mat = tmp_path / "joints.mat"
    savemat(str(mat), {"joints": np.zeros((14, 3, 0)), "info": {"a": 1, "b": "text"}})
    data = bytearray(mat.read_bytes())
    data[186:186 + 2000] = bytes(len(data[186:186 + 2000]))
    mat.write_bytes(bytes(data))
    assert_one_line_refusal(ws, ["import", "--format", "lsp", tmp_path], "not a readable MATLAB file")


def test_a_reader_crash_is_a_dataset_error(tmp_path, monkeypatch):
    from engine.io import lsp

    savemat(str(tmp_path / "joints.mat"), {"joints": np.zeros((14, 3, 1))})
    monkeypatch.setattr(lsp, "_READER", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(DatasetError, match=r"the reader crashed on it \(signal 11\)"):
        parse("lsp", tmp_path)


# ----------------------------------------------------------------------------- the workspace database

def _workspace_with_db(tmp_path, make_db) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    make_db(root / "realcal.db")
    return root


@pytest.mark.parametrize("make_db, match", [
    (lambda p: p.write_bytes(b"garbage" * 1000), "is not a SQLite database"),
    (lambda p: p.mkdir(), "is a folder, not a database file"),
])
@pytest.mark.parametrize("command", [["status"], ["init"], ["jobs"]])
def test_a_database_that_is_not_one_is_refused(tmp_path, make_db, match, command):
    root = _workspace_with_db(tmp_path, make_db)
    result = cli(root, *command)
    assert result.exit_code == 1 and result.output.startswith("error: the workspace database ")
    assert match in result.output and result.output.count("\n") == 1
    with pytest.raises(WorkspaceError, match=match):
        Workspace.open(root).connect()


def test_a_damaged_database_is_one_line(ws, tmp_path):
    from engine.io.common import run_import

    run_import(ws, parse("coco", make_coco(tmp_path / "d", n=3)))
    with ws.connect() as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(ws.db_path.read_bytes())
    data[4096 * 2:4096 * 40] = os.urandom(len(data[4096 * 2:4096 * 40]))     # pages of tables and indexes
    ws.db_path.write_bytes(bytes(data))
    result = cli(ws.root, "status")
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: the workspace database ") and "damaged" in result.output


# ----------------------------------------------------------------------------- the disk

@pytest.mark.parametrize("code, match", [
    (errno.ENOSPC, "no space left on the device"),
    (errno.EROFS, "the file system is read-only"),
    (errno.EACCES, "permission denied"),
])
def test_a_full_or_read_only_disk_is_one_line_and_nothing_is_imported(ws, tmp_path, monkeypatch, code, match):
    from engine import media

    store = media.store_image
    calls = []

    def failing(root, info, data):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(code, os.strerror(code), str(media.image_path(root, info.sha256, info.ext)))
        return store(root, info, data)

    monkeypatch.setattr(media, "store_image", failing)
    path = make_coco(tmp_path / "d", n=3)
    assert_one_line_refusal(ws, ["import", "--format", "coco", path], match)


def test_a_full_disk_at_commit_is_one_line(ws, tmp_path, monkeypatch):
    from store import batches

    def full(*a, **k):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(batches, "create", full)
    assert_one_line_refusal(ws, ["import", "--format", "coco", make_coco(tmp_path / "d", n=2)],
                            "the workspace database cannot be written: the disk is full")


def test_other_errors_still_show_their_traceback(ws, monkeypatch):
    """Only errors of the machine become one line; a bug keeps its traceback."""
    from engine.cli import workspace as cli_workspace

    monkeypatch.setattr(cli_workspace, "status_dict", lambda ws: 1 / 0)
    result = CliRunner().invoke(main, ["-w", str(ws.root), "status"])
    assert isinstance(result.exception, ZeroDivisionError)


# ----------------------------------------------------------------------------- SIGTERM and SIGHUP

def _import_many(ws, tmp_path, sighup):
    """``realcal import`` of 600 images in a child whose SIGHUP is ``sighup`` (as a terminal gives it, or
    ignored as under nohup), once its first files are written."""
    folder = tmp_path / "many"
    for i in range(600):
        write_image(folder / f"im{i:04d}.png", size=(96, 96), seed=i, fmt="PNG")
    proc = subprocess.Popen([sys.executable, "-m", "engine", "-w", str(ws.root), "import", "--format", "images",
                             folder], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, sighup))
    deadline = time.time() + 120
    while time.time() < deadline and len(list((ws.root / "images").rglob("*.png"))) < 20:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_clean_up_like_ctrl_c(ws, tmp_path, sig):
    """The issue's case: SIGTERM or SIGHUP in the middle of an import left hundreds of image files no row
    references. Now they unwind like Ctrl-C: nothing imported, the files this import wrote removed (one
    being written at that instant may be left; removing such strays is the garbage collector's work), one
    line, exit 128 + signal."""
    before = snapshot(ws)
    proc = _import_many(ws, tmp_path, signal.SIG_DFL)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        f"terminated ({sig.name}): the current step was rolled back")
    files, rows = snapshot(ws)
    assert rows == before[1]                                         # nothing imported
    strays = set(files) - set(before[0])
    assert len([f for f in strays if f.startswith("images/")]) <= 1, strays


def test_under_nohup_sighup_is_still_ignored(ws, tmp_path):
    proc = _import_many(ws, tmp_path, signal.SIG_IGN)
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "imported 600 images" in out


def test_a_damaged_record_of_migrations_is_one_line(ws):
    """Found by the fuzz test: zeros over the migrations' record made realcal re-run its first migration on
    existing tables ("table batches already exists")."""
    with ws.connect() as db:
        db.execute("DELETE FROM _sqlite_migrations")
        db.conn.commit()
    result = cli(ws.root, "status")
    assert result.exit_code == 1 and "record of applied schema changes does not match its tables" in result.output
    with pytest.raises(WorkspaceError, match="is damaged"):
        ws.connect()


def test_text_that_is_not_utf8_in_the_database_is_one_line(ws):
    """Found by the fuzz test: a flipped byte in a text value (here a curation run's funnel) ended in a
    traceback wherever a query read it."""
    with ws.connect() as db:
        db.execute("INSERT INTO curation_runs (config, funnel) VALUES ('{}', CAST(X'5b41ff5d' AS TEXT))")
        db.conn.commit()
    result = cli(ws.root, "status")
    assert result.exit_code == 1
    assert result.output == ("error: the workspace database is damaged (text in it is not UTF-8); "
                             "restore it from a backup\n")


def test_a_decoding_error_is_the_database_s_only_where_rows_are_read():
    import store.db as store_db

    def raised_in(filename: str) -> UnicodeDecodeError:
        try:
            exec(compile("b'\\xff'.decode()", filename, "exec"))
        except UnicodeDecodeError as exc:
            return exc
        raise AssertionError("no error")

    assert store_db.describe_error(raised_in(store_db.__file__)) is not None      # reading rows: damaged text
    assert store_db.describe_error(raised_in(__file__)) is None                   # anywhere else: not about it
