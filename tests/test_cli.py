import json

import pytest
from click.testing import CliRunner

from engine.cli import main
from tests.helpers import make_coco


def run(*args, env=None):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert "Traceback" not in result.output
    return result


def test_every_command_has_help():
    for cmd in (["--help"], ["init", "--help"], ["import", "--help"], ["export", "--help"],
                ["status", "--help"], ["batches", "--help"], ["batch", "delete", "--help"],
                ["batch", "show", "--help"]):
        r = run(*cmd)
        assert r.exit_code == 0 and "Usage:" in r.output


def test_workspace_from_environment_and_missing_workspace(tmp_path):
    r = run("status")
    assert r.exit_code == 1 and "REALCAL_WORKSPACE" in r.output
    r = run("init", env={"REALCAL_WORKSPACE": str(tmp_path / "w")})
    assert r.exit_code == 0 and (tmp_path / "w/realcal.db").exists()
    r = run("-w", tmp_path / "elsewhere", "status")
    assert r.exit_code == 1 and "not a realcal workspace" in r.output


def test_import_status_batches_export_delete(tmp_path):
    w = tmp_path / "w"
    assert run("-w", w, "init").exit_code == 0
    d1 = make_coco(tmp_path / "d1", n=3)
    d2 = make_coco(tmp_path / "d2", n=2, file_names=["x.jpg", "y.jpg"])
    (tmp_path / "d2/x.jpg").write_bytes((tmp_path / "d2/x.jpg").read_bytes() + b"\0")  # new content
    r = run("-w", w, "import", "--format", "coco", d1, "--split", "train")
    assert r.exit_code == 0 and "batch 1: imported 3 images (train 3)" in r.output
    r = run("-w", w, "import", "--format", "coco", d2, "--split", "val", "--limit", "1",
            "--report", tmp_path / "rep.json")
    assert r.exit_code == 0 and json.loads((tmp_path / "rep.json").read_text())["images"] == 1

    status = json.loads(run("-w", w, "status", "--json").output)
    assert status["images"]["by_kind"] == {"real": 4}
    assert status["images"]["by_kind_and_split"]["real"] == {"train": 3, "val": 1}
    assert status["persons"]["by_source"] == {"ground_truth": 4}
    assert status["batches"] == 2

    batches = json.loads(run("-w", w, "batches", "--json").output)
    assert [b["images"] for b in batches] == [3, 1]
    assert run("-w", w, "batches").exit_code == 0

    r = run("-w", w, "export", "--format", "yolo-pose", tmp_path / "y", "--split", "train")
    assert r.exit_code == 0 and "train: 3 images, 3 persons" in r.output
    r = run("-w", w, "export", "--format", "coco", tmp_path / "c", "--source", "predicted")
    assert r.exit_code == 0

    files_before = {p for p in (w / "images").rglob("*") if p.is_file()}
    r = run("-w", w, "batch", "delete", "1")          # no --yes, no stdin: refuses
    assert r.exit_code != 0
    r = run("-w", w, "batch", "delete", "1", "--yes")
    assert r.exit_code == 0 and "3 images, 3 persons, 3 image files removed" in r.output
    files_after = {p for p in (w / "images").rglob("*") if p.is_file()}
    assert len(files_before - files_after) == 3 and len(files_after) == 1
    assert len(list((w / "thumbs").rglob("*.jpg"))) == 1
    status = json.loads(run("-w", w, "status", "--json").output)
    assert status["images"]["total"] == 1 and status["batches"] == 1
    r = run("-w", w, "batch", "delete", "99", "--yes")
    assert r.exit_code == 1 and "no batch 99" in r.output
    shown = json.loads(run("-w", w, "batch", "show", "2").output)
    assert shown["report"]["images"] == 1


def test_thumbnails_are_made_at_ingest(tmp_path):
    from PIL import Image

    w = tmp_path / "w"
    run("-w", w, "init")
    make_coco(tmp_path / "d", n=1)
    run("-w", w, "import", "--format", "coco", tmp_path / "d/ann.json")
    thumbs = list((w / "thumbs").rglob("*.jpg"))
    assert len(thumbs) == 1
    with Image.open(thumbs[0]) as im:
        assert max(im.size) <= 256


@pytest.mark.parametrize("fmt", ["coco", "lsp", "yolo-pose", "images"])
def test_import_of_a_missing_path_is_a_usage_error(tmp_path, fmt):
    run("-w", tmp_path / "w", "init")
    r = run("-w", tmp_path / "w", "import", "--format", fmt, tmp_path / "nope")
    assert r.exit_code == 2 and "does not exist" in r.output


def test_app_refuses_a_public_host_without_users(tmp_path):
    run("-w", tmp_path / "w", "init")
    r = run("-w", tmp_path / "w", "app", "--host", "0.0.0.0", "--no-worker")
    assert r.exit_code == 1 and "refusing to serve on 0.0.0.0" in r.output
    from engine.cli.app import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")


def test_status_json_has_job_counts(tmp_path):
    run("-w", tmp_path / "w", "init")
    status = json.loads(run("-w", tmp_path / "w", "status", "--json").output)
    assert status["jobs"]["by_status"] == {"queued": 0, "running": 0, "done": 0, "failed": 0,
                                           "cancelled": 0}


def test_interactive_commands_import_no_heavy_libraries(tmp_path):
    """status/jobs/batches stay interactive: no torch, ultralytics, streamlit or pandas (sqlite_utils would
    import pandas just to map its Timestamp type; store.fastimport hides it)."""
    import subprocess
    import sys

    run("-w", tmp_path / "w", "init")
    code = ("import sys\nfrom click.testing import CliRunner\nfrom engine.cli import main\n"
            f"for cmd in (['status', '--json'], ['jobs'], ['batches']):\n"
            f"    r = CliRunner().invoke(main, ['-w', {str(tmp_path / 'w')!r}, *cmd])\n"
            "    assert r.exit_code == 0, r.output\n"
            "heavy = ('torch', 'ultralytics', 'streamlit', 'pandas', 'cv2', 'scipy')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
    from store.fastimport import import_sqlite_utils

    import_sqlite_utils()                    # a second call, or one after pandas is loaded, changes nothing
    assert sys.modules.get("pandas", 0) is not None


def test_the_allocator_is_tuned_in_commands_unless_told_not_to(tmp_path):
    """engine.env.tune_malloc (bench/malloc_tuning.py: ~1.4x faster embeddings): on in CLI commands on
    Linux/glibc, off with REALCAL_MALLOC=default or when the user set glibc's own MALLOC_ variables."""
    import os
    import subprocess
    import sys

    code = ("from click.testing import CliRunner\nfrom engine.cli import main\nfrom engine import env\n"
            f"CliRunner().invoke(main, ['-w', {str(tmp_path / 'w')!r}, 'init'])\nprint(env._MALLOC_TUNED)")
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "REALCAL_MALLOC"}

    def tuned(**extra) -> str:
        return subprocess.run([sys.executable, "-c", code], env={**base, **extra}, capture_output=True,
                              text=True, check=True).stdout.strip()

    assert tuned() == ("True" if sys.platform.startswith("linux") else "False")
    assert tuned(REALCAL_MALLOC="default") == "False"
    assert tuned(MALLOC_ARENA_MAX="2") == "False"
