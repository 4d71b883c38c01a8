"""Training schedules: a weighted share of synthetic images per epoch, synthetic-first pre-training then real
fine-tuning, their step accounting, and experiment arms that use them."""
import csv

import pytest
import yaml

from engine import jobs
from engine.errors import RealcalError
from engine.experiment import resolve
from engine.io import parse
from engine.io.common import run_import
from engine.train.manifest import build_manifest, train_kinds
from engine.train.recipe import Recipe
from engine.train.schedule import Schedule, from_arm, plan, repeats
from store import training as store_training


def test_weighted_repeats_hit_the_fraction_and_keep_every_image():
    real, syn = list(range(100)), list(range(1000, 1020))
    r = repeats(real, syn, 0.5, seed=3)
    assert all(r[i] >= 1 for i in real + syn) and all(r[i] == 1 for i in real)
    assert sum(r[i] for i in syn) == 100                     # 20 synthetic images fill half of the epoch
    assert repeats(real, syn, 0.5, seed=3) == r              # seeded
    r = repeats(real, syn, 0.3, seed=0)
    n_syn = sum(r[i] for i in syn)
    assert n_syn == round(0.3 * 100 / 0.7) and {r[i] for i in syn} <= {2, 3}   # 43 = 2 each + 3 lucky ones
    # too many synthetic images: the real ones are repeated instead
    r = repeats(list(range(10)), list(range(100, 200)), 0.5)
    assert sum(r[i] for i in range(10)) == 100 and all(r[i] == 1 for i in range(100, 200))


def test_plan_step_accounting():
    recipe = Recipe(epochs=10, batch=8, nbs=8)
    union = plan(Schedule(), recipe, 80, 40, steps=150)
    assert union["stages"][0]["epochs"] == recipe.epochs_for_steps(120, 150) and union["steps"] == 150
    weighted = plan(Schedule(kind="weighted", synthetic_fraction=0.5), recipe, 80, 40, steps=200)
    assert weighted["stages"][0]["images"] == 160 and weighted["steps"] == 200      # 80 real + 80 synthetic draws
    matched = plan(Schedule(kind="synthetic_first", pretrain_share=0.25), recipe, 80, 40, steps=200)
    pre, fine = matched["stages"]
    assert (pre["data"], fine["data"]) == ("synthetic", "real")
    assert pre["steps"] == 50 and fine["steps"] == 150 and matched["steps"] == 200   # the budget split
    extra = plan(Schedule(kind="synthetic_first", pretrain_share=0.25, budget="extra"), recipe, 80, 40, steps=200)
    assert extra["stages"][1]["steps"] == 200 and extra["steps"] == 250              # stage 1 on top
    lr = plan(Schedule(kind="synthetic_first", pretrain_lr0=1e-3), recipe, 80, 40)
    assert [s["lr0"] for s in lr["stages"]] == [1e-3, recipe.lr0] and lr["stages"][1]["epochs"] == 10
    assert "synthetic first" in lr["text"] and "finetune on real" in lr["text"]
    with pytest.raises(RealcalError, match="needs both synthetic and real"):
        plan(Schedule(kind="synthetic_first"), recipe, 80, 0)


def test_bad_schedules_are_refused_with_clear_errors():
    with pytest.raises(RealcalError, match="synthetic_fraction must be between 0 and 1"):
        from_arm({"kind": "weighted", "synthetic_fraction": 1.5}, "arm a: schedule")
    with pytest.raises(RealcalError, match="kind: 'sometimes' is not one of"):
        from_arm("sometimes", "arm a: schedule")
    with pytest.raises(RealcalError, match="unknown"):
        from_arm({"kind": "weighted", "fraction": 0.2}, "arm a: schedule")
    with pytest.raises(RealcalError, match="needs real and synthetic images"):
        resolve({"arms": [{"name": "real-only", "real": 8},
                          {"name": "x", "real": 8, "schedule": "synthetic_first"}]})
    cfg = resolve({"arms": [{"name": "real-only", "real": 8},
                            {"name": "w", "real": 8, "pool": "random", "synthetic": 4,
                             "schedule": {"kind": "weighted", "synthetic_fraction": 0.25}},
                            {"name": "u", "real": 8, "pool": "random", "synthetic": 4, "schedule": "union"}]})
    arms = {a["name"]: a for a in cfg["arms"]}
    assert arms["w"]["schedule"]["synthetic_fraction"] == 0.25
    assert "schedule" not in arms["u"]       # a flat union records nothing: older experiment files compare equal


@pytest.fixture
def sws(ws, lspet):
    from engine.generate.job import resolve_params as gen_params

    run_import(ws, parse("lsp", lspet), limit=8, split="train")
    run_import(ws, parse("lsp", lspet), ids=[f"im{i:05d}.jpg" for i in range(100, 104)], split="val")
    g = jobs.run_foreground(ws, "generate", gen_params(ws, {
        "count": 4, "generator_params": {"width": 96, "height": 96, "background": "procedural"}}))
    assert g["status"] == "done", g["error"]
    return ws


def test_synthetic_first_pretrains_on_synthetic_then_finetunes_on_real(sws):
    from engine.train.train import resolve_params

    m = build_manifest(sws, {"real_train": {"count": 8}, "synthetic": {"pool": "random", "count": 4}})
    kinds = train_kinds(sws, m["id"])
    assert len(kinds["real"]) == 8 and len(kinds["synthetic"]) == 4
    params = resolve_params(sws, m["id"], {
        "epochs": 1, "imgsz": 96, "batch": 4, "nbs": 4, "device": "cpu", "checkpoint": "last",
        "schedule": {"kind": "synthetic_first", "pretrain_epochs": 2, "pretrain_lr0": 1e-3}})
    assert params["schedule"]["kind"] == "synthetic_first"
    messages = []
    final = jobs.run_foreground(sws, "train", params, lambda d, t, msg: msg and messages.append(msg))
    assert final["status"] == "done", final["error"]
    run_dir = sws.root / "runs" / f"train{final['result']['run_id']:05d}"
    # stage 1 saw only the synthetic images, stage 2 only the real ones
    pre_train = sorted(p.stem for p in (run_dir / "data_pretrain/images/train").iterdir())
    fine_train = sorted(p.stem for p in (run_dir / "data/images/train").iterdir())
    assert pre_train == [f"{i:07d}" for i in sorted(kinds["synthetic"])]
    assert fine_train == [f"{i:07d}" for i in sorted(kinds["real"])]
    # stage 2 starts from stage 1's last weights, with its own learning rate
    fine_args = yaml.safe_load((run_dir / "ultralytics" / "args.yaml").read_text())
    pre_args = yaml.safe_load((run_dir / "pretrain" / "args.yaml").read_text())
    assert fine_args["model"] == str(run_dir / "pretrain" / "weights" / "last.pt")
    assert (pre_args["lr0"], fine_args["lr0"], pre_args["epochs"], fine_args["epochs"]) == (1e-3, Recipe().lr0, 2, 1)
    with sws.connect() as db:
        run = store_training.run(db, final["result"]["run_id"])
    assert [c["stage"] for c in run["curves"]] == ["pretrain", "pretrain", "finetune"]
    assert [c["epoch"] for c in run["curves"]] == [1, 2, 3]
    assert any(m.startswith("pretrain: epoch 2/3") for m in messages)
    assert any(m.startswith("finetune: epoch 3/3") for m in messages)


def test_weighted_schedule_repeats_synthetic_images_in_the_epoch(sws):
    from engine.train.train import resolve_params

    m = build_manifest(sws, {"real_train": {"count": 8}, "synthetic": {"pool": "random", "count": 4}})
    params = resolve_params(sws, m["id"], {"epochs": 1, "imgsz": 96, "batch": 8, "nbs": 8, "device": "cpu",
                                           "checkpoint": "last",
                                           "schedule": {"kind": "weighted", "synthetic_fraction": 0.6}})
    final = jobs.run_foreground(sws, "train", params)
    assert final["status"] == "done", final["error"]
    run_dir = sws.root / "runs" / f"train{final['result']['run_id']:05d}"
    kinds = train_kinds(sws, m["id"])
    files = [p.stem for p in (run_dir / "data/images/train").iterdir()]
    labels = [p.stem for p in (run_dir / "data/labels/train").iterdir()]
    syn = [f for f in files if int(f.split("_")[0]) in set(kinds["synthetic"])]
    assert sorted(files) == sorted(labels) and len(syn) == 12 and len(files) == 20      # 12 / 20 = 0.6
    with sws.connect() as db:
        assert store_training.run(db, final["result"]["run_id"])["config"]["schedule"]["synthetic_fraction"] == 0.6


def test_experiment_arm_with_a_schedule_matches_steps_and_reports_it(sws, tmp_path):
    from engine.report import write_experiment_report

    cfg = resolve({"name": "sched", "seeds": [0], "recipe": {"epochs": 2, "imgsz": 96, "batch": 4, "nbs": 4,
                                                             "checkpoint": "last"},
                   "arms": [{"name": "real-only", "real": 8},
                            {"name": "syn-first", "real": 8, "pool": "random", "synthetic": 4,
                             "schedule": {"kind": "synthetic_first", "pretrain_share": 0.5}}]})
    final = jobs.run_foreground(sws, "experiment", {"config": cfg, "device": "cpu"})
    assert final["status"] == "done", final["error"]
    with sws.connect() as db:
        runs = {r["arm"]: r for r in store_training.experiment_runs(db, final["result"]["experiment_id"])}
        tr = store_training.run(db, runs["syn-first"]["training_run_id"])
    base, arm = runs["real-only"]["result"], runs["syn-first"]["result"]
    assert base["steps"] == 4                                  # 2 epochs x 2 batches of 4
    assert [s["steps"] for s in arm["stages"]] == [2, 2] and arm["steps"] == base["steps"]   # the budget split
    assert tr["config"]["schedule"]["pretrain_epochs"] == 2 and tr["config"]["epochs"] == 1
    assert "synthetic first (50% of the steps), then real" in arm["schedule"]
    out = write_experiment_report(sws, tmp_path / "rep", "sched")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Schedules" in md and "- syn-first: synthetic first" in md and out
    with open(sws.root / "runs" / f"train{tr['id']:05d}" / "ultralytics" / "results.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 1               # the fine-tuning stage's one epoch


def test_train_command_takes_a_schedule_and_states_its_steps(sws):
    from click.testing import CliRunner

    from engine.cli import main

    m = build_manifest(sws, {"real_train": {"count": 8}, "synthetic": {"pool": "random", "count": 4}})
    base = ["-w", str(sws.root), "train", "--manifest", str(m["id"]), "--epochs", "2", "--batch", "4", "--nbs", "4"]
    r = CliRunner().invoke(main, [*base, "--schedule", "synthetic_first", "--pretrain-epochs", "3", "--background"])
    assert r.exit_code == 0, r.output
    assert "pretrain on synthetic (4 images/epoch): 3 epochs, 3 steps" in r.output
    assert "finetune on real (8 images/epoch): 2 epochs, 4 steps" in r.output
    with sws.connect() as db:
        job = db.execute("SELECT params FROM jobs WHERE kind = 'train' ORDER BY id DESC").fetchone()
    assert '"pretrain_epochs": 3' in job[0]
    r = CliRunner().invoke(main, [*base, "--synthetic-fraction", "0.5", "--background"])
    assert r.exit_code == 2 and "need --schedule" in r.output
