"""Growing an experiment without redoing it: arms added to an experiment file keep the finished runs of
the unchanged arms; arms draw synthetic images from named generation batches (synthetic_label)."""
import json

import pytest

from engine import experiment, jobs, registry
from engine.errors import RealcalError
from engine.experiment import carried_over, resolve
from engine.io import parse
from engine.io.common import run_import
from engine.train.manifest import build_manifest
from store import batches as store_batches
from store import training as store_training
from store.db import write_transaction
from tests.helpers import make_coco


@pytest.fixture
def ews(ws, tmp_path):
    """20 real train images, and two synthetic batches named "seed 0" and "seed 1" (15 images each)."""
    run_import(ws, parse("coco", make_coco(tmp_path / "real", n=20)), split="train")
    for s in (0, 1):
        syn = parse("coco", make_coco(tmp_path / f"syn{s}", n=15, seed=500 + 100 * s))
        for rec in syn.records:
            for p in rec.persons:
                p.source = "conditioning"
        report = run_import(ws, syn, split="train", kind="synthetic")
        with ws.connect() as db:
            store_batches.set_label(db, report.batch_id, f"seed {s}")
            db.conn.commit()
    return ws


def _fake_training(request, trained):
    """A train job that records what it was asked and stores a run, without training."""
    def fake_train(ctx, params):
        trained.append(params["manifest_id"])
        with ctx.ws.connect() as db, write_transaction(db):
            run_id = store_training.create_run(db, ctx.job_id, params["manifest_id"], params)
            store_training.finish_run(db, run_id, status="done", weights=None, curves=[],
                                      metrics={"images": 0, "val": {"images": 0}})
        return {"run_id": run_id, "test_eval": None, "val_eval": None}

    swap = registry.swapped("job", "train", fake_train)
    swap.__enter__()
    request.addfinalizer(lambda: swap.__exit__(None, None, None))


def test_manifests_draw_synthetic_images_from_the_named_batch(ews):
    a = build_manifest(ews, experiment.manifest_spec({"real": 5, "pool": "random", "synthetic": 10,
                                                      "synthetic_label": "seed {seed}"}, 0))
    b = build_manifest(ews, experiment.manifest_spec({"real": 5, "pool": "random", "synthetic": 10,
                                                      "synthetic_label": "seed {seed}"}, 1))
    with ews.connect() as db:
        labelled = {s: store_batches.image_ids_with_label(db, f"seed {s}") for s in (0, 1)}
        items = {m["id"]: [i["image_id"] for i in store_training.manifest(db, m["id"])["items"]
                           if i["image_id"] in labelled[0] | labelled[1]] for m in (a, b)}
    assert len(items[a["id"]]) == 10 and set(items[a["id"]]) <= labelled[0]
    assert len(items[b["id"]]) == 10 and set(items[b["id"]]) <= labelled[1]
    with pytest.raises(RealcalError, match="fewer than the 20"):
        build_manifest(ews, experiment.manifest_spec({"real": 5, "pool": "random", "synthetic": 20,
                                                      "synthetic_label": "seed {seed}"}, 0))


def test_adding_an_arm_keeps_the_finished_runs_of_the_others(ews, request, monkeypatch):
    trained: list[int] = []
    _fake_training(request, trained)
    monkeypatch.setattr(experiment, "_zero_shot", lambda *a, **k: {
        "val": {"images": 0}, "test": {"images": 0}, "rows": [], "test_eval": None})
    base = {"name": "grow", "seeds": [0, 1], "recipe": {"epochs": 2, "batch": 4, "nbs": 4},
            "arms": [{"name": "real-only", "real": 10}]}
    final = jobs.run_foreground(ews, "experiment", {"config": resolve(base), "device": "cpu"})
    assert final["status"] == "done", final["error"]
    assert len(trained) == 2                                     # real-only x 2 seeds
    grown = dict(base, arms=base["arms"] + [{"name": "mixed", "real": 10, "pool": "random", "synthetic": 5,
                                             "synthetic_label": "seed {seed}"}])
    final = jobs.run_foreground(ews, "experiment", {"config": resolve(grown), "device": "cpu"})
    assert final["status"] == "done", final["error"]
    assert len(trained) == 4                                     # only the new arm trained
    with ews.connect() as db:
        exp = store_training.experiment_by_name(db, "grow")
        runs = {(r["arm"], r["seed"]) for r in store_training.experiment_runs(db, exp["id"])}
    assert runs == {(a, s) for a in ("zero-shot", "real-only", "mixed") for s in (0, 1)}
    # a changed recipe decides every run: nothing carries over
    changed = resolve(dict(grown, recipe={"epochs": 3, "batch": 4, "nbs": 4}))
    assert carried_over(resolve(grown), changed) == []
    # a changed baseline under step matching changes every arm's steps: nothing carries over
    other_base = resolve(dict(grown, arms=[{"name": "real-only", "real": 12}] + grown["arms"][1:]))
    assert carried_over(resolve(grown), other_base) == []
    # a seed added: the old seeds' runs carry over
    assert set(carried_over(resolve(grown), resolve(dict(grown, seeds=[0, 1, 2])))) == \
        {"zero-shot", "real-only", "mixed"}


def test_a_recipe_key_added_later_does_not_discard_finished_runs(ews, request, monkeypatch):
    """An experiment stored before a recipe option existed resumes as itself: the missing key reads as its
    default (which does what the code did before), so no run is trained again."""
    from engine.experiment import upgraded

    trained: list[int] = []
    _fake_training(request, trained)
    monkeypatch.setattr(experiment, "_zero_shot", lambda *a, **k: {
        "val": {"images": 0}, "test": {"images": 0}, "rows": [], "test_eval": None})
    cfg = resolve({"name": "older", "seeds": [0], "recipe": {"epochs": 2, "batch": 4, "nbs": 4},
                   "arms": [{"name": "real-only", "real": 10}]})
    assert jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu"})["status"] == "done"
    assert len(trained) == 1
    with ews.connect() as db:             # as stored by a version without bn_stats and checkpoint
        exp = store_training.experiment_by_name(db, "older")
        old = {**exp["config"], "recipe": {k: v for k, v in exp["config"]["recipe"].items()
                                           if k not in ("bn_stats", "checkpoint")}}
        db.execute("UPDATE experiments SET config = ? WHERE id = ?", [json.dumps(old), exp["id"]])
        db.conn.commit()
    assert upgraded(old) == cfg and upgraded(cfg) == cfg
    assert jobs.run_foreground(ews, "experiment", {"config": cfg, "device": "cpu"})["status"] == "done"
    assert len(trained) == 1                                     # nothing trained again
    with ews.connect() as db:
        assert len(store_training.list_experiments(db)) == 1
    # a key given a value other than its default is a changed recipe
    assert upgraded(old) != resolve({"name": "older", "seeds": [0], "arms": [{"name": "real-only", "real": 10}],
                                     "recipe": {"epochs": 2, "batch": 4, "nbs": 4, "checkpoint": "last"}})


def test_a_config_stored_before_threads_trains_as_it_did():
    """Runs made before `threads` existed trained with Ultralytics' choice (cores - 1), today's default: a
    stored config without the key is today's config; asking for every core is another recipe."""
    from engine.experiment import upgraded

    base = {"name": "old", "seeds": [0], "arms": [{"name": "real-only", "real": 10}]}
    today = resolve({**base, "recipe": {"epochs": 2}})
    stored = {**today, "recipe": {k: v for k, v in today["recipe"].items() if k != "threads"}}
    assert upgraded(stored) == today and today["recipe"]["threads"] == -1
    assert upgraded(stored) != resolve({**base, "recipe": {"epochs": 2, "threads": 0}})


def test_synthetic_label_is_checked():
    arms = [{"name": "real-only", "real": 5}]
    with pytest.raises(RealcalError, match="may name only"):
        resolve({"arms": arms + [{"name": "m", "real": 5, "pool": "random", "synthetic": 2,
                                  "synthetic_label": "seed {sed}"}]})
    with pytest.raises(RealcalError, match="unknown key.*synthetics"):
        resolve({"arms": arms + [{"name": "m", "real": 5, "synthetics": 2}]})


def test_a_time_budget_leaves_runs_that_would_not_finish_in_it(ews, request, monkeypatch):
    """With a deadline, a run whose arm's runs took longer than the time left is left whole for the next
    invocation (not started and cut off); shorter runs still go."""
    import time

    from engine.experiment import expected_seconds

    trained: list[int] = []
    _fake_training(request, trained)
    monkeypatch.setattr(experiment, "_zero_shot", lambda *a, **k: {
        "val": {"images": 0}, "test": {"images": 0}, "rows": [], "test_eval": None})
    base = {"name": "budget", "seeds": [0], "recipe": {"epochs": 2, "batch": 4, "nbs": 4},
            "arms": [{"name": "real-only", "real": 10}]}
    assert jobs.run_foreground(ews, "experiment", {"config": resolve(base), "device": "cpu"})["status"] == "done"
    with ews.connect() as db:              # real-only took 10 minutes, say
        exp = store_training.experiment_by_name(db, "budget")
        row = store_training.experiment_run(db, exp["id"], "real-only", 0)
        store_training.put_experiment_run(db, exp["id"], "real-only", 0, manifest_id=row["manifest_id"],
                                          training_run_id=row["training_run_id"], status="done",
                                          result={**row["result"], "seconds": 600.0})
        db.conn.commit()
    messages: list[str] = []
    final = jobs.run_foreground(ews, "experiment", {"config": resolve(dict(base, seeds=[0, 1])), "device": "cpu",
                                                    "deadline": time.time() + 120},
                                lambda done, total, msg: msg and messages.append(msg))
    assert final["status"] == "done", final["error"]
    assert final["result"]["runs_left"] == 1 and len(trained) == 1           # zero-shot seed 1 ran; real-only not
    assert any(m.startswith("real-only seed 1 would take about 10 min, 2 min are left") for m in messages)
    arms = resolve(base)["arms"]
    loop = {"name": "loop-2", "kind": "loop"}
    assert expected_seconds(loop, [*arms, {"name": "loop-1", "kind": "loop"}, loop], {"loop-1": [100.0, 300.0]}) == 200
    assert expected_seconds(loop, [*arms, loop], {"real-only": [60.0]}) is None    # a loop round is not a plain run
    # the CLI takes the same budget, and a ledger
    import yaml
    from click.testing import CliRunner

    from engine.cli import main

    path = ews.root.parent / "budget.yaml"
    path.write_text(yaml.safe_dump(dict(base, seeds=[0, 1])))
    r = CliRunner().invoke(main, ["-w", str(ews.root), "experiment", "run", str(path), "--device", "cpu",
                                  "--max-minutes", "1", "--ledger", str(ews.root.parent / "led")])
    assert r.exit_code == 0, r.output
    assert len(trained) == 1 and sorted(p.name for p in (ews.root.parent / "led").glob("*.json.gz")) == [
        "real-only--seed-0.json.gz", "zero-shot--seed-0.json.gz", "zero-shot--seed-1.json.gz"]
