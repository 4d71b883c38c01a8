"""The demo workspace: built from packaged photos (pseudo-labelled) and, where LSPET is present, a
small labelled slice with a tiny experiment that the worker finishes."""

import os
from pathlib import Path

from streamlit.testing.v1 import AppTest

from engine import demo
from store import images as store_images
from store import training as store_training
from tests.conftest import shared

REPO = Path(__file__).resolve().parent.parent


def test_demo_without_labelled_data_says_so_and_queues_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "lspet_folder", lambda: None)
    lines = []
    ws = demo.build_demo(tmp_path / "demo", log=lines.append)
    assert any("no LSPET folder" in m for m in lines)
    with ws.connect() as db:
        c = store_images.counts(db)
        assert c["images"]["by_kind"]["real"] == 3 and c["images"]["by_kind"]["synthetic"] >= 1
        assert db.execute("SELECT COUNT(*) FROM jobs WHERE kind = 'experiment'").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM review_items").fetchone()[0] >= 1
    assert demo.build_demo(tmp_path / "demo", log=lines.append).root == ws.root  # safe to run again


def test_demo_with_lspet_finishes_a_tiny_experiment_for_the_results_page(tmp_path, monkeypatch):
    lspet = shared("lspet")
    monkeypatch.setenv("REALCAL_DEMO_LSPET", str(lspet))
    lines = []
    ws = demo.build_demo(tmp_path / "demo", log=lines.append)
    assert any("queued the tiny demo experiment" in m for m in lines), lines
    assert demo.queue_demo_experiment(ws, lines.append) is None  # never queued twice
    from engine.worker import run_worker

    assert run_worker(ws, once=True, log=lines.append) == 1
    with ws.connect() as db:
        job = db.execute("SELECT status, error FROM jobs WHERE kind = 'experiment'").fetchone()
        assert job[0] == "done", job[1]
        exp = store_training.experiment_by_name(db, "demo-tiny")
        runs = store_training.experiment_runs(db, exp["id"])
        assert len(runs) == 12
        assert {r["arm"] for r in runs} == {"zero-shot", "real-only", "mixed-curated", "mixed-random"}
        assert exp["ap50_comparisons"] and all("verdict" in c for c in exp["ap50_comparisons"])
    monkeypatch.setenv("REALCAL_WORKSPACE", str(ws.root))
    at = AppTest.from_file(str(REPO / "app_pages/results.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert at.subheader[0].value == "Experiment: demo-tiny"
    assert any("not a result" in w.value for w in at.warning)
    assert any("AP50" in m.value and "real-only" in m.value for m in at.markdown)
    _results_and_train_in_chromium(ws, tmp_path)


def _results_and_train_in_chromium(ws, tmp_path):
    """The dashboards render in a real browser (plotly charts drawn, not just scripts run)."""
    from tests.test_browser import CHROMIUM, FLAGS, require_browser, serve

    require_browser()
    from playwright.sync_api import sync_playwright

    with serve(ws) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 3200})
            page.goto(f"{url}/results")
            page.get_by_role("heading", name="Experiment: demo-tiny").wait_for(timeout=90_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            assert page.locator(".js-plotly-plot").count() >= 4
            assert page.get_by_text("not a result", exact=False).first.is_visible()
            page.screenshot(path=str(tmp_path / "results-page.png"))
            page.goto(f"{url}/train")
            page.get_by_role("heading", name="Train").wait_for(timeout=60_000)
            page.get_by_text("Experiment (YAML)").wait_for(timeout=30_000)
            page.get_by_role("tab", name="Trained models").click()
            page.get_by_role("button", name="Download .pt").wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "train-page.png"))
            with page.expect_download(timeout=60_000) as dl:         # the weights are read on click
                page.get_by_role("button", name="Download .pt").click()
            got = Path(dl.value.path()).read_bytes()
            assert got[:2] == b"PK" and any(got == w.read_bytes() for w in ws.root.glob("runs/**/*.pt"))
        finally:
            browser.close()
    artifacts = os.environ.get("REALCAL_TEST_ARTIFACTS")
    if artifacts:
        import shutil

        Path(artifacts).mkdir(parents=True, exist_ok=True)
        for name in ("results-page.png", "train-page.png"):
            shutil.copyfile(tmp_path / name, Path(artifacts) / name)

