"""A tiny experiment end to end: arms x seeds at matched steps, resume, statistics, report."""
import pytest
import yaml
from click.testing import CliRunner

from engine import jobs, poses
from engine.cli import main
from engine.errors import RealcalError
from engine.experiment import resolve
from engine.io import parse
from engine.io.common import run_import
from store import training as store_training


@pytest.fixture
def ews(ws, lspet, coco_sample):
    from engine.generate.job import resolve_params as gen_params

    run_import(ws, parse("lsp", lspet), limit=16, split="train")
    run_import(ws, parse("lsp", lspet), ids=[f"im{i:05d}.jpg" for i in range(100, 106)], split="val")
    run_import(ws, parse("coco", coco_sample), split="test")
    g = jobs.run_foreground(ws, "generate", gen_params(ws, {
        "count": 8, "generator_params": {"width": 128, "height": 128, "background": "procedural"}}))
    assert g["status"] == "done", g["error"]
    return ws


CONFIG = {"name": "t", "seeds": [0, 1], "recipe": {"epochs": 2, "imgsz": 96, "batch": 8},
          "arms": [{"name": "real-only", "real": 8}, {"name": "mixed", "real": 8, "pool": "random", "synthetic": 8}]}


def test_experiment_runs_resumes_and_reports(ews, tmp_path):
    cfg = resolve(CONFIG)
    assert cfg["arms"][0]["name"] == "zero-shot"                 # always included
    messages = []
    final = jobs.run_foreground(
        ews, "experiment", {"config": cfg, "device": "cpu"},
        lambda done, total, msg: msg and (not messages or messages[-1] != msg) and messages.append(msg))
    assert final["status"] == "done", final["error"]
    # the val gate's arms run first for every seed, and the gate is announced before the other arms
    order = [m for m in messages if m.endswith(("seed 0", "seed 1")) or m.startswith("val gate")]
    assert order[:5] == ["zero-shot seed 0", "real-only seed 0", "zero-shot seed 1", "real-only seed 1",
                         order[4]] and order[4].startswith("val gate (2 seeds, real-only vs zero-shot: AP50 ")
    assert order[5:] == ["mixed seed 0", "mixed seed 1"]
    s = final["result"]["summary"]
    arms = {r["arm"]: r for r in s["table"]}
    assert set(arms) == {"zero-shot", "real-only", "mixed"} and all(r["seeds"] == 2 for r in arms.values())
    assert arms["mixed"]["steps"] == arms["real-only"]["steps"]   # matched optimizer steps
    assert {c["arm"] for c in s["comparisons"]} == {"zero-shot", "mixed"}
    assert [r["arm"] for r in s["table"]] == ["zero-shot", "real-only", "mixed"]   # config order
    ap50 = {c["arm"]: c for c in s["ap50"]}
    assert arms["mixed"]["AP50 - real-only"] == pytest.approx(ap50["mixed"]["mean_diff"])
    assert arms["real-only"]["AP50 - real-only"] is None
    assert arms["mixed"]["seconds (all seeds)"] >= arms["mixed"]["seconds per run"] * 2 - 1e-6
    assert {r["joint"] for r in s["per_joint"]} <= set(poses.KEYPOINT_NAMES) and s["per_joint"]
    assert all(set(r) == {"joint", "zero-shot", "real-only", "mixed"} for r in s["per_joint"])
    assert [g["seed"] for g in s["val_gate"]] == [0, 1]
    assert all(g["beats zero-shot on"] in ("AP50", "PCK@0.2", "AP50, PCK@0.2", "neither") for g in s["val_gate"])
    assert all("p_holm" in c and c["verdict"] for c in s["comparisons"])
    # the val gate with a two-stage interval: real-only minus the untouched model on val
    assert [(c["arm"], c["baseline"], c["metric"]) for c in s["val_gate_intervals"]] == [
        ("real-only", "zero-shot", "AP50"), ("real-only", "zero-shot", "PCK@0.2")]
    assert all(c["seeds"] == 2 and c["n"] == 6 for c in s["val_gate_intervals"])
    with ews.connect() as db:
        exp_id = final["result"]["experiment_id"]
        n_runs = db.execute("SELECT COUNT(*) FROM training_runs").fetchone()[0]
        assert n_runs == 4                                        # 2 trained arms x 2 seeds
        db.execute("DELETE FROM experiment_runs WHERE experiment_id = ? AND arm = 'mixed' AND seed = 1", [exp_id])
        db.conn.commit()
    again = jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu"})
    assert again["status"] == "done"
    with ews.connect() as db:
        assert db.execute("SELECT COUNT(*) FROM training_runs").fetchone()[0] == n_runs + 1   # only the missing run
        assert len(store_training.experiment_runs(db, exp_id)) == 6
    # the CLI prints every verdict group the summary has (a contrast changes no run: nothing is trained again)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "contrasts": [["mixed", "zero-shot"]]}))
    r = CliRunner().invoke(main, ["-w", str(ews.root), "experiment", "run", str(path), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    out = r.output.split("Against real-only:\n", 1)[1]
    assert "zero-shot" in out.split("\n")[0] and "Contrasts:\n  " in out and "mixed" in out.split("Contrasts:")[1]
    assert "have not finished" not in out and "other processes" not in out
    with ews.connect() as db:
        assert db.execute("SELECT COUNT(*) FROM training_runs").fetchone()[0] == n_runs + 1
    r = CliRunner().invoke(main, ["-w", str(ews.root), "report", "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep/report.md").read_text()
    assert "matched to real-only" in md and "| real-only |" in md and "No review data" in md
    assert "## Val gate" in md and "## Test PCK@0.2 per joint" in md
    assert "| joint | zero-shot | real-only | mixed |" in md
    assert md.count("| mixed | ") == 1 + 1 + 2 + 2            # summary row, verdicts, the per-seed table, the runs
    assert "## Per seed" in md and "## Noise floor" in md and md.splitlines()[2].startswith("Compared 3 arms")
    assert "- Protocol: coco:" in md                           # the COCO sample is the test split
    page = (tmp_path / "rep/report.html").read_text()
    assert page.startswith("<!doctype html>") and "Runs</summary>" in page and "per joint" in page
    assert page.count("<table>") >= 4                            # arms, per seed, per joint, runs
    # every run names the code, packages, machine and manifest that made it
    with ews.connect() as db:
        for r in store_training.experiment_runs(db, exp_id):
            assert r["result"]["code"]["source_hash"] and r["result"]["versions"]["ultralytics"]
            assert r["result"]["machine"]["cpu"] and len(r["result"]["manifest_hash"]) == 64
            if r["training_run_id"]:
                tr = store_training.run(db, r["training_run_id"])
                assert tr["config"]["code"] == r["result"]["code"] and tr["config"]["manifest_hash"]
                assert tr["metrics"]["protocol"] == "coco" and tr["metrics"]["val"]["protocol"] == "annotated_person"


def test_runs_of_other_code_are_refused_kept_or_redone(ews):
    cfg = resolve({**CONFIG, "name": "code", "seeds": [0]})
    assert jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu"})["status"] == "done"
    with ews.connect() as db:
        exp_id = store_training.experiment_by_name(db, "code")["id"]
        r = next(r for r in store_training.experiment_runs(db, exp_id) if r["arm"] == "real-only")
        r["result"]["code"] = {"source_hash": "0ld", "commit": "deadbeef", "dirty": True}
        store_training.put_experiment_run(db, exp_id, "real-only", 0, manifest_id=r["manifest_id"],
                                          training_run_id=r["training_run_id"], status="done", result=r["result"])
        db.conn.commit()
        n_runs = db.execute("SELECT COUNT(*) FROM training_runs").fetchone()[0]
    refused = jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu"})
    assert refused["status"] == "failed" and "made by other code (deadbeef (dirty), source 0ld)" in refused["error"]
    kept = jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu", "allow_mixed_code": True})
    assert kept["status"] == "done"
    assert any("2 different code versions" in f for f in kept["result"]["summary"]["flags"])
    redone = jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu", "rerun_other_code": True})
    assert redone["status"] == "done" and not any("code versions" in f for f in redone["result"]["summary"]["flags"])
    with ews.connect() as db:
        assert db.execute("SELECT COUNT(*) FROM training_runs").fetchone()[0] == n_runs + 1   # only that run


def test_verify_reruns_a_finished_run_and_the_teacher_plays_no_part_in_scores(ews, monkeypatch):
    cfg = resolve({**CONFIG, "name": "verify", "seeds": [0],
                   "arms": [{"name": "real-only", "real": 8}]})
    assert jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu"})["status"] == "done"
    r = CliRunner().invoke(main, ["-w", str(ews.root), "experiment", "verify", "verify", "--arm", "real-only",
                                  "--seed", "0", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "identical" in r.output and "test  AP50" in r.output
    # The zero-shot arm's scores do not depend on the teacher that finds unannotated people (used only to mask
    # training images): with that teacher unavailable, scoring it again gives the same figures.
    import engine.train.evaluate as ev

    def no_teacher(*a, **k):
        raise AssertionError("evaluation consulted the teacher")

    monkeypatch.setattr(ev, "unannotated_regions", no_teacher)
    r = CliRunner().invoke(main, ["-w", str(ews.root), "experiment", "verify", "verify", "--arm", "zero-shot",
                                  "--seed", "0", "--json"])
    assert r.exit_code == 0, r.output
    res = __import__("json").loads(r.output)
    assert res["identical"] and res["max_abs_difference"] == 0
    r = CliRunner().invoke(main, ["-w", str(ews.root), "experiment", "verify", "verify", "--arm", "mixed",
                                  "--seed", "0"])
    assert r.exit_code != 0 and "no finished run for arm 'mixed'" in r.output


def test_bad_experiment_files():
    with pytest.raises(RealcalError, match="'real-only' arm"):
        resolve({"arms": [{"name": "mixed", "real": 5}]})
    with pytest.raises(RealcalError, match="list of arms"):
        resolve({"name": "x"})
    arms = [{"name": "real-only", "real": 5}]
    with pytest.raises(RealcalError, match="recipe: unknown parameter.*epoch"):
        resolve({"arms": arms, "recipe": {"epoch": 3}})
    with pytest.raises(RealcalError, match="unknown freeze preset 'head'"):
        resolve({"arms": arms, "recipe": {"freeze": "head"}})
    with pytest.raises(RealcalError, match="expected a number of layers"):
        resolve({"arms": arms, "recipe": {"freeze": [1, "../x"]}})
    assert resolve({"arms": arms, "recipe": {"freeze": "keypoint-branch"}})["recipe"]["freeze"] == "keypoint-branch"
    for bad in ("eight", 0, 8.5, True, 10_000):
        with pytest.raises(RealcalError, match="nbs"):
            resolve({"arms": arms, "recipe": {"nbs": bad}})
    assert resolve({"arms": arms, "recipe": {"nbs": 8}})["recipe"]["nbs"] == 8
    with pytest.raises(RealcalError, match="unknown evaluation protocol 'teacher'"):
        resolve({"arms": arms, "protocol": "teacher"})
    with pytest.raises(RealcalError, match="replica must be a whole number"):
        resolve({"arms": [*arms, {"name": "aa", "real": 5, "replica": -1}]})
    with pytest.raises(RealcalError, match="two arms are named"):
        resolve({"arms": [*arms, {"name": "real-only", "real": 4}]})
    assert resolve({"arms": arms})["seeds"] == [0, 1, 2, 3, 4] and resolve({"arms": arms})["protocol"] == "auto"


def test_results_page_shows_the_experiment(ews, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    cfg = resolve({**CONFIG, "seeds": [0]})
    assert jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu"})["status"] == "done"
    monkeypatch.setenv("REALCAL_WORKSPACE", str(ews.root))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app_pages/results.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert any("Experiment: t" in s.value for s in at.subheader)
    assert any("real-only" in m.value or "No evidence" in m.value or "beats" in m.value for m in at.markdown)
    assert any("per joint" in e.label for e in at.expander)


def test_experiment_resumes_after_the_worker_is_killed(ews):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    cfg = resolve({**CONFIG, "name": "killed"})
    job_id = jobs.submit(ews, "experiment", {"config": cfg, "device": "cpu"})
    proc = subprocess.Popen([sys.executable, "-m", "engine", "-w", str(ews.root), "worker"], cwd=repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            with ews.connect() as db:
                done = db.execute("SELECT COUNT(*) FROM experiment_runs").fetchone()[0]
            if done >= 2:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the worker finished no experiment run in time")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    actions = dict(jobs.recover(ews))
    assert actions.pop(job_id) == "requeued"                 # the experiment resumes
    assert set(actions.values()) <= {"failed"}               # a training job it was running died with it
    from engine.worker import run_worker

    assert run_worker(ews, once=True, log=lambda m: None) == 1
    with ews.connect() as db:
        status, error = db.execute("SELECT status, error FROM jobs WHERE id = ?", [job_id]).fetchone()
        assert status == "done", error
        runs = store_training.experiment_runs(db, store_training.experiment_by_name(db, "killed")["id"])
        assert len(runs) == 6 and all(r["status"] == "done" for r in runs)
        pairs = [(r["arm"], r["seed"]) for r in runs]
        assert len(set(pairs)) == 6                          # each (arm, seed) once
        statuses = [r[0] for r in db.execute("SELECT status FROM training_runs")]
        assert "running" not in statuses                     # the killed one is marked interrupted


def test_time_left_estimate():
    from engine.experiment import time_left

    zs, ro, mixed = ({"name": "zero-shot", "kind": "zero_shot"}, {"name": "real-only", "kind": "train"},
                     {"name": "mixed", "kind": "train"})
    assert time_left([zs, ro], {}) is None                               # nothing measured yet
    assert time_left([ro], {"zero-shot": [30.0]}) is None                # no trained run yet
    assert time_left([zs, ro, mixed], {"zero-shot": [30.0], "real-only": [600.0, 700.0]}) == "22 min"
    assert time_left([mixed] * 12, {"real-only": [600.0], "mixed": [450.0]}) == "1.5 h"
    assert time_left([zs], {"zero-shot": [30.0]}) is None                # under a minute: not worth saying


def test_a_time_budget_stops_between_runs_and_the_next_invocation_continues(ews):
    import time

    cfg = resolve({**CONFIG, "name": "budget", "seeds": [0]})
    first = jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu", "deadline": time.time() - 1})
    assert first["status"] == "done" and first["result"]["runs_left"] == 3
    assert first["result"]["summary"]["table"] == []
    again = jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu"})
    assert again["status"] == "done" and again["result"]["runs_left"] == 0
    assert not any("have finished" in f for f in again["result"]["summary"]["flags"])


def test_a_run_held_elsewhere_that_finishes_meanwhile_is_not_reported_as_missing(ews, monkeypatch):
    """The list of runs other processes hold is checked again at the end: one that finished while this process
    trained its own runs counts as finished (the comparisons include it and are stored)."""
    import os

    import engine.experiment as ex

    cfg = resolve({**CONFIG, "name": "recheck", "seeds": [0]})
    first = jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu", "deadline": 1})
    exp_id = first["result"]["experiment_id"]
    with ews.connect() as db:
        live = _other_job(db, os.getpid())
        store_training.put_experiment_claim(db, exp_id, "mixed", 0, job_id=live["id"], token=live["claim"], worker="w")
        db.conn.commit()
    real_claim = ex._claim

    def claim(ws, exp_id, cfg, arm, seed, *rest):
        holder = real_claim(ws, exp_id, cfg, arm, seed, *rest)
        if holder and arm["name"] == "mixed":        # the holder finishes right after this process passed it by
            with ws.connect() as db:
                ro = store_training.experiment_run(db, exp_id, "real-only", 0)
                store_training.put_experiment_run(db, exp_id, "mixed", 0, manifest_id=ro["manifest_id"],
                                                  training_run_id=ro["training_run_id"], status="done",
                                                  result=ro["result"])
                db.conn.commit()
        return holder

    monkeypatch.setattr(ex, "_claim", claim)
    messages: list[str] = []
    final = jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu"},
                                lambda done, total, msg: msg and messages.append(msg))
    assert final["status"] == "done", final["error"]
    assert final["result"]["held_elsewhere"] == [] and final["result"]["runs_left"] == 0
    assert not any("held by other processes" in m for m in messages)
    assert {c["arm"] for c in final["result"]["summary"]["comparisons"]} == {"zero-shot", "mixed"}
    with ews.connect() as db:
        assert store_training.experiment_by_name(db, "recheck")["ap50_comparisons"]     # stored: complete


def _other_job(db, pid: int) -> dict:
    """A job recorded as running in process ``pid`` (with its claim token)."""
    import socket

    from store import jobs as store_jobs
    return store_jobs.start(db, "experiment", {}, f"{socket.gethostname()}:{pid}", pid)


def test_processes_share_an_experiments_runs_through_claims(ews):
    """A run another live process holds is skipped (and said so); claims left by a dead process, by a job whose
    heartbeat went stale and by a job that was requeued and taken by another process since are taken over; a rerun
    after the holder has gone finishes the experiment: each run is trained once."""
    import os
    import subprocess

    from engine.experiment import in_progress
    from store import jobs as store_jobs
    cfg = resolve({**CONFIG, "name": "shared", "seeds": [0, 1]})
    first = jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu", "deadline": 1})
    assert first["status"] == "done" and first["result"]["runs_left"] == 6       # made the experiment, ran nothing
    exp_id = first["result"]["experiment_id"]
    dead = subprocess.Popen(["true"])
    dead.wait()
    with ews.connect() as db:
        live, gone, stale, retaken = (_other_job(db, os.getpid()), _other_job(db, dead.pid),
                                      _other_job(db, os.getpid()), _other_job(db, os.getpid()))
        db.execute("UPDATE jobs SET heartbeat_at = '2000-01-01T00:00:00.000Z' WHERE id = ?", [stale["id"]])
        for arm, seed, job, token in [("mixed", 0, live, live["claim"]), ("real-only", 0, gone, gone["claim"]),
                                      ("zero-shot", 1, stale, stale["claim"]), ("real-only", 1, retaken, "before")]:
            store_training.put_experiment_claim(db, exp_id, arm, seed, job_id=job["id"], token=token, worker="w")
        db.conn.commit()
    messages = []
    final = jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu"},
                                lambda done, total, msg: msg and messages.append(msg))
    assert final["status"] == "done", final["error"]
    assert final["result"]["held_elsewhere"] == [f"mixed seed 0 (job {live['id']})"]
    assert final["result"]["runs_left"] == 1
    assert any(m.startswith("1 run(s) held by other processes, not waited for: mixed seed 0") for m in messages)
    with ews.connect() as db:
        done = {(r["arm"], r["seed"]) for r in store_training.experiment_runs(db, exp_id) if r["status"] == "done"}
        assert done == {("zero-shot", 0), ("real-only", 0), ("zero-shot", 1), ("real-only", 1), ("mixed", 1)}
        assert [(c["arm"], c["job_id"]) for c in store_training.experiment_claims(db, exp_id)] == [
            ("mixed", live["id"])]
        assert in_progress(db, exp_id) == [f"mixed seed 0 (job {live['id']})"]      # what the Train page shows
        # a process that knows another still trains stores no comparisons (the last one's are complete)
        assert store_training.experiment_by_name(db, "shared")["ap50_comparisons"] == []     # still the empty pass's
        assert store_jobs.finish(db, live["id"], "failed", error="gone", claim=live["claim"])
    again = jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu"})
    assert again["status"] == "done" and again["result"]["runs_left"] == 0 and not again["result"]["held_elsewhere"]
    with ews.connect() as db:
        assert store_training.experiment_claims(db, exp_id) == [] and in_progress(db, exp_id) == []
        assert db.execute("SELECT COUNT(*) FROM training_runs").fetchone()[0] == 4    # each trained run once
        assert store_training.experiment_by_name(db, "shared")["ap50_comparisons"]


def test_a_claim_sees_runs_finished_meanwhile_and_a_seeds_loop_waits_for_its_round_0(ws):
    import os

    from engine.experiment import _claim
    cfg = {"arms": [{"name": "real-only", "kind": "train", "real": 8},
                    {"name": "loop-1", "kind": "loop", "real": 8, "round": 1},
                    {"name": "loop-2", "kind": "loop", "real": 8, "round": 2}]}
    with ws.connect() as db:
        exp_id = store_training.create_experiment(db, "claims", cfg)
        other, me = _other_job(db, os.getpid()), _other_job(db, os.getpid())
        store_training.put_experiment_run(db, exp_id, "real-only", 0, manifest_id=None, training_run_id=None,
                                          status="done", result={"code": {"source_hash": "x"}})
        store_training.put_experiment_claim(db, exp_id, "loop-1", 0, job_id=other["id"], token=other["claim"],
                                            worker="w")
        store_training.put_experiment_claim(db, exp_id, "real-only", 2, job_id=other["id"], token=other["claim"],
                                            worker="w")
        store_training.put_experiment_claim(db, exp_id, "loop-1", 3, job_id=other["id"], token="requeued since",
                                            worker="w")
        db.conn.commit()
    arms = {a["name"]: a for a in cfg["arms"]}

    def claim(arm, seed, job=me, redo=frozenset()):
        return _claim(ws, exp_id, cfg, arms[arm], seed, job["id"], job["claim"], set(redo))

    assert claim("real-only", 0) == "done"
    # a run of other code that this job was told to redo is not "done" until redone
    assert claim("real-only", 0, redo={("real-only", 0)}) is None
    assert claim("loop-2", 0) == f"job {other['id']}, running loop-1"       # one loop per seed, one round at a time
    assert claim("loop-2", 1) is None                                       # another seed's loop is free
    assert claim("loop-1", 0) == f"job {other['id']}"
    assert claim("loop-1", 1, job=other) == f"job {me['id']}, running loop-2"
    assert claim("loop-1", 2) == f"job {other['id']}, running real-only"    # round 0 is the seed's real-only run
    assert claim("loop-1", 3) is None          # the holder's job was requeued and retaken: its old claim is dead


def test_declared_contrasts_are_compared_and_adding_them_keeps_the_experiment(ews, tmp_path):
    for bad, match in [({"contrasts": [["mixed", "nope"]]}, "two different arms of this experiment"),
                       ({"contrasts": [["mixed", "mixed"]]}, "two different arms"),
                       ({"contrasts": ["mixed"]}, "a list of \\[arm, other arm\\] pairs"),
                       ({"contrasts": [["mixed", "real-only"], ["real-only", "mixed"]]}, "a pair twice")]:
        with pytest.raises(RealcalError, match=match):
            resolve({**CONFIG, **bad})
    assert "contrasts" not in resolve(CONFIG)                 # absent unless given: older experiments compare equal
    cfg = resolve({**CONFIG, "name": "contrasts", "seeds": [0]})
    first = jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu"})
    assert first["status"] == "done", first["error"]
    assert first["result"]["summary"]["contrasts"] == []
    with ews.connect() as db:
        n_runs = db.execute("SELECT COUNT(*) FROM training_runs").fetchone()[0]
    with_contrast = resolve({**CONFIG, "name": "contrasts", "seeds": [0], "contrasts": [["mixed", "zero-shot"]]})
    again = jobs.run_foreground(ews, "experiment", {"config": with_contrast, "device": "cpu"})
    assert again["status"] == "done", again["error"]
    assert again["result"]["experiment_id"] == first["result"]["experiment_id"]     # the same experiment
    with ews.connect() as db:
        assert db.execute("SELECT COUNT(*) FROM training_runs").fetchone()[0] == n_runs   # nothing retrained
        assert store_training.experiment_by_name(db, "contrasts")["config"]["contrasts"] == [["mixed", "zero-shot"]]
    got = again["result"]["summary"]["contrasts"]
    assert [(c["arm"], c["baseline"], c["metric"]) for c in got] == [
        ("mixed", "zero-shot", m) for m in ("AP50", "PCK@0.2", "per-person OKS")]
    assert all("p_holm" in c and c["verdict"] for c in got)
    assert again["result"]["summary"]["contrasts_waiting"] == []
    # a declared pair with no seed finished by both arms is said to wait, not left out without a word
    from engine.experiment import summarise

    with ews.connect() as db:
        runs = [r for r in store_training.experiment_runs(db, again["result"]["experiment_id"]) if r["arm"] != "mixed"]
    waiting = summarise(runs, with_contrast)
    assert waiting["contrasts"] == [] and waiting["contrasts_waiting"] == [
        "mixed vs zero-shot: not compared yet, no seed has finished both arms (mixed: seeds none; zero-shot: seeds 0)"]
    r = CliRunner().invoke(main, ["-w", str(ews.root), "report", "--experiment", "contrasts",
                                  "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep/report.md").read_text()
    assert "## Declared contrasts" in md and "mixed vs zero-shot" in md
    # an arm changed as well: a new experiment, the unchanged arms' runs carried over
    changed = resolve({**CONFIG, "name": "contrasts", "seeds": [0], "contrasts": [["mixed", "zero-shot"]],
                       "arms": [*CONFIG["arms"], {"name": "mixed-2", "real": 8, "pool": "random", "synthetic": 4}]})
    third = jobs.run_foreground(ews, "experiment", {"config": changed, "device": "cpu"})
    assert third["status"] == "done", third["error"]
    assert third["result"]["experiment_id"] != first["result"]["experiment_id"]
    with ews.connect() as db:
        assert db.execute("SELECT COUNT(*) FROM training_runs").fetchone()[0] == n_runs + 1   # only the new arm
