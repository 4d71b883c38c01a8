"""The workspace's file rule under concurrent writers, interrupted imports, and ``fsck`` / ``gc``.

The races are played deterministically with threads: each writer pauses at a chosen point (its
progress callback, or the end of a transaction) until the other has done its part, which is the
interleaving that lost files or whole imports before the rule existed."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import media
from engine.cli import main
from engine.errors import ENVIRONMENT_ERRNOS
from engine.io import parse
from engine.io.common import run_import
from engine.workspace import Workspace
from store import images as store_images
from tests.helpers import make_coco

REPO = Path(__file__).resolve().parents[1]
WAIT_S = 30


def files_and_rows(ws: Workspace) -> tuple[int, int, list[str]]:
    """(rows, rows whose image or thumbnail is missing, files no row accounts for)."""
    with ws.connect() as db:
        rows = store_images.list_images(db)
    wanted = ({media.image_relpath(r["sha256"], r["ext"]) for r in rows}
              | {media.thumb_relpath(r["sha256"]) for r in rows})
    missing = sum(1 for r in rows if not media.image_path(ws.root, r["sha256"], r["ext"]).is_file()
                  or not media.thumb_path(ws.root, r["sha256"]).is_file())
    strays = sorted(p.relative_to(ws.root).as_posix() for folder in ("images", "thumbs")
                    for p in (ws.root / folder).rglob("*") if p.is_file()
                    and p.relative_to(ws.root).as_posix() not in wanted)
    return len(rows), missing, strays


class Threads:
    """Run callables in threads; collect their results or exceptions."""

    def __init__(self):
        self.results: dict[str, object] = {}
        self.threads: list[threading.Thread] = []

    def start(self, name, fn, *args, **kwargs) -> None:
        def run():
            try:
                self.results[name] = fn(*args, **kwargs)
            except BaseException as exc:   # noqa: BLE001  (reported by the test)
                self.results[name] = exc

        t = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(t)
        t.start()

    def join(self) -> dict[str, object]:
        for t in self.threads:
            t.join(WAIT_S * 2)
            assert not t.is_alive(), f"{t.name} hung"
        return self.results


def pause_at_end(reached: threading.Event | None, resume: threading.Event | None):
    """A progress callback that, once every record is staged, signals and waits."""
    def progress(done: int, total: int) -> None:
        if done == total:
            if reached is not None:
                reached.set()
            if resume is not None:
                resume.wait(WAIT_S)
    return progress


def two_datasets(tmp_path: Path, n: int = 5):
    """The same ``n`` images twice; the first copy names one more image, whose file is missing."""
    aborting = make_coco(tmp_path / "a", n=n + 1)
    (tmp_path / "a" / f"img{n}.jpg").unlink()
    return parse("coco", aborting), parse("coco", make_coco(tmp_path / "b", n=n))


@pytest.mark.parametrize("trial", range(3))
def test_an_aborting_strict_import_never_deletes_files_a_concurrent_import_commits(ws, tmp_path, trial):
    """The aborting import wrote the files; the other found them there and relied on them."""
    aborting, same = two_datasets(tmp_path)
    a_staged, b_staged, a_done = threading.Event(), threading.Event(), threading.Event()
    th = Threads()

    def strict_import():
        def progress(done, total):
            if done == total - 1:           # every present image staged; the missing one is next
                a_staged.set()
                b_staged.wait(WAIT_S)
        try:
            return run_import(ws, aborting, split="train", strict=True, progress=progress)
        finally:
            a_done.set()

    def second_import():
        a_staged.wait(WAIT_S)               # the files are on disk, written by the aborting import
        return run_import(ws, same, split="train", progress=pause_at_end(b_staged, a_done))

    th.start("a", strict_import)
    th.start("b", second_import)
    res = th.join()
    assert type(res["a"]).__name__ == "ImportAborted"
    assert not isinstance(res["b"], BaseException), res["b"]
    assert res["b"].images == 5
    assert files_and_rows(ws) == (5, 0, [])


@pytest.mark.parametrize("trial", range(3))
def test_two_overlapping_imports_both_succeed_and_the_later_one_counts_duplicates(ws, tmp_path, trial):
    first = parse("coco", make_coco(tmp_path / "a", n=4))
    second = parse("coco", make_coco(tmp_path / "b", n=6))     # the same 4 images and 2 more
    a_staged, b_staged, a_done = threading.Event(), threading.Event(), threading.Event()
    th = Threads()

    def import_a():
        try:
            return run_import(ws, first, split="train", progress=pause_at_end(a_staged, b_staged))
        finally:
            a_done.set()

    def import_b():
        a_staged.wait(WAIT_S)
        return run_import(ws, second, split="train", progress=pause_at_end(b_staged, a_done))

    th.start("a", import_a)
    th.start("b", import_b)
    res = th.join()
    assert not isinstance(res["a"], BaseException), res["a"]
    assert not isinstance(res["b"], BaseException), res["b"]
    assert (res["a"].images, res["b"].images) == (4, 2)
    assert [r for _, r in res["b"].skipped if "while this import ran" in r] and len(res["b"].skipped) == 4
    assert files_and_rows(ws) == (6, 0, [])


@pytest.mark.parametrize("trial", range(3))
def test_deleting_a_batch_while_the_same_images_are_imported_again_loses_no_file(ws, tmp_path, monkeypatch, trial):
    import contextlib

    import engine.batches
    from engine.batches import delete_batch

    dataset = parse("coco", make_coco(tmp_path / "a", n=5))
    run_import(ws, dataset, split="train")
    rows_gone, reimport_staged = threading.Event(), threading.Event()
    real_transaction = engine.batches.write_transaction
    calls = []

    @contextlib.contextmanager
    def paused_after_first_commit(db):
        with real_transaction(db) as handle:
            yield handle
        calls.append(1)
        if len(calls) == 1:                # the batch's rows are gone; its files are not yet
            rows_gone.set()
            reimport_staged.wait(WAIT_S)

    monkeypatch.setattr(engine.batches, "write_transaction", paused_after_first_commit)
    th = Threads()
    delete_done = threading.Event()

    def delete():
        try:
            return delete_batch(ws, 1)
        finally:
            delete_done.set()

    def reimport():
        rows_gone.wait(WAIT_S)
        return run_import(ws, dataset, split="train", progress=pause_at_end(reimport_staged, delete_done))

    th.start("delete", delete)
    th.start("reimport", reimport)
    res = th.join()
    assert not isinstance(res["delete"], BaseException), res["delete"]
    assert not isinstance(res["reimport"], BaseException), res["reimport"]
    assert res["reimport"].images == 5
    assert files_and_rows(ws) == (5, 0, [])


def test_ctrl_c_between_an_image_and_its_thumbnail_leaves_no_file(ws, tmp_path, monkeypatch):
    real = media.make_thumbnail
    calls = []

    def interrupted(data, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(data, *a, **k)

    monkeypatch.setattr(media, "make_thumbnail", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_import(ws, parse("coco", make_coco(tmp_path / "a", n=5)), split="train")
    assert files_and_rows(ws) == (0, 0, [])
    assert not list((ws.root / "locks").glob("*"))


def test_ctrl_c_just_as_a_temporary_file_is_created_leaves_none(ws, tmp_path, monkeypatch):
    """Python raises KeyboardInterrupt at the next call after the signal: here, the first call after
    the temporary file exists (where ``tempfile.mkstemp`` left one behind)."""
    real = os.path.abspath
    fired = []

    def interrupted(path):
        if "/.tmp-" in str(path) and not fired:
            fired.append(path)
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(os.path, "abspath", interrupted)
    real_open = os.open

    def opened(path, *a, **k):
        fd = real_open(path, *a, **k)
        if "/.tmp-" in str(path) and not fired:
            fired.append(path)
            raise KeyboardInterrupt
        return fd

    monkeypatch.setattr(os, "open", opened)
    with pytest.raises(KeyboardInterrupt):
        run_import(ws, parse("coco", make_coco(tmp_path / "a", n=3)), split="train")
    monkeypatch.undo()
    assert fired and files_and_rows(ws) == (0, 0, [])


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS])
def test_a_full_disk_or_read_only_thumbs_folder_fails_in_one_line_and_leaves_no_file(ws, tmp_path, monkeypatch, err):
    real = media._atomic_write

    def failing(target, data):
        if "thumbs" in Path(target).parts:
            raise OSError(err, os.strerror(err), str(target))
        return real(target, data)

    monkeypatch.setattr(media, "_atomic_write", failing)
    result = CliRunner().invoke(main, ["-w", str(ws.root), "import", "--format", "coco",
                                       str(make_coco(tmp_path / "a", n=3)), "--split", "train"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: cannot write") and ENVIRONMENT_ERRNOS[err] in result.output
    assert "thumbs" in result.output and "nothing imported" in result.output
    assert files_and_rows(ws) == (0, 0, [])


def test_a_failed_write_transaction_removes_the_files_it_stored_but_not_claimed_ones(ws, tmp_path):
    from engine import integrity
    from store.db import write_transaction

    info_a, data_a = media.inspect_image(make_coco(tmp_path / "a", n=1).parent / "img0.jpg")
    info_b, data_b = media.inspect_image(make_coco(tmp_path / "b", n=2, seed=7).parent / "img1.jpg")
    with ws.connect() as db, ws.connect() as other_db, integrity.Claims(ws, other_db) as other:
        other.claim(info_b.sha256, info_b.ext)          # a running import relies on b
        with pytest.raises(RuntimeError):
            with write_transaction(db), integrity.new_files(ws, db) as files:
                files.store(info_a, data_a)
                files.store(info_b, data_b)
                raise RuntimeError("generation failed")
        assert not media.image_path(ws.root, info_a.sha256, info_a.ext).exists()
        assert media.image_path(ws.root, info_b.sha256, info_b.ext).exists()
    # the other writer ended without committing: its file went with its claims
    assert files_and_rows(ws) == (0, 0, [])


# ----------------------------------------------------------------------------- fsck and gc

def cli(ws: Workspace, *args: str):
    return CliRunner().invoke(main, ["-w", str(ws.root), *args])


def test_fsck_finds_each_kind_of_problem_and_gc_removes_what_nothing_references(ws, tmp_path):
    from store import integrity as store_integrity

    run_import(ws, parse("coco", make_coco(tmp_path / "a", n=4)), split="train")
    clean = cli(ws, "fsck")
    assert clean.exit_code == 0 and "no problems" in clean.output
    with ws.connect() as db:
        rows = store_images.list_images(db)
    gone, thumbless = rows[0], rows[1]
    media.image_path(ws.root, gone["sha256"], gone["ext"]).unlink()
    media.thumb_path(ws.root, thumbless["sha256"]).unlink()
    stray_sha = "ab" * 32
    stray = media.image_path(ws.root, stray_sha, "jpg")
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"x")
    stray_thumb = media.thumb_path(ws.root, "cd" * 32)
    stray_thumb.parent.mkdir(parents=True, exist_ok=True)
    stray_thumb.write_bytes(b"x")
    temp = stray.parent / ".tmp-leftover"
    temp.write_bytes(b"x")
    dead_sha = "ef" * 32
    dead = media.image_path(ws.root, dead_sha, "png")           # claimed by a writer that was killed
    dead.parent.mkdir(parents=True, exist_ok=True)
    dead.write_bytes(b"x")
    with ws.connect() as db:
        store_integrity.add_claim(db, dead_sha, "png", "0" * 32)
        db.conn.commit()
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("INSERT INTO persons (image_id, batch_id, source, keypoints, area, area_source, num_keypoints) "
                   "VALUES (999, 1, 'ground_truth', '[]', 1, 'bbox', 0)")
        db.conn.commit()

    found = cli(ws, "fsck", "--json")
    assert found.exit_code == 1
    r = json.loads(found.output)
    assert [m["image_id"] for m in r["missing_images"]] == [gone["id"]]
    assert [m["image_id"] for m in r["missing_thumbnails"]] == [thumbless["id"]]
    assert sorted(r["stray_images"]) == sorted([media.image_relpath(stray_sha, "jpg"),
                                                media.image_relpath(dead_sha, "png")])
    assert r["stray_thumbnails"] == [media.thumb_relpath("cd" * 32)]
    assert r["temp_files"] == [temp.relative_to(ws.root).as_posix()]
    assert r["stale_claims"] == 1
    assert r["orphaned_rows"] == [{"table": "persons", "missing_parent": "images", "rows": 1}]
    assert r["integrity_check"] == ["ok"]
    assert r["problems"] == 8

    before = files_and_rows(ws)
    dry = cli(ws, "gc", "--dry-run")
    assert dry.exit_code == 0 and "would remove 2 stray image files, 1 stray thumbnails, 1 temporary files, " \
                                  "1 stale claims" in dry.output
    assert files_and_rows(ws) == before

    done = cli(ws, "gc")
    assert done.exit_code == 0, done.output
    assert "removed 2 stray image files" in done.output and "rebuilt 1 missing thumbnails" in done.output
    assert "1 rows whose image file is missing" in done.output
    assert not stray.exists() and not stray_thumb.exists() and not temp.exists() and not dead.exists()
    assert media.thumb_path(ws.root, thumbless["sha256"]).is_file()
    after = json.loads(cli(ws, "fsck", "--json").output)
    assert after["problems"] == 2            # the missing image and the orphaned row: gc deletes no row
    assert after["stale_claims"] == 0 and after["stray_images"] == [] and after["missing_thumbnails"] == []


def test_files_claimed_by_a_running_import_are_in_flight_not_strays(ws, tmp_path):
    dataset = parse("coco", make_coco(tmp_path / "a", n=3))
    staged, resume = threading.Event(), threading.Event()
    th = Threads()
    th.start("import", run_import, ws, dataset, split="train", progress=pause_at_end(staged, resume))
    assert staged.wait(WAIT_S)
    try:
        check = cli(ws, "fsck", "--json")
        swept = cli(ws, "gc")
    finally:
        resume.set()
    res = th.join()
    report = json.loads(check.output)
    assert check.exit_code == 0 and report["in_flight"] == 6 and report["live_writers"] == 1
    assert "left 6 files claimed by 1 running writers alone" in swept.output
    assert res["import"].images == 3
    assert files_and_rows(ws) == (3, 0, [])


def test_fsck_reports_an_unreadable_database_in_one_line(ws):
    ws.db_path.write_bytes(b"not a database at all" * 100)
    for wal in ws.root.glob("realcal.db-*"):
        wal.unlink()
    result = cli(ws, "fsck")
    # the workspace opener names the damaged database before fsck reads a row
    assert result.exit_code == 1 and "Traceback" not in result.output and len(result.output.splitlines()) == 1
    assert "realcal.db" in result.output and ("not a SQLite database" in result.output
                                              or "cannot be read" in result.output)


def test_a_killed_import_leaves_strays_that_gc_removes(ws, tmp_path):
    """SIGKILL cannot be cleaned up in-process: its files and claims stay until gc, which finds the
    writer dead by its lock."""
    ann = make_coco(tmp_path / "a", n=200)
    proc = subprocess.Popen([sys.executable, "-m", "engine", "-w", str(ws.root), "import", "--format", "coco",
                             str(ann), "--split", "train"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if sum(1 for _ in (ws.root / "thumbs").rglob("*.jpg")) >= 5:
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.skip("the import finished before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    rows, missing, strays = files_and_rows(ws)
    assert rows == 0 and strays
    check = json.loads(cli(ws, "fsck", "--json").output)
    assert check["stale_claims"] >= len(strays) // 2 and check["live_writers"] == 0
    assert cli(ws, "gc").exit_code == 0
    assert files_and_rows(ws) == (0, 0, [])
    assert cli(ws, "fsck").exit_code == 0
    assert not list((ws.root / "locks").iterdir())
