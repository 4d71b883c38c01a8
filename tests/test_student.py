"""Student signals (engine/curate/student.py): a trained model scores the candidates it might be given, and
the selector can weigh what it says."""
import numpy as np
import pytest
from click.testing import CliRunner

from engine import assets, poses, registry
from engine.cli import main
from engine.curate.student import SIGNALS, signals, student_scores
from engine.errors import RealcalError
from engine.io import parse
from engine.io.common import run_import
from engine.train.manifest import build_manifest
from store import curation as store_curation
from store import images as store_images
from store import training as store_training
from store.db import write_transaction
from tests.helpers import make_coco


def _person(k):
    return {"source": "conditioning", "keypoints": k.reshape(-1).tolist(), "num_keypoints": int((k[:, 2] > 0).sum()),
            "area": 4000.0}


def _pred(*people):
    if not people:
        return {"keypoints": np.zeros((0, 17, 3))}
    return {"keypoints": np.stack([np.concatenate([p[:, :2], np.full((17, 1), 0.9)], axis=1) for p in people])}


def _pose(shift=0.0):
    k = np.zeros((17, 3))
    k[:, 0] = np.linspace(20, 80, 17) + shift
    k[:, 1] = np.linspace(10, 110, 17)
    k[:, 2] = 2
    return k


def test_signals_measure_what_the_student_gets_wrong():
    k = _pose()
    label = [_person(k)]
    mirrored = poses.flip_keypoints(k, 100)
    right = signals(label, _pred(k), _pred(mirrored), _pred(k), 100, label_trusted=True)
    assert right["student_hardness"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert right["student_disagreement"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert right["student_flip"]["value"] == pytest.approx(0.0, abs=1e-6)
    wrong = signals(label, _pred(_pose(shift=25)), _pred(), _pred(k), 100, label_trusted=True)
    assert wrong["student_hardness"]["value"] > 0.5 and wrong["student_disagreement"]["value"] > 0.5
    assert wrong["student_flip"]["value"] == 1.0                      # someone here, no one on the mirror: unstable
    nobody = signals(label, _pred(), _pred(k), _pred(k), 100, label_trusted=True)
    assert nobody["student_flip"]["status"] == "unavailable" and nobody["student_hardness"]["value"] == 1.0
    untrusted = signals(label, _pred(k), None, _pred(), 100, label_trusted=False)
    assert untrusted["student_hardness"]["status"] == "unavailable"   # a wrong label also looks hard
    assert "pose consistency" in untrusted["student_hardness"]["reason"]
    assert untrusted["student_disagreement"]["status"] == "unavailable"
    assert all(v["status"] == "unavailable" for v in signals([], _pred(k), None, _pred(k), 100, True).values())


def test_the_selector_puts_what_the_student_needs_first():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 4))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    u = np.full(6, 0.5)
    student = np.array([0.1, 0.9, np.nan, 0.3, 0.8, 0.2])
    sel = registry.build("selector", "greedy", {"uncertainty": 0.0, "diversity": 0.0, "student": 1.0})
    order = [i for i, _, _ in sel.order(u, emb, rng.normal(size=(6, 34)), budget=3, student=student)]
    assert order == [1, 4, 2]                      # NaN: the uncertainty (0.5) stands in
    with pytest.raises(RealcalError, match="no student has scored"):
        sel.order(u, emb, rng.normal(size=(6, 34)))
    plain = registry.build("selector", "greedy", {})
    assert plain.student == 0.0                    # the default order is unchanged


@pytest.fixture
def sws(ws, tmp_path, coco_sample):
    """Real train images (for a manifest), the COCO sample imported as synthetic candidates (real people, so the
    models detect someone), a curation run whose survivors they are, and a finished 'training run' whose
    weights are the packaged yolo11n-pose (a stand-in student)."""
    run_import(ws, parse("coco", make_coco(tmp_path / "real", n=4)), split="train")
    syn = parse("coco", coco_sample)
    for rec in syn.records:
        for p in rec.persons:
            p.source = "conditioning"
    run_import(ws, syn, split="train", kind="synthetic")
    m = build_manifest(ws, {"real_train": {"count": 4, "seed": 0}})
    with ws.connect() as db, write_transaction(db):
        synth = store_images.list_images(db, kinds=["synthetic"])
        run_id = store_curation.create_run(db, None, {"embedder": {"name": "effnet-lite0", "params": {}}})
        store_curation.put_results(db, run_id, "uncertainty",
                                   [{"image_id": im["id"], "status": "pass", "value": 0.5} for im in synth])
        funnel = [{"stage": "pose_consistency", "entered": len(synth), "passed": len(synth), "failed": 0,
                   "unavailable": 0}]
        store_curation.finish_run(db, run_id, calibration={}, funnel=funnel, set_metrics={})
        store_curation.put_results(db, run_id, "pose_consistency",
                                   [{"image_id": im["id"], "status": "pass" if i % 2 == 0 else "fail", "value": 0.5}
                                    for i, im in enumerate(synth)])
        tr = store_training.create_run(db, None, m["id"], {"note": "stand-in student"})
        store_training.finish_run(db, tr, status="done", weights=str(assets.resolve("yolo11n-pose")),
                                  curves=[], metrics={})
    return ws, run_id, tr, synth


def test_student_signals_job_and_selection(sws, monkeypatch):
    ws, run_id, tr, synth = sws
    r = CliRunner().invoke(main, ["-w", str(ws.root), "student-signals", "--training-run", str(tr)])
    assert r.exit_code == 0, r.output
    assert "student_disagreement" in r.output
    with ws.connect() as db:
        rows = {s: {x["image_id"]: x for x in store_curation.results(db, run_id, s)} for s in SIGNALS}
        scores = student_scores(db, run_id)
    assert all(len(rows[s]) == len(synth) for s in SIGNALS)
    # the stand-in student is the teacher itself: they agree wherever both see the person
    agree = [x["value"] for x in rows["student_disagreement"].values() if x["status"] == "pass"]
    assert agree and max(agree) < 0.05
    # hardness only where pose consistency confirmed the label (every other image here)
    trusted = [x for x in rows["student_hardness"].values() if x["status"] == "pass"]
    assert 0 < len(trusted) < len(synth)
    assert set(scores) <= {im["id"] for im in synth} and all(0 <= v <= 1 for v in scores.values())
    r = CliRunner().invoke(main, ["-w", str(ws.root), "select", "--budget", "3", "--student-weight", "1"])
    assert r.exit_code == 0 and "student" in r.output, r.output
    # the Curate page shows them
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("REALCAL_WORKSPACE", str(ws.root))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app_pages" / "curate.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert any(s.value == "Student signals" for s in at.subheader)
    signals_table = next(df for df in at.dataframe if "signal" in df.value.columns)
    assert list(signals_table.value["signal"]) == list(SIGNALS)


def test_student_signals_refuse_what_is_not_a_finished_run(sws):
    ws, run_id, tr, _ = sws
    r = CliRunner().invoke(main, ["-w", str(ws.root), "student-signals", "--training-run", "999"])
    assert r.exit_code == 1 and "no training run 999" in r.output
    with ws.connect() as db, write_transaction(db):
        other = store_training.create_run(db, None, 1, {})
    r = CliRunner().invoke(main, ["-w", str(ws.root), "student-signals", "--training-run", str(other)])
    assert r.exit_code == 1 and "must have finished training" in r.output
