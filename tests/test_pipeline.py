"""Pipeline as code: a pipeline file runs offline end to end on tiny data to a report, resumes
without redoing finished steps, stops at the review gate, refuses unknown names before any work,
and discovers third-party stages through the realcal.stages entry-point group."""
import copy
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from engine import pipeline, registry
from engine.errors import RealcalError
from engine.io import parse
from engine.io.common import run_import

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def pws(ws, lspet):
    run_import(ws, parse("lsp", lspet), limit=24, split="train")
    run_import(ws, parse("lsp", lspet), ids=[f"im{i:05d}.jpg" for i in range(100, 108)], split="val")
    run_import(ws, parse("lsp", lspet), ids=[f"im{i:05d}.jpg" for i in range(200, 208)], split="test")
    return ws


def tiny(policy: dict) -> dict:
    """The shipped offline pipeline, shrunk to seconds."""
    cfg = yaml.safe_load((REPO / "pipelines" / "offline_cpu.yaml").read_text())
    s = cfg["steps"]
    s["generate"].update(count=8, generator_params={"width": 128, "height": 128, "background": "procedural"})
    for st in s["curate"]["stages"]:
        if st["name"] == "pose_consistency":
            st["params"] = {"threshold": 0.0}
    s["curate"]["selection"]["flip_tta"] = False
    s["select"]["budget"] = 6
    s["review"] = policy
    s["experiment"].update(seeds=[0], recipe={"epochs": 1, "imgsz": 96, "batch": 8},
                           arms=[{"name": "real-only"}, {"name": "mixed-accepted", "pool": "accepted"}])
    return cfg


def jobs_count(ws) -> int:
    with ws.connect() as db:
        return db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]


def test_unattended_pipeline_runs_to_a_report_and_resumes(pws):
    cfg = tiny({"policy": "auto_accept", "min_pose_oks": 0.0})
    logs = []
    res = pipeline.run(pws, cfg, log=logs.append)
    assert set(res) == set(pipeline.steps())
    md = Path(res["report"]["markdown"]).read_text()
    assert "UNATTENDED" in md and "auto-accept" in md  # the policy is stated downstream
    with pws.connect() as db:
        exp = db.execute("SELECT config FROM experiments").fetchone()[0]
        batch_params = db.execute("SELECT params FROM batches WHERE kind = 'generation'").fetchone()[0]
        run_cfg = db.execute("SELECT config FROM curation_runs").fetchone()[0]
        resolved = db.execute("SELECT hash FROM pipelines").fetchone()[0]
    for stored in (exp, batch_params, run_cfg):  # every artefact names the resolved pipeline
        assert resolved in stored
    n = jobs_count(pws)
    logs.clear()
    pipeline.run(pws, cfg, log=logs.append)  # unchanged: nothing reruns
    assert jobs_count(pws) == n and sum("skipped" in m for m in logs) == len(pipeline.steps())
    logs.clear()
    pipeline.run(pws, cfg, from_step="experiment", log=logs.append)
    assert [m.split(":")[0] for m in logs if "skipped" in m] == ["generate", "curate", "select", "review"]
    changed = copy.deepcopy(cfg)
    changed["steps"]["select"]["budget"] = 5  # a changed step reruns with everything after it
    logs.clear()
    pipeline.run(pws, changed, log=logs.append)
    assert [m.split(":")[0] for m in logs if "skipped" in m] == ["generate", "curate"]


def test_review_gate_stops_until_people_decide(pws):
    cfg = tiny({"policy": "stop"})
    cfg["steps"].pop("experiment")
    cfg["steps"].pop("report")
    with pytest.raises(pipeline.ReviewGate, match="await review"):
        pipeline.run(pws, cfg, log=lambda m: None)
    with pws.connect() as db:
        db.execute("UPDATE review_items SET state = 'accepted'")
        db.conn.commit()
    logs = []
    pipeline.run(pws, cfg, log=logs.append)
    assert any(m.startswith("review: all") for m in logs)
    assert any(m.startswith("generate: unchanged") for m in logs)


def test_unknown_names_fail_before_any_work(pws):
    cfg = tiny({"policy": "stop"})
    cfg["steps"]["curate"]["stages"].append({"name": "sharpnes", "params": {}})
    with pytest.raises(RealcalError, match="unknown stage 'sharpnes'; valid names: .*quality"):
        pipeline.run(pws, cfg, log=lambda m: None)
    bad_step = tiny({"policy": "stop"})
    bad_step["steps"]["augment"] = {}
    with pytest.raises(RealcalError, match="unknown pipeline step.*augment.*valid steps: generate"):
        pipeline.run(pws, bad_step, log=lambda m: None)
    gen = tiny({"policy": "stop"})
    gen["steps"]["generate"]["generator"] = "stable_diffusion"
    with pytest.raises(RealcalError, match="unknown generator 'stable_diffusion'; valid names: controlnet, copy_paste"):
        pipeline.run(pws, gen, log=lambda m: None)
    assert jobs_count(pws) == 0


def test_example_pipelines_resolve_or_say_what_is_missing(pws):
    offline = yaml.safe_load((REPO / "pipelines" / "offline_cpu.yaml").read_text())
    r = pipeline.resolve(pws, offline)
    assert list(r["steps"]) == list(pipeline.steps()) and r["executor"]["name"] == "local"
    gpu = yaml.safe_load((REPO / "pipelines" / "gpu_controlnet.yaml").read_text())
    with pytest.raises(RealcalError, match="ControlNet|controlnet|CUDA|GPU|weights"):
        pipeline.resolve(pws, gpu)  # no weights or GPU here: refused with the reason, before work


def test_entry_point_plugin_stage_is_discovered_and_used(pws, tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "realcal_plugin_example").mkdir(parents=True)
    (site / "realcal_plugin_example" / "__init__.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass

        from engine import component


        class AspectStage(component.Component):
            """Rejects images whose aspect ratio is outside a range (an example third-party stage)."""
            @dataclass(frozen=True)
            class Config(component.Config):
                max_ratio: float = 2.0
            def calibrate(self, ctx):
                return {"max_ratio": self.max_ratio}
            def run(self, ctx, items):
                rows = []
                for it in items:
                    r = max(it["width"], it["height"]) / min(it["width"], it["height"])
                    ok = r <= self.max_ratio
                    rows.append({"image_id": it["id"], "status": "pass" if ok else "fail", "value": r,
                                 "reason": None if ok else f"aspect {r:.2f}"})
                return rows
    '''))
    dist = site / "realcal_plugin_example-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: realcal-plugin-example\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[realcal.stages]\naspect = realcal_plugin_example:AspectStage\n")
    monkeypatch.syspath_prepend(str(site))
    registry.load_plugins(force=True)
    try:
        assert "aspect" in registry.names("stage")
        cfg = tiny({"policy": "auto_accept", "min_pose_oks": 0.0})
        cfg["steps"]["curate"]["stages"].insert(0, {"name": "aspect", "params": {"max_ratio": 1.5}})
        for s in ("select", "review", "experiment", "report"):
            cfg["steps"].pop(s)
        res = pipeline.run(pws, cfg, log=lambda m: None)
        assert res["curate"]["funnel"][0]["stage"] == "aspect" and res["curate"]["funnel"][0]["passed"] == 8
    finally:
        registry.unregister("stage", "aspect")
        sys.modules.pop("realcal_plugin_example", None)
