"""The model in the loop (engine/loop.py): rounds that mine failures, generate around them, curate and select with
the student's signals and train the next student; stored round by round, resumable, stopped by val."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from engine import jobs
from engine.cli import main
from engine.errors import RealcalError
from engine.io import parse
from engine.io.common import run_import
from engine.loop import _should_stop, check, resolve, summary
from engine.train.manifest import anchor_pool
from store import batches as store_batches
from store import curation as store_curation
from store import loops as store_loops
from store import training as store_training
from store.db import write_transaction

LOOP = {"name": "tiny", "rounds": 2, "seed": 0, "real": 8, "add_per_round": 2,
        "recipe": {"epochs": 1, "imgsz": 96, "batch": 4, "nbs": 4, "checkpoint": "last"},
        "generate": {"generator": "pose_warp", "count": 4,
                     "generator_params": {"width": 96, "height": 96, "background": "procedural"}},
        "curate": {"stages": [{"name": "quality", "params": {"sharpness": 1.0}}]},
        "mine": {"k": 2}, "stop": {"patience": 5}}


def test_loop_files_are_checked_before_anything_runs():
    cfg = resolve({"name": "a"})
    assert cfg["rounds"] == 3 and cfg["generate"]["generator"] == "pose_warp" and cfg["stop"]["metric"] == "AP50"
    for bad, match in [({"name": "a", "round": 3}, "unknown key"),
                       ({"name": "a", "add_per_round": 500, "fill": {"max_batches": 1}},
                        r"generate.count x fill.max_batches \(300 x 1\) must be at least fill.survivors \(500\)"),
                       ({"name": "a", "fill": {"survivors": 50}}, "fill.survivors .50. must be at least add_per"),
                       ({"name": "a", "fill": {"batches": 2}}, "fill takes survivors"),
                       ({"name": "a", "stop": {"metric": "mAP"}}, "stop.metric must be one of"),
                       ({"name": "a", "generate": {"seed": 3}}, "may not set seed"),
                       ({"name": "a", "rounds": 0}, "rounds must be within 1..50"),
                       ({"name": "a", "select": {"studnet": 1}}, "studnet"),
                       ({"name": "a", "schedule": {"kind": "weighted", "synthetic_fraction": 2}}, "synthetic_fraction"),
                       ({"rounds": 2}, "name is a short text")]:
        with pytest.raises(RealcalError, match=match):
            resolve(bad)


def test_the_stop_rule():
    stop = {"metric": "AP50", "min_delta": 0.01, "patience": 2}
    assert _should_stop([0.5], stop) is None
    assert _should_stop([0.5, 0.505], stop) is None                  # one miss: patience 2
    assert "not beaten 0.500 by more than 0.01 for 2 rounds" in _should_stop([0.5, 0.505, 0.49], stop)
    assert _should_stop([0.5, 0.52, 0.525], stop) is None             # 0.52 was a gain: the count restarts
    assert _should_stop([0.5, 0.4], {**stop, "patience": 1})


@pytest.fixture
def lws(ws, lspet):
    run_import(ws, parse("lsp", lspet), limit=12, split="train")
    run_import(ws, parse("lsp", lspet), ids=[f"im{i:05d}.jpg" for i in range(100, 104)], split="val")
    return ws


def test_a_loop_runs_its_rounds_stores_them_and_resumes(lws, tmp_path):
    cfg = resolve(LOOP)
    assert check(lws, cfg) == {"anchors": 8, "held_out_labelled": 4, "unlabelled": 0}
    messages = []
    final = jobs.run_foreground(lws, "loop", {"config": cfg, "device": "cpu"},
                                lambda d, t, msg: msg and messages.append(msg))
    assert final["status"] == "done", final["error"]
    s = final["result"]
    assert s["status"] == "done" and s["stop_reason"] == "all 2 rounds ran"
    rows = s["rounds"]
    assert [r["round"] for r in rows] == [0, 1, 2] and all(r["status"] == "done" for r in rows)
    assert [r["synthetic"] for r in rows] == [0, 2, 4] and [r["added"] for r in rows] == [0, 2, 2]
    assert all(r["real"] == 8 and r["val AP50"] is not None for r in rows)
    assert any(m.startswith("round 1: mining where the last student fails") for m in messages)
    assert s["best_round"] in (0, 1, 2)
    with lws.connect() as db:
        rounds = store_loops.rounds(db, s["loop_id"])
        st1, st2 = rounds[1]["state"], rounds[2]["state"]
        # round 2's student trained on round 1's and round 2's selections, at round 0's optimizer steps
        m2 = store_training.manifest(db, st2["manifest_id"])
        syn2 = {it["image_id"] for it in m2["items"] if it["split"] == "train"} - set(
            it["image_id"] for it in store_training.manifest(db, rounds[0]["state"]["manifest_id"])["items"])
        assert syn2 == set(st1["selected"]) | set(st2["selected"])
        # matched to round 0's 2 steps by whole epochs: 1 epoch of 12 images at batch 4 is the nearest (3 steps)
        assert rounds[0]["state"]["steps"] == 2 and st2["steps"] == 3
        # generation was targeted at the anchors of the worst pose groups, and the lineage says who asked
        assert st1["mined"]["targets"] and st1["mined"]["against_labels"] == st1["mined"]["people"] > 0
        # its curation learns thresholds from the loop's 8 anchors only, not the 4 other labelled train images
        cur = store_curation.latest_run(db)
        assert sorted(cur["config"]["calibrate_on"]) == sorted(anchor_pool(lws, 8, 0))
        batch = store_batches.get(db, st1["batch_id"])
        assert batch["params"]["label"] == "loop tiny round 1" and batch["params"]["pose_source"]["targets"]
        assert batch["params"]["pose_source"]["target_label"].startswith("loop tiny round 1: student of round 0")
        n_train_runs = len(store_training.list_runs(db))
        # an interrupted round: its training never finished
        del st2["train_run_id"]
        with write_transaction(db):
            store_loops.put_round(db, s["loop_id"], 2, "running", st2)
            store_loops.set_status(db, s["loop_id"], "running")
        n_batches = len(store_batches.list_batches(db))
    again = jobs.run_foreground(lws, "loop", {"config": cfg, "device": "cpu"})
    assert again["status"] == "done", again["error"]
    with lws.connect() as db:
        assert len(store_training.list_runs(db)) == n_train_runs + 1      # only the missing training
        assert len(store_batches.list_batches(db)) == n_batches            # nothing regenerated
    # the CLI: status, and a changed file under the same name is refused
    r = CliRunner().invoke(main, ["-w", str(lws.root), "loop", "status", "--json"])
    assert r.exit_code == 0, r.output
    assert [x["round"] for x in json.loads(r.output)["rounds"]] == [0, 1, 2]
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump({**LOOP, "add_per_round": 3}))
    r = CliRunner().invoke(main, ["-w", str(lws.root), "loop", "run", str(path)])
    assert r.exit_code != 0 and "already ran with another loop file" in r.output
    assert summary(lws, "tiny")["rounds"][2]["status"] == "done"


def test_a_round_generates_until_enough_images_survive_and_says_when_it_falls_short(lws):
    """One batch may leave fewer survivors than the round adds: the round generates and curates more batches
    (each seeded and labelled apart) until fill.survivors survive, and the student selects among all of them;
    when max_batches cannot reach add_per_round the round adds what survived and says so."""
    cfg = resolve({**LOOP, "rounds": 1, "add_per_round": 2, "generate": {**LOOP["generate"], "count": 2},
                   "fill": {"survivors": 4, "max_batches": 3}})
    final = jobs.run_foreground(lws, "loop", {"config": cfg, "device": "cpu"})
    assert final["status"] == "done", final["error"]
    r1 = final["result"]["rounds"][1]
    # 2 images a batch: one batch cannot reach 4 survivors; it stops at the first batch that does (or at 3)
    assert r1["batches"] >= 2 and r1["generated"] == 2 * r1["batches"]
    assert r1["survivors"] >= 4 or r1["batches"] == 3
    assert r1["added"] == 2 and r1["short"] is None
    with lws.connect() as db:
        st = store_loops.rounds(db, final["result"]["loop_id"])[1]["state"]
        params = [store_batches.get(db, b)["params"] for b in st["batch_ids"]]
        assert [p["label"] for p in params][:2] == ["loop tiny round 1", "loop tiny round 1 batch 2"]
        assert len({p["seed"] for p in params}) == len(params)
        # one curation over every batch
        assert sorted(store_curation.run_config(db, st["curation_run_id"])["batches"]) == sorted(st["batch_ids"])
        assert set(st["selected"]) <= {i["id"] for b in st["batch_ids"] for i in store_images_in(db, b)}
    # a curation that keeps nothing: max_batches batches, then the round adds what survived and says so (this loop
    # has the first one's seed and anchors: its own generation seeds still make new images, not stored duplicates)
    cfg = resolve({**LOOP, "name": "tiny-short", "rounds": 1, "add_per_round": 2,
                   "generate": {**LOOP["generate"], "count": 2}, "fill": {"max_batches": 2},
                   "curate": {"stages": [{"name": "quality", "params": {"sharpness": 1e9}}]}})
    messages: list[str] = []
    final = jobs.run_foreground(lws, "loop", {"config": cfg, "device": "cpu"},
                                lambda d, t, msg: msg and messages.append(msg))
    assert final["status"] == "done", final["error"]
    r1 = final["result"]["rounds"][1]
    assert (r1["batches"], r1["generated"], r1["survivors"], r1["added"], r1["synthetic"]) == (2, 4, 0, 0, 0)
    assert r1["short"].startswith("round 1 adds 0 of 2 images: 0 of 4 generated (2 batches) survived curation")
    assert r1["short"] in messages


def store_images_in(db, batch_id: int) -> list[dict]:
    return list(db.query("SELECT id FROM images WHERE batch_id = ?", [batch_id]))


def test_a_loop_that_could_mine_nothing_is_refused_before_training(lws, tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump({**LOOP, "real": None}))
    r = CliRunner().invoke(main, ["-w", str(lws.root), "loop", "run", str(path)])
    assert r.exit_code != 0 and "failure mining would have nothing to read" in r.output
    with lws.connect() as db:
        assert not store_training.list_runs(db)
    r = CliRunner().invoke(main, ["-w", str(lws.root), "loop", "status"])
    assert r.exit_code != 0 and "no loop has run" in r.output


def test_the_example_loop_file_resolves_and_the_train_page_plots_a_loop(lws, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    root = Path(__file__).resolve().parents[1]
    example = resolve(yaml.safe_load((root / "experiments" / "example_loop.yaml").read_text()))
    assert example["name"] == "example-loop" and example["real"] == 16
    cfg = resolve({**LOOP, "name": "page", "rounds": 1})
    final = jobs.run_foreground(lws, "loop", {"config": cfg, "device": "cpu"})
    assert final["status"] == "done", final["error"]
    monkeypatch.setenv("REALCAL_WORKSPACE", str(lws.root))
    at = AppTest.from_file(str(root / "app_pages" / "train.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert any("best on val: round" in m.value for m in at.markdown)
    frames = [df.value for df in at.dataframe]
    assert any(list(f.columns[:3]) == ["round", "status", "val AP50"] and len(f) == 2 for f in frames)


def test_a_loop_can_mine_without_reading_labels_outside_its_anchors(lws):
    blind = resolve({**LOOP, "mine": {"k": 2, "labels": False}})
    assert check(lws, blind) == {"anchors": 8, "held_out_labelled": 0, "unlabelled": 4}
    with pytest.raises(RealcalError, match="mine takes k"):
        resolve({**LOOP, "mine": {"k": 2, "labels": "no"}})


def test_experiment_loop_arms_and_the_gap_they_close(lws, coco_sample, tmp_path, monkeypatch):
    """Loop rounds as experiment arms (one loop per seed, each round's student an arm) beside real-only N and
    the reference 2N; the report states the share of the N -> 2N gap each arm closes."""
    from engine.experiment import resolve as resolve_experiment
    from engine.report import write_experiment_report

    run_import(lws, parse("coco", coco_sample), split="test")
    exp = {"name": "le", "seeds": [0, 1], "recipe": {"epochs": 1, "imgsz": 96, "batch": 4, "nbs": 4,
                                                    "checkpoint": "last"},
           "loop": {"add_per_round": 2, "generate": LOOP["generate"], "curate": LOOP["curate"],
                    "mine": {"k": 2, "labels": False}},
           "arms": [{"name": "real-only", "real": 4}, {"name": "real-2N", "real": 8, "reference": True},
                    {"name": "loop-1", "kind": "loop", "real": 4, "round": 1},
                    {"name": "loop-2", "kind": "loop", "real": 4, "round": 2}]}
    cfg = resolve_experiment(exp)
    for bad, match in [({**exp, "arms": [*exp["arms"][:2], {"name": "l", "kind": "loop", "real": 4}]},
                        "names its round"),
                       ({**exp, "loop": {"seed": 3}}, "come from the experiment"),
                       ({**exp, "arms": [*exp["arms"][:3], {"name": "x", "real": 4, "pool": "random",
                                                            "synthetic": 2, "reference": True}]}, "reference"),
                       ({**exp, "arms": exp["arms"][:2]}, "loop section but no loop arm")]:
        with pytest.raises(RealcalError, match=match):
            resolve_experiment(bad)
    final = jobs.run_foreground(lws, "experiment", {"config": cfg, "device": "cpu", "n_boot": 200})
    assert final["status"] == "done", final["error"]
    with lws.connect() as db:
        runs = {(r["arm"], r["seed"]): r for r in store_training.experiment_runs(db, final["result"]["experiment_id"])}
        loops = {lp["name"]: lp for lp in store_loops.all_loops(db)}
        rounds = store_loops.rounds(db, loops["le loop seed 1"]["id"])
    assert set(loops) == {"le loop seed 0", "le loop seed 1"} and len(rounds) == 3
    r2 = runs[("loop-2", 1)]["result"]
    assert r2["loop"] == {"name": "le loop seed 1", "round": 2, "synthetic": rounds[2]["state"]["synthetic"],
                          "training_run_id": rounds[2]["state"]["train_run_id"]}
    assert runs[("loop-2", 1)]["training_run_id"] == rounds[2]["state"]["train_run_id"]
    # round 0 of the loop is the real-only arm's run (the same anchors and recipe), reused, not trained again
    assert rounds[0]["state"]["manifest_id"] == runs[("real-only", 1)]["manifest_id"]
    assert rounds[0]["state"]["train_run_id"] == runs[("real-only", 1)]["training_run_id"]
    assert rounds[0]["state"]["reused_run"] is True and rounds[1]["state"]["reused_run"] is False
    s = final["result"]["summary"]
    gaps = {(c["arm"], c["metric"]): c for c in s["gap_closed"]}
    assert set(gaps) == {(a, m) for a in ("loop-1", "loop-2") for m in ("AP50", "PCK@0.2")}
    assert all(c["reference"] == "real-2N" and "gap" in c["verdict"] for c in gaps.values())
    write_experiment_report(lws, tmp_path / "rep", "le")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Gap closed" in md and "loop-2" in md
    rounds_md = md.split("## Loop rounds", 1)[1].split("## ", 1)[0]
    assert [line.split(" | ")[1] for line in rounds_md.splitlines() if line.startswith("| ") and " | " in line
            and not line.startswith("| round")] == ["real-only", "loop-1", "loop-2"]
    assert "Loop rounds: test figures per round" in (tmp_path / "rep" / "report.html").read_text()
    # a changed loop section redoes the loop arms only, under a loop name of their own (the stored rounds keep theirs)
    from engine.experiment import _own_loop_name, carried_over, loop_config

    changed = resolve_experiment({**exp, "loop": {**exp["loop"], "fill": {"survivors": 3}}})
    assert carried_over(cfg, changed) == ["zero-shot", "real-only", "real-2N"]
    assert carried_over(cfg, resolve_experiment({**exp, "recipe": {**exp["recipe"], "epochs": 2}})) == []
    with lws.connect() as db:
        same = _own_loop_name(db, loop_config(cfg, next(a for a in cfg["arms"] if a["kind"] == "loop"), 1))
        other = _own_loop_name(db, loop_config(changed, next(a for a in changed["arms"] if a["kind"] == "loop"), 1))
    assert same["name"] == "le loop seed 1"
    assert other["name"].startswith("le loop seed 1 (") and other["fill"]["survivors"] == 3
    # the audit of the loop's chain (bench/loop_audit.py) reads the same rounds: each round over both seeds
    import importlib.util

    spec = importlib.util.spec_from_file_location("loop_audit", Path(__file__).resolve().parent.parent / "bench"
                                                  / "loop_audit.py")
    loop_audit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loop_audit)
    a = loop_audit.audit(lws, "le")
    assert [r["round"] for r in a["rounds"]] == [1, 2] and all(r["seeds"] == [0, 1] for r in a["rounds"])
    r1 = a["rounds"][0]
    assert r1["selected"] == 2 and 0 <= r1["anchors in targeted"] <= 1 and 0 <= r1["test in targeted"] <= 1
    assert r1["mined error (targeted groups)"] >= r1["mined error (all)"] - 1e-3      # the worst groups (rounded)
    inside, outside = r1["loop - real-only, targeted"], r1["loop - real-only, elsewhere"]
    assert np.isfinite(inside[0]) or np.isfinite(outside[0])
    assert a["random arm"] is None and not np.isfinite(r1["random - real-only, targeted"][0])
    md = loop_audit.markdown(a)
    assert "## The chain, round by round" in md and "| 2 | 0, 1 |" in md
    # rounds whose loop ran in another workspace (taken from a ledger): audited from the rows kept beside the
    # ledger when they belong to the same run, else named as not audited
    led = tmp_path / "led"
    kept = loop_audit.audit(lws, "le", ledger=led)
    assert sorted(p.name for p in (led / "audit").iterdir()) == [
        f"loop-{k}--seed-{sd}.json" for k in (1, 2) for sd in (0, 1)]
    with lws.connect() as db:
        db.execute("UPDATE loops SET name = name || ' elsewhere'")
        db.conn.commit()
    again = loop_audit.audit(lws, "le", ledger=led)
    assert again["not audited"] == [] and [r["seeds"] for r in again["rounds"]] == [[0, 1], [0, 1]]
    assert again["rounds"][0]["selected in targeted"] == kept["rounds"][0]["selected in targeted"]
    assert again["rounds"][1]["loop - real-only, targeted"] == kept["rounds"][1]["loop - real-only, targeted"]
    gone = loop_audit.audit(lws, "le")
    assert gone["rounds"] == [] and len(gone["not audited"]) == 4
    assert "Finished rounds not audited here: loop-1 seed 0: its loop ran in another workspace" in \
        loop_audit.markdown({**gone, "rounds": kept["rounds"]})
    (led / "audit" / "loop-1--seed-0.json").write_text(
        (led / "audit" / "loop-1--seed-0.json").read_text().replace('"manifest_hash": "', '"manifest_hash": "x'))
    assert loop_audit.audit(lws, "le", ledger=led)["not audited"] == [
        "loop-1 seed 0: its audit row loop-1--seed-0.json belongs to another run of that round"]
    with lws.connect() as db:
        db.execute("UPDATE loops SET name = substr(name, 1, length(name) - length(' elsewhere'))")
        db.conn.commit()
    # a round that could not be filled is named in the report and on the Results page
    from engine.report import loop_shortfalls

    assert loop_shortfalls(list(runs.values())) == []
    short = {"arm": "loop-1", "seed": 3, "status": "done", "result": {"loop": {"short": "round 1 adds 1 of 2 images"}}}
    assert loop_shortfalls([*runs.values(), short]) == ["loop-1 seed 3: round 1 adds 1 of 2 images"]
    # the Results page shows the same rounds with their chart
    from streamlit.testing.v1 import AppTest

    import engine.worker

    monkeypatch.setenv("REALCAL_WORKSPACE", str(lws.root))
    monkeypatch.setattr(engine.worker, "ensure_worker", lambda ws: None)
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app_pages" / "results.py"),
                           default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert any("Loop rounds" in m.value for m in at.markdown)
