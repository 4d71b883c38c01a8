"""Each page through Streamlit's AppTest, on a small workspace."""
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from engine.io import parse
from engine.io.common import run_import
from tests.helpers import make_coco

REPO = Path(__file__).resolve().parent.parent
PAGES = ["data", "jobs", "settings", "generate", "curate", "review", "train", "results"]


@pytest.fixture
def app_ws(ws, tmp_path, monkeypatch):
    run_import(ws, parse("coco", make_coco(tmp_path / "d", n=3)), split="train")
    monkeypatch.setenv("REALCAL_WORKSPACE", str(ws.root))
    import engine.worker

    monkeypatch.setattr(engine.worker, "ensure_worker", lambda ws: None)  # no stray worker processes
    return ws


def _run(path):
    at = AppTest.from_file(str(REPO / path), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_app_navigation_renders_the_data_page(app_ws):
    at = _run("app.py")
    assert at.title[0].value == "Data"
    assert any("Workspace" in c.value for c in at.sidebar.caption)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(app_ws, page):
    at = _run(f"app_pages/{page}.py")
    assert at.title[0].value.lower() == page


def _gallery_items(at) -> list[dict]:
    """The thumbnails the Data page's gallery component was given."""
    import json

    return json.loads(at.get("bidi_component")[0].proto.json)["items"]


def test_data_page_shows_counts_thumbnails_and_filters(app_ws):
    at = _run("app_pages/data.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "3" and metrics["Persons (labels)"] == "3"
    items = _gallery_items(at)
    assert len(items) == 3 and all(it["src"].startswith("data:image/jpeg;base64,") for it in items)
    split = next(s for s in at.selectbox if s.label == "Split")
    split.select("val").run()
    assert not at.exception and _gallery_items(at) == []


def test_data_page_deletes_a_batch(app_ws):
    at = _run("app_pages/data.py")
    at.checkbox[0].check().run()
    next(b for b in at.button if b.label == "Delete batch").click().run()
    assert not at.exception
    with app_ws.connect() as db:
        assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0


def test_train_page_builds_manifests_and_queues_training_and_experiments(app_ws, tmp_path):
    at = _run("app_pages/train.py")
    assert any("needs labelled real **val**" in w.value for w in at.warning)
    run_import(app_ws, parse("coco", make_coco(tmp_path / "v", n=2, seed=10)), split="val")
    run_import(app_ws, parse("coco", make_coco(tmp_path / "t", n=2, seed=20)), split="test")
    at = _run("app_pages/train.py")
    assert not at.warning
    assert any("Build a manifest first" in i.value for i in at.info)
    next(b for b in at.button if b.label == "Build manifest").click().run()
    assert not at.exception
    assert any("Manifest 1 (new" in s.value for s in at.success), [s.value for s in at.success]
    at = _run("app_pages/train.py")
    epochs = next(n for n in at.number_input if n.label == "Epochs")
    freeze = next(t for t in at.text_input if t.label == "Freeze")
    assert epochs.value == 10 and freeze.value == "0"          # the recipe the benchmark chose on val
    assert next(n for n in at.number_input if n.label == "Nominal batch (nbs)").value == 8
    assert any(c.value.startswith("Step plan:") for c in at.caption)   # shown before anything is queued
    freeze.set_value("head").run()                             # refused as typed, before queueing
    assert any("unknown freeze preset 'head'" in e.value for e in at.error)
    assert next(b for b in at.button if b.label == "Queue training").disabled
    next(n for n in at.number_input if n.label == "Epochs").set_value(1)
    next(t for t in at.text_input if t.label == "Freeze").set_value("keypoint-branch")
    next(n for n in at.number_input if n.label == "Nominal batch (nbs)").set_value(16).run()
    next(s for s in at.selectbox if s.label == "Keep the checkpoint").set_value("last").run()
    assert next(n for n in at.number_input if n.label == "Validate every (epochs)").disabled   # only with best
    next(n for n in at.number_input if n.label == "CPU threads").set_value(0).run()
    assert not next(b for b in at.button if b.label == "Queue training").disabled
    next(b for b in at.button if b.label == "Queue training").click().run()
    assert not at.exception and any("Queued job" in s.value for s in at.success)
    assert any("one optimizer step every 2 batches (nbs 16)" in c.value for c in at.caption), \
        [c.value for c in at.caption]
    assert any("optimizer steps: the model will barely move" in w.value for w in at.warning)
    with app_ws.connect() as db:
        params = json.loads(db.execute("SELECT params FROM jobs WHERE kind = 'train'").fetchone()[0])
        assert params["freeze"] == "keypoint-branch" and params["epochs"] == 1 and params["nbs"] == 16
        assert params["checkpoint"] == "last" and params["threads"] == 0
    # experiments: a broken file is refused with the reason, the example one is queued
    area = next(t for t in at.text_area if t.label == "Experiment (YAML)")
    assert "real-only" in area.value
    area.set_value("name: x\narms: [{name: mixed, real: 2}]").run()
    next(b for b in at.button if b.label == "Queue experiment").click().run()
    assert any("needs a 'real-only' arm" in e.value for e in at.error)
    area.set_value("arms: [unclosed").run()
    next(b for b in at.button if b.label == "Queue experiment").click().run()
    assert any("not valid YAML" in e.value for e in at.error)
    area.set_value((REPO / "experiments" / "example_tiny.yaml").read_text()).run()
    next(b for b in at.button if b.label == "Queue experiment").click().run()
    assert not at.exception
    with app_ws.connect() as db:
        rows = [tuple(r) for r in db.execute("SELECT kind, status FROM jobs ORDER BY id")]
    assert rows == [("train", "queued"), ("experiment", "queued")]
    # loops: the same editor, checked before anything is queued
    loop_area = next(t for t in at.text_area if t.label == "Loop (YAML)")
    assert "name: example-loop" in loop_area.value
    loop_area.set_value("name: x\nrounds: 0").run()
    next(b for b in at.button if b.label == "Queue loop").click().run()
    assert any("rounds must be within 1..50" in e.value for e in at.error) and not at.exception


def test_train_page_shows_a_finished_run_with_downloads(app_ws, tmp_path):
    from engine import jobs
    from engine.train.manifest import build_manifest
    from engine.train.train import resolve_params

    run_import(app_ws, parse("coco", make_coco(tmp_path / "v", n=2, seed=10)), split="val")
    run_import(app_ws, parse("coco", make_coco(tmp_path / "t", n=2, seed=20)), split="test")
    m = build_manifest(app_ws, {})
    final = jobs.run_foreground(app_ws, "train", resolve_params(app_ws, m["id"], {
        "epochs": 1, "imgsz": 64, "batch": 2, "device": "cpu"}))
    assert final["status"] == "done", final["error"]
    at = _run("app_pages/train.py")
    assert len(at.dataframe) >= 2  # manifests and runs
    assert at.get("download_button")
    next(b for b in at.button if b.label == "Export ONNX (job)").click().run()
    assert not at.exception
    with app_ws.connect() as db:
        assert db.execute("SELECT kind FROM jobs ORDER BY id DESC").fetchone()[0] == "export_model"


def test_settings_are_saved_in_the_workspace(app_ws):
    from engine import config

    at = _run("app_pages/settings.py")
    next(n for n in at.number_input if n.label == "pseudo_label.imgsz").set_value(320)
    at.button[0].click().run()
    assert not at.exception
    with app_ws.connect() as db:
        assert config.resolve(db)["pseudo_label.imgsz"] == 320


def test_jobs_page_lists_jobs_and_cancels(app_ws):
    from engine import jobs

    job_id = jobs.submit(app_ws, "selftest", {"steps": 3})
    at = _run("app_pages/jobs.py")
    assert any(f"#{job_id}" in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Cancel").click().run()
    with app_ws.connect() as db:
        assert db.execute("SELECT status FROM jobs WHERE id = ?", [job_id]).fetchone()[0] == "cancelled"


def test_a_folder_that_is_not_a_workspace_gets_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("REALCAL_WORKSPACE", str(tmp_path))
    at = AppTest.from_file(str(REPO / "app_pages/data.py"), default_timeout=30)
    at.run()
    assert "not a realcal workspace" in at.error[0].value


def test_generate_page_queues_a_job_and_states_controlnet_needs(app_ws):
    at = _run("app_pages/generate.py")
    assert any("Real anchors" in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Queue generation job").click().run()
    assert not at.exception
    with app_ws.connect() as db:
        row = db.execute("SELECT kind, status FROM jobs").fetchone()
    assert tuple(row) == ("generate", "queued")
    at.radio[0].set_value("controlnet").run()
    assert not at.exception
    assert any("not in the local Hugging Face cache" in e.value for e in at.error)


def test_generate_page_pose_warp_settings_preview_and_job(app_ws):
    """pose_warp's own settings (not controlnet's), a side-by-side preview, and a job with those settings."""
    at = _run("app_pages/generate.py")
    at.radio[0].set_value("pose_warp").run()
    assert not at.exception
    labels = {s.label for s in at.slider} | {s.label for s in at.selectbox}
    assert {"Joint-angle perturbation (deg)", "Blending", "Colour matching"} <= labels
    next(s for s in at.selectbox if s.label == "Blending").set_value("poisson")
    next(s for s in at.slider if s.label == "Joint-angle perturbation (deg)").set_value(45)
    next(b for b in at.button if b.label == "Queue generation job").click().run()
    assert not at.exception, at.exception
    with app_ws.connect() as db:
        params = json.loads(db.execute("SELECT params FROM jobs ORDER BY id DESC").fetchone()[0])
    assert params["generator"] == "pose_warp" and params["generator_params"]["blend"] == "poisson"
    assert params["pose_source"]["perturb_deg"] == 45
    next(b for b in at.button if b.label.startswith("Preview: plain beside")).click().run()
    assert not at.exception, at.exception
    assert len(at.get("image")) >= 2   # plain beside these settings


def test_pose_warp_preview_is_side_by_side_and_changes_only_compositing(app_ws):
    from engine.generate.preview import pose_warp_side_by_side

    pairs = pose_warp_side_by_side(app_ws, {"blend": "poisson", "colour_match": 1.0, "clothing_hue_deg": 40},
                                   {"min_keypoints": 4}, seed=1, n=2, size=96)
    assert len(pairs) == 2
    for plain, chosen, caption in pairs:
        assert plain.shape == chosen.shape == (96, 96, 3) and caption
        assert not np.array_equal(plain, chosen)


def test_curate_page_without_and_with_a_run(app_ws, lspet):
    at = _run("app_pages/curate.py")
    assert any("No curation run yet" in i.value for i in at.info)
    from engine import jobs
    from engine.curate.run import resolve_params as curate_params
    from engine.generate.job import resolve_params as gen_params

    run_import(app_ws, parse("lsp", lspet), limit=20, split="train")
    jobs.run_foreground(app_ws, "generate", gen_params(app_ws, {
        "count": 4, "generator_params": {"width": 128, "height": 128, "background": "procedural"}}))
    final = jobs.run_foreground(app_ws, "curate", curate_params(app_ws))
    assert final["status"] == "done", final["error"]
    at = _run("app_pages/curate.py")
    assert any("Run" in s.value for s in at.subheader)
    assert len(at.slider) >= 1
    assert any("Unavailable" in w.value and "clip" in w.value for w in at.warning)
    at.slider[0].set_value(at.slider[0].min).run()
    assert not at.exception


def test_results_page_without_an_experiment(app_ws):
    at = _run("app_pages/results.py")
    assert any("No experiment yet" in i.value for i in at.info)
