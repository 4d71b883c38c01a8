"""The ledger: an experiment's finished runs outlive the workspace. A new workspace with the same data takes
them (and trains nothing), with the same comparisons; a run whose training set differs here, a changed
configuration, a loop seed without all its rounds, or a broken file is not taken, and says why."""
import gzip
import json

import pytest

from engine import jobs, ledger
from engine.experiment import ledger_importable, resolve
from engine.io import parse
from engine.io.common import run_import
from engine.report import write_experiment_report
from engine.workspace import Workspace
from store import training as store_training

CONFIG = {"name": "led", "seeds": [0], "recipe": {"epochs": 2, "imgsz": 96, "batch": 8},
          "arms": [{"name": "real-only", "real": 8}, {"name": "mixed", "real": 8, "pool": "random", "synthetic": 8}]}


def _workspace(root, lspet, coco_sample) -> Workspace:
    """The same data each time: 16 LSP train images, 6 val, the COCO sample as test, 8 generated images."""
    from engine.generate.job import resolve_params as gen_params

    ws = Workspace.init(root)
    run_import(ws, parse("lsp", lspet), limit=16, split="train")
    run_import(ws, parse("lsp", lspet), ids=[f"im{i:05d}.jpg" for i in range(100, 106)], split="val")
    run_import(ws, parse("coco", coco_sample), split="test")
    g = jobs.run_foreground(ws, "generate", gen_params(ws, {
        "count": 8, "seed": 7, "generator_params": {"width": 128, "height": 128, "background": "procedural"}}))
    assert g["status"] == "done", g["error"]
    return ws


def _run(ws, cfg, folder, **extra):
    messages: list[str] = []
    final = jobs.run_foreground(ws, "experiment", {"config": cfg, "device": "cpu", "ledger": str(folder), **extra},
                                lambda done, total, msg: msg and messages.append(msg))
    assert final["status"] == "done", final["error"]
    return final["result"], messages


def _trained(ws) -> int:
    with ws.connect() as db:
        return db.execute("SELECT COUNT(*) FROM training_runs").fetchone()[0]


def test_a_new_workspace_takes_the_ledgers_runs_and_trains_nothing(tmp_path, lspet, coco_sample, monkeypatch):
    cfg, folder = resolve(CONFIG), tmp_path / "runs"
    a = _workspace(tmp_path / "a", lspet, coco_sample)
    first, _ = _run(a, cfg, folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "gt", "mixed--seed-0.json.gz", "real-only--seed-0.json.gz", "zero-shot--seed-0.json.gz"]
    assert len(list((folder / "gt").iterdir())) == 2           # test and val ground truth, once for every run
    entry = ledger.read(folder / "mixed--seed-0.json.gz")
    assert entry["evals"]["test"]["dets"] is not None and entry["evals"]["val"] and entry["curves"]
    assert "test_eval" not in entry["result"] and len(entry["result"]["manifest_hash"]) == 64

    # a broken file beside them is skipped with its reason; the others still come in
    (folder / "broken--seed-0.json.gz").write_bytes(b"not gzip")
    b = _workspace(tmp_path / "b", lspet, coco_sample)
    second, messages = _run(b, cfg, folder)
    assert _trained(b) == 0                                   # nothing trained again
    taken = next(m for m in messages if "finished run(s) taken from it" in m)
    assert "zero-shot seed 0, real-only seed 0, mixed seed 0" in taken or \
        all(f"{arm} seed 0" in taken for arm in ("zero-shot", "real-only", "mixed"))
    assert any("broken--seed-0.json.gz: not a readable ledger file" in m for m in messages)
    # the same comparisons, AP50 re-scored from the ledger's detections
    key = lambda s: [(c["arm"], c["metric"], round(c["mean_diff"], 9)) for c in s["comparisons"]]  # noqa: E731
    assert key(second["summary"]) == key(first["summary"]) and key(first["summary"])
    assert {r["arm"]: r["AP50"] for r in second["summary"]["table"]} == \
        {r["arm"]: r["AP50"] for r in first["summary"]["table"]}
    with b.connect() as db:
        runs = store_training.experiment_runs(db, second["experiment_id"])
    assert all(r["result"]["ledger"]["file"] and r["training_run_id"] is None for r in runs)
    assert all(r["manifest_id"] for r in runs)                 # rebuilt here, and its hash matched
    rep = write_experiment_report(b, tmp_path / "rep", "led")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| mixed |" in md and rep["summary"]["table"]
    assert md.split("## Runs", 1)[1].count(f"| ledger ({entry['written'][:10]}) |") == 3
    assert "- Trained on: " in md and "cores): 3 run(s)" in md
    # a run taken from a ledger is verified by training it here as the experiment would: the same figures
    from engine.experiment import verify

    v = verify(b, "led", "mixed", 0, device="cpu")
    assert v["identical"], v["rows"]
    assert _trained(b) == 1
    # the Results page says where the runs trained and that they came from a ledger
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("REALCAL_WORKSPACE", str(b.root))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app_pages/results.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert any("**Trained on**" in m.value and "(3 run(s) taken from a ledger)" in m.value for m in at.markdown)
    # nothing rewritten: the ledger already holds these very runs
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    _run(b, cfg, folder, deadline=1)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes

    # a run whose training set differs here is trained, not taken
    path = folder / "mixed--seed-0.json.gz"
    data = ledger.read(path)
    data["result"]["manifest_hash"] = "0" * 64
    with gzip.open(path, "wt") as fh:
        json.dump(data, fh)
    c = _workspace(tmp_path / "c", lspet, coco_sample)
    third, messages = _run(c, cfg, folder, deadline=1)         # a past deadline: import, then train nothing
    assert any("mixed--seed-0.json.gz (mixed seed 0): the training set built here differs" in m for m in messages)
    assert third["runs_left"] == 1
    # a changed recipe decides every run: nothing is taken
    d = _workspace(tmp_path / "d", lspet, coco_sample)
    fourth, messages = _run(d, resolve({**CONFIG, "recipe": {**CONFIG["recipe"], "epochs": 3}}), folder, deadline=1)
    assert fourth["runs_left"] == 3
    assert sum("made under another configuration" in m for m in messages) == 3


def _entry(arm, seed, cfg):
    return {"ledger": 2, "experiment": cfg["name"], "config": cfg, "arm": arm, "seed": seed, "result": {},
            "_file": ledger.file_name(arm, seed)}


def test_a_loops_rounds_come_from_the_ledger_all_together_or_not_at_all():
    raw = {"name": "lp", "seeds": [0, 1], "arms": [
        {"name": "real-only", "real": 8}, {"name": "loop-round-1", "kind": "loop", "real": 8, "round": 1},
        {"name": "loop-round-2", "kind": "loop", "real": 8, "round": 2}]}
    cfg = resolve(raw)
    entries = [_entry("real-only", 0, cfg), _entry("loop-round-1", 0, cfg), _entry("loop-round-2", 0, cfg),
               _entry("loop-round-1", 1, cfg), _entry("other", 0, cfg), {**_entry("real-only", 1, cfg),
                                                                         "experiment": "else"}]
    ok, why = ledger_importable(entries, cfg, done=set())
    assert [(e["arm"], e["seed"]) for e in ok] == [("real-only", 0), ("loop-round-1", 0), ("loop-round-2", 0)]
    assert any("loop-round-1 seed 1): the seed's other loop rounds are not all in the ledger" in w for w in why)
    assert any("(other seed 0): this experiment has no such arm" in w for w in why)
    assert any("belongs to experiment 'else'" in w for w in why)
    # a round finished here: the seed's loop is this workspace's, the ledger's rounds stay out
    ok, why = ledger_importable(entries, cfg, done={("loop-round-1", 0)})
    assert [(e["arm"], e["seed"]) for e in ok] == [("real-only", 0)]
    # a changed loop section redoes the loop arms only
    changed = resolve({**raw, "loop": {"add_per_round": 5}})
    ok, why = ledger_importable(entries[:3], changed, done=set())
    assert [e["arm"] for e in ok] == ["real-only"] and len(why) == 2


def test_ledger_files_are_named_safely_and_bad_files_are_refused(tmp_path):
    assert ledger.file_name("../../etc/passwd", 3) == "etc_passwd--seed-3.json.gz"
    assert "/" not in ledger.file_name("a/b\\c d", 0)
    p = tmp_path / "x.json.gz"
    with gzip.open(p, "wt") as fh:
        json.dump({"ledger": 99}, fh)
    with pytest.raises(Exception, match="not a ledger file of version 2"):
        ledger.read(p)
    with gzip.open(p, "wt") as fh:
        json.dump({"ledger": 2, "experiment": "e", "config": {}, "arm": "a", "seed": "0", "result": {}}, fh)
    with pytest.raises(Exception, match="arm or seed is malformed"):
        ledger.read(p)
    assert ledger.load(tmp_path / "missing") == ([], [])


def test_evaluations_are_packed_losslessly_and_only_scored_detections_are_kept(tmp_path):
    from engine.train import protocols

    gt = {"images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
          "annotations": [{"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [10, 10, 40, 80],
                           "area": 3200.0, "num_keypoints": 17, "keypoints": [20.0, 20.0, 2.0] * 17}],
          "categories": [{"id": 1, "name": "person"}]}
    near = {"image_id": 1, "category_id": 1, "score": 0.875, "keypoints": [20.5, 19.25, 0.75] * 17,
            "box": [10.0, 10.0, 40.0, 80.0]}
    f64 = {**near, "score": 0.1, "keypoints": [20.1, 19.3, 0.7] * 17}        # values no float32 holds exactly
    away = {**near, "image_id": 2, "score": 0.5}                               # an image nobody is labelled in
    coco = {"gt": gt, "dets": [near, f64, away], "protocol": "annotated_person"}
    packed = ledger.pack_eval(coco, tmp_path)
    assert packed["detections_stored"] == 2 and packed["detections_made"] == 3
    assert packed["dets"]["keypoints"]["dtype"] == "<f8"
    back = ledger.unpack_eval(json.loads(json.dumps(packed)), tmp_path)
    assert back["gt"] == gt and back["dets"] == [near, f64] == protocols.scored_in(coco)
    only32 = ledger.pack_dets([near])
    assert only32["keypoints"]["dtype"] == "<f4" and ledger.unpack_dets(only32) == [near]
    # the coco protocol scores every detection: all kept; an odd detection keeps the plain list
    assert ledger.unpack_eval(ledger.pack_eval({**coco, "protocol": "coco"}, tmp_path), tmp_path)["dets"] == \
        [near, f64, away]
    assert ledger.pack_dets([{**near, "extra": 1}]) == [{**near, "extra": 1}]
    # ground truth that does not match its digest is refused
    (tmp_path / "gt" / f"{packed['gt']}.json.gz").write_bytes(gzip.compress(b'{"images": []}'))
    with pytest.raises(Exception, match="does not match its digest"):
        ledger.unpack_eval(packed, tmp_path)
