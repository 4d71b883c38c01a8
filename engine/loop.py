"""The model in the loop: rounds of train -> mine failures -> generate around them -> curate with the student's
signals -> select -> (queue for review) -> train the next student; val decides when to stop.

A loop file (``realcal loop run LOOP.yaml``; every key but ``name`` optional)::

    name: lspet-loop
    rounds: 3                  # rounds after round 0 (round 0 trains the real-only student)
    seed: 0                    # the real-anchor draw, generation seeds, training seed
    real: 200                  # real train images (a seeded draw; default: every labelled one)
    recipe: {...}              # the training recipe (engine.train.recipe), the same for every student
    schedule: union            # how rounds >= 1 use their synthetic images (engine.train.schedule)
    step_matching: true        # every student takes round 0's optimizer steps
    add_per_round: 100         # synthetic images selected and added to the training set each round
    mine: {k: 6, labels: true} # pose groups for failure mining (engine.curate.failures); labels: false reads
                               # no label outside the anchors (their images count as unlabelled)
    target: {groups: 2, target_p: 0.7}   # generation re-poses the anchors of the worst groups
    generate: {generator: pose_warp, count: 300, generator_params: {...}, pose_source: {...}}
    fill: {survivors: 100, max_batches: 4}   # generate further batches of generate.count until this many
                               # images survive curation (default add_per_round), at most max_batches a round
    curate: {}                 # curation options (engine.curate.run)
    select: {student: 1.0, uncertainty: 1.0, diversity: 0.5}   # selector weights
    review: {queue: false}     # true: each round's selection is also queued for human review
    stop: {metric: AP50, min_delta: 0.0, patience: 1}          # on val; test is never read for a decision
    protocol: auto

Round ``k >= 1`` mines where student ``k - 1`` fails (train data only: labelled train images outside its
training set, or unlabelled real train images against the teacher), generates ``generate.count`` images from
the anchors with a share ``target.target_p`` re-posed around the anchors whose pose falls in the worst
``target.groups`` pose groups (the lineage names the round and the groups), curates them, and generates and
curates further batches until ``fill.survivors`` images survive or ``fill.max_batches`` batches were made
(curation keeps only a share of what a generator makes, so one batch can leave fewer survivors than the round
adds); it scores the survivors with student ``k - 1`` (hardness, disagreement, flip instability), selects
``add_per_round`` of them and trains student ``k`` on the real images plus every image selected so far. A round
that still has fewer survivors than ``add_per_round`` adds what survived and says so (``short`` in its state,
the summary and the progress line). The loop stops when val ``stop.metric`` has
not beaten the best earlier round by more than ``min_delta`` for ``patience`` rounds, or after ``rounds``.

Every step's output is stored with its round (``loop_rounds``); running the loop again resumes at the first
unfinished step. A changed loop file needs a new name (the stored rounds belong to the old configuration).
"""
from __future__ import annotations

import time
from typing import Any

from engine import jobs
from engine.errors import RealcalError
from engine.jobs import JobContext, job_kind
from engine.workspace import Workspace
from store import images as store_images
from store import loops as store_loops
from store.db import write_transaction

KEYS = ("name", "rounds", "seed", "real", "recipe", "schedule", "step_matching", "add_per_round", "mine", "target",
        "generate", "fill", "curate", "select", "review", "stop", "protocol")
DEFAULT_MAX_BATCHES = 4
METRICS = ("AP50", "PCK@0.2", "AP")
DEFAULT_GENERATE = {"generator": "pose_warp", "count": 300,
                    "generator_params": {"width": 256, "height": 256, "background": "mixed"},
                    "pose_source": {"perturb_deg": 30, "interpolate_p": 0.3}}


def _mapping(value: Any, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RealcalError(f"loop file: {key} must be a mapping")
    return dict(value)


def _number(value: Any, key: str, lo: float, hi: float, kind: type = int) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise RealcalError(f"loop file: {key} must be a{'n integer' if kind is int else ' number'}, got {value!r}")
    if not lo <= value <= hi:
        raise RealcalError(f"loop file: {key} must be within {lo:g}..{hi:g}, got {value!r}")
    return kind(value)


def resolve(config: Any) -> dict[str, Any]:
    """The loop file with every default filled in; refuses unknown keys and bad values before anything runs."""
    from engine.train import protocols
    from engine.train.recipe import Recipe
    from engine.train.schedule import from_arm

    if not isinstance(config, dict):
        raise RealcalError("a loop file is a mapping with at least a name")
    unknown = set(config) - set(KEYS)
    if unknown:
        raise RealcalError(f"loop file: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(KEYS)}")
    name = config.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise RealcalError("loop file: name is a short text (1..100 characters)")
    real = config.get("real")
    if real is not None:
        real = _number(real, "real", 1, 10_000_000)
    target = {"groups": 2, "target_p": 0.7, **_mapping(config.get("target"), "target")}
    if set(target) - {"groups", "target_p"}:
        raise RealcalError("loop file: target takes groups and target_p")
    stop = {"metric": "AP50", "min_delta": 0.0, "patience": 1, **_mapping(config.get("stop"), "stop")}
    if set(stop) - {"metric", "min_delta", "patience"}:
        raise RealcalError("loop file: stop takes metric, min_delta and patience")
    if stop["metric"] not in METRICS:
        raise RealcalError(f"loop file: stop.metric must be one of {', '.join(METRICS)}")
    select = {"student": 1.0, "uncertainty": 1.0, "diversity": 0.5, **_mapping(config.get("select"), "select")}
    review = {"queue": False, **_mapping(config.get("review"), "review")}
    if set(review) - {"queue"} or not isinstance(review["queue"], bool):
        raise RealcalError("loop file: review takes queue: true|false")
    mine = {"k": 6, "labels": True, **_mapping(config.get("mine"), "mine")}
    if set(mine) - {"k", "labels"} or not isinstance(mine["labels"], bool):
        raise RealcalError("loop file: mine takes k (pose groups) and labels (true|false)")
    generate = {**DEFAULT_GENERATE, **_mapping(config.get("generate"), "generate")}
    clash = set(generate) & {"anchor_image_ids", "seed", "label"}
    if clash:
        raise RealcalError(f"loop file: generate may not set {', '.join(sorted(clash))} (each round sets them)")
    schedule = from_arm(config.get("schedule"), "loop file: schedule")
    add = _number(config.get("add_per_round", 100), "add_per_round", 1, 1_000_000)
    fill = {"survivors": add, "max_batches": DEFAULT_MAX_BATCHES, **_mapping(config.get("fill"), "fill")}
    if set(fill) - {"survivors", "max_batches"}:
        raise RealcalError("loop file: fill takes survivors (images that should survive curation before the "
                           "student selects) and max_batches (generation batches per round at most)")
    fill = {"survivors": _number(fill["survivors"], "fill.survivors", 1, 10_000_000),
            "max_batches": _number(fill["max_batches"], "fill.max_batches", 1, 100)}
    if fill["survivors"] < add:
        raise RealcalError(f"loop file: fill.survivors ({fill['survivors']}) must be at least add_per_round "
                           f"({add}): the student selects the round's images from the survivors")
    cfg = {
        "name": name.strip(), "rounds": _number(config.get("rounds", 3), "rounds", 1, 50),
        "seed": _number(config.get("seed", 0), "seed", 0, 2**31 - 1), "real": real,
        "recipe": Recipe.from_dict(config.get("recipe") or {}).as_dict(),
        "schedule": schedule.as_dict(), "step_matching": bool(config.get("step_matching", True)),
        "add_per_round": add,
        "mine": {"k": _number(mine["k"], "mine.k", 1, 50), "labels": mine["labels"]},
        "target": {"groups": _number(target["groups"], "target.groups", 1, 50),
                   "target_p": _number(target["target_p"], "target.target_p", 0.0, 1.0, float)},
        "generate": generate, "fill": fill, "curate": _mapping(config.get("curate"), "curate"),
        "select": {k: _number(v, f"select.{k}", 0.0, 100.0, float) for k, v in select.items()},
        "review": review,
        "stop": {"metric": stop["metric"], "min_delta": _number(stop["min_delta"], "stop.min_delta", 0.0, 1.0, float),
                 "patience": _number(stop["patience"], "stop.patience", 1, 50)},
        "protocol": protocols.check(config.get("protocol", "auto")),
    }
    from engine import registry

    registry.config_of("selector", "greedy", cfg["select"])     # checks the weights' names
    if cfg["generate"]["count"] * cfg["fill"]["max_batches"] < cfg["fill"]["survivors"]:
        raise RealcalError(f"loop file: generate.count x fill.max_batches ({cfg['generate']['count']} x "
                           f"{cfg['fill']['max_batches']}) must be at least fill.survivors "
                           f"({cfg['fill']['survivors']}): a round selects from what it generated")
    return cfg


def generation_seed(name: str, seed: int, k: int, b: int) -> int:
    """The seed of round ``k``'s generation batch ``b``: its own for every loop, round and batch, so that two loops
    with the same seed (a loop file changed under a new name, say) never make the same images (the workspace
    stores identical images once, and a batch of images that exist already would add nothing to the round)."""
    import hashlib

    return int(hashlib.sha256(f"{name}\0{seed}\0{k}\0{b}".encode()).hexdigest()[:8], 16) % (2**31 - 1)


def upgraded(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored loop config read with today's keys: a loop stored before ``fill`` existed made one batch a round
    and selected from its survivors, whatever their number."""
    if "fill" in stored:
        return stored
    return {**stored, "fill": {"survivors": int(stored.get("add_per_round", 100)), "max_batches": 1}}


def check(ws: Workspace, cfg: dict[str, Any]) -> dict[str, Any]:
    """Everything that can be checked against the workspace before round 0 spends its hours: the anchors, the
    generation and curation options, and whether failure mining will have anything to read."""
    from engine.curate.run import resolve_params as curate_params
    from engine.generate.job import resolve_params as gen_params
    from engine.train.manifest import anchor_pool

    anchors = anchor_pool(ws, cfg["real"], cfg["seed"])
    gen_params(ws, {**cfg["generate"], "anchor_image_ids": anchors})
    curate_params(ws, cfg["curate"])
    labelled = set(anchor_pool(ws, None, 0))
    with ws.connect() as db:
        real_train = store_images.list_images(db, kinds=["real"], splits=["train"])
    held_out = len(labelled) - len(anchors)
    unlabelled = len(real_train) - len(labelled)
    if not cfg["mine"]["labels"]:       # their pixels are read, their labels never
        held_out, unlabelled = 0, unlabelled + held_out
    if held_out <= 0 and unlabelled <= 0:
        raise RealcalError(
            f"failure mining would have nothing to read: all {len(labelled)} labelled real train images are the "
            f"loop's anchors and there are no unlabelled real train images. Set real below {len(labelled)} or "
            f"import unlabelled images (realcal import --format images --split train)")
    return {"anchors": len(anchors), "held_out_labelled": held_out, "unlabelled": unlabelled}


def _should_stop(vals: list[float], stop: dict) -> str | None:
    """Why to stop after these rounds' val figures (in round order), or None."""
    if len(vals) < 2:
        return None
    best, misses = vals[0], 0
    for v in vals[1:]:
        if v > best + stop["min_delta"]:
            best, misses = v, 0
        else:
            misses += 1
    if misses >= stop["patience"]:
        return (f"val {stop['metric']} has not beaten {best:.3f} by more than {stop['min_delta']:g} for {misses} "
                f"round{'s' if misses != 1 else ''}")
    return None


def _run_job(ws: Workspace, kind: str, params: dict, what: str) -> dict:
    final = jobs.run_foreground(ws, kind, params)
    if final["status"] != "done":
        first = (final.get("error") or "").strip().splitlines()
        raise RealcalError(f"{what}: {kind} job {final['status']}" + (f": {first[-1]}" if first else ""))
    return final["result"]


@job_kind("loop", title="Model-in-the-loop rounds", resumable=True)
def run(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    from engine.curate.failures import resolve_params as failure_params
    from engine.curate.run import resolve_params as curate_params
    from engine.curate.run import select as curate_select
    from engine.curate.student import resolve_params as student_params
    from engine.generate.job import resolve_params as gen_params
    from engine.train.manifest import anchor_pool, build_manifest
    from engine.train.recipe import Recipe
    from engine.train.schedule import Schedule
    from engine.train.schedule import fit as schedule_fit
    from engine.train.train import resolve_params as train_params

    ws, cfg = ctx.ws, params["config"]
    name = cfg["name"]
    with ws.connect() as db:
        lp = store_loops.by_name(db, name)
        if lp is not None and upgraded(lp["config"]) != cfg:
            raise RealcalError(f"loop {name!r} already ran with another loop file; give the changed loop a new name "
                               f"(the stored rounds belong to the first one)")
        with write_transaction(db):
            loop_id = lp["id"] if lp is not None else store_loops.create(db, name, cfg)
            store_loops.set_status(db, loop_id, "running")
        rounds = {r["round"]: r for r in store_loops.rounds(db, loop_id)}
    anchors = anchor_pool(ws, cfg["real"], cfg["seed"])
    with ws.connect() as db:
        anchor_people = {p["id"] for ps in store_images.persons_for_images(db, anchors).values() for p in ps}
    recipe = Recipe.from_dict(cfg["recipe"]).replace(seed=cfg["seed"])
    total = cfg["rounds"] + 1
    base_steps = recipe.plan(len(anchors))["steps"]
    t_start = time.perf_counter()
    stopped: str | None = None
    metric = cfg["stop"]["metric"]
    for k in range(total):
        if rounds.get(k, {}).get("status") == "done":
            continue
        if params.get("until_round") is not None and k > int(params["until_round"]):
            return _finish(ws, loop_id, "running", None)      # asked for the rounds up to this one only
        # a loop that stopped stays stopped when it runs again (the same rule on the same stored rounds)
        stopped = _should_stop([float(rounds[j]["state"]["val"].get(metric) or 0.0) for j in range(k)], cfg["stop"])
        if stopped:
            break
        state: dict[str, Any] = dict(rounds.get(k, {}).get("state") or {})
        t0 = time.perf_counter() - float(state.get("seconds", 0.0))

        def save(status: str = "running", k: int = k, state: dict = state, t0: float = t0) -> None:
            state["seconds"] = round(time.perf_counter() - t0, 1)
            with ws.connect() as db:
                with write_transaction(db):
                    store_loops.put_round(db, loop_id, k, status, state)

        def step(what: str, k: int = k, save=save) -> None:
            if params.get("deadline") and time.time() >= float(params["deadline"]):
                save()
                raise _Deadline(f"time budget reached in round {k} before {what}; run the loop again to continue")
            ctx.progress(k, total, f"round {k}: {what}", force=True)

        try:
            if k > 0:
                prev = rounds[k - 1]["state"]
                if "mined" not in state:
                    step("mining where the last student fails")
                    res = _run_job(ws, "mine_failures", failure_params(ws, {
                        "training_run_id": prev["train_run_id"], "k": cfg["mine"]["k"], "seed": cfg["seed"],
                        "labels": cfg["mine"]["labels"]}),
                        f"round {k}")
                    worst = res["clusters"][:cfg["target"]["groups"]]
                    targets = sorted({pid for c in worst for pid in [*c.get("anchor_person_ids", []),
                                                                     *c["target_person_ids"]]} & anchor_people)
                    state["mined"] = {"path": res["path"], "people": res["people"], "mean_error": res["mean_error"],
                                      "against_labels": res["against_labels"],
                                      "against_teacher": res["against_teacher"],
                                      "groups": [{"cluster": c["cluster"], "mean_error": c["mean_error"],
                                                  "people": c["people"], "anchor_coverage": c["anchor_coverage"]}
                                                 for c in worst],
                                      "targets": targets}
                    save()
                if "batch_id" in state and "batch_ids" not in state:      # a round stored before fill existed
                    state.update({"batch_ids": [state["batch_id"]], "curated_batches": 1 if "curation_run_id" in state
                                  else 0})
                state.setdefault("batch_ids", [])
                fill = upgraded(cfg)["fill"]
                while True:
                    b = len(state["batch_ids"])
                    if b and state.get("curated_batches") != b:
                        step(f"curating the {state['generated']} new images"
                             + (f" ({b} batches)" if b > 1 else ""))
                        res = _run_job(ws, "curate", curate_params(ws, {**cfg["curate"],
                                                                        "batches": list(state["batch_ids"]),
                                                                        "calibrate_on": anchors}),
                                       f"round {k}")
                        state.update({"curation_run_id": res["run_id"], "survivors": res["kept"],
                                      "curated_batches": b})
                        save()
                        continue
                    if b and (state["survivors"] >= fill["survivors"] or b >= fill["max_batches"]):
                        break
                    mined = state["mined"]
                    source = dict(cfg["generate"].get("pose_source") or {})
                    if mined["targets"]:
                        groups = ", ".join(str(g["cluster"]) for g in mined["groups"])
                        source.update({"targets": mined["targets"], "target_p": cfg["target"]["target_p"],
                                       "target_label": f"loop {name} round {k}: student of round {k - 1}, "
                                                       f"pose groups {groups}"})
                    step(f"generating {cfg['generate']['count']} images around the worst pose groups"
                         + (f" (batch {b + 1}: {state['survivors']} of {state['generated']} survived curation, "
                            f"{fill['survivors']} wanted)" if b else ""))
                    res = _run_job(ws, "generate", gen_params(ws, {
                        **cfg["generate"], "pose_source": source, "anchor_image_ids": anchors,
                        "seed": generation_seed(name, cfg["seed"], k, b),
                        "label": f"loop {name} round {k}" + (f" batch {b + 1}" if b else "")}), f"round {k}")
                    if not res["images"]:
                        raise RealcalError(f"round {k}: the generator made no new image "
                                           f"({res.get('note') or 'nothing stored'})")
                    state["batch_ids"].append(res["batch_id"])
                    state["batch_id"] = state["batch_ids"][0]
                    state["generated"] = int(state.get("generated") or 0) + int(res["images"])
                    save()
                if state["survivors"] < cfg["add_per_round"] and "short" not in state:
                    state["short"] = (f"round {k} adds {state['survivors']} of {cfg['add_per_round']} images: "
                                      f"{state['survivors']} of {state['generated']} generated ({b} batches) "
                                      f"survived curation; raise fill.max_batches or generate.count")
                    ctx.progress(k, total, state["short"], force=True)
                    save()
                if not state.get("signals") and state["survivors"]:
                    step("scoring the survivors with the last student")
                    _run_job(ws, "student_signals", student_params(ws, {
                        "training_run_id": prev["train_run_id"], "run_id": state["curation_run_id"]}), f"round {k}")
                    state["signals"] = True
                    save()
                if "selected" not in state:
                    step(f"selecting {cfg['add_per_round']} of {state['survivors']} survivors")
                    with ws.connect() as db:
                        rows = curate_select(ws, db, state["curation_run_id"], cfg["select"], cfg["add_per_round"])
                    state["selected"] = [r["image_id"] for r in rows][:cfg["add_per_round"]]
                    save()
                if cfg["review"]["queue"] and "review_queued" not in state:
                    from engine.review import build_queue

                    with ws.connect() as db:
                        state["review_queued"] = build_queue(ws, db, run_id=state["curation_run_id"])["added"]
                    save()
            if "train_run_id" not in state:
                synthetic = [i for j in range(1, k) for i in rounds[j]["state"].get("selected", [])]
                synthetic += state.get("selected", [])
                step(f"training the student on {len(anchors)} real + {len(synthetic)} synthetic images")
                m = build_manifest(ws, {"real_train": {"count": cfg["real"], "seed": cfg["seed"]},
                                        "synthetic": ({"pool": "ids", "ids": synthetic} if synthetic
                                                      else {"pool": "none"})})
                sched = Schedule.from_dict(cfg["schedule"]) if synthetic else Schedule()
                run_recipe, run_schedule, plan = schedule_fit(
                    sched, recipe, int(m["counts"]["train_real"]), int(m["counts"]["train_synthetic"]),
                    steps=base_steps if cfg["step_matching"] else None)
                tp = train_params(ws, m["id"], {**run_recipe.as_dict(), "device": params.get("device"),
                                                 "protocol": cfg["protocol"], "schedule": run_schedule})
                res = (_reuse(ws, params.get("round0_training_run_id"), tp) if k == 0 else None) \
                    or _run_job(ws, "train", tp, f"round {k}")
                val = res["metrics"].get("val") or {}
                state.update({"train_run_id": res["run_id"], "manifest_id": m["id"], "steps": plan["steps"],
                              "epochs": plan["epochs"], "test_eval": res.get("test_eval"),
                              "val_eval": res.get("val_eval"),
                              "schedule": plan["text"], "real": int(m["counts"]["train_real"]),
                              "synthetic": int(m["counts"]["train_synthetic"]),
                              "val": {x: val.get(x) for x in METRICS},
                              "test": {x: res["metrics"].get(x) for x in METRICS},
                              "reused_run": bool(res.get("reused"))})
            save("done")
        except _Deadline as stop:
            ctx.progress(k, total, str(stop), force=True)
            return _finish(ws, loop_id, "running", None)
        except Exception:
            with ws.connect() as db:
                with write_transaction(db):
                    store_loops.set_status(db, loop_id, "failed", f"round {k}")
            raise
        rounds[k] = {"status": "done", "state": state}
        vals = [float(rounds[j]["state"]["val"].get(metric) or 0.0) for j in range(k + 1)]
        ctx.progress(k + 1, total, f"round {k} done: val {metric} {vals[-1]:.3f}"
                     + (f" (round 0: {vals[0]:.3f})" if k else ""), force=True)
        stopped = _should_stop(vals, cfg["stop"])
        if stopped:
            break
    seconds = round(time.perf_counter() - t_start, 1)
    status = "stopped" if stopped else "done"
    out = _finish(ws, loop_id, status, stopped or f"all {cfg['rounds']} rounds ran")
    out["seconds_this_invocation"] = seconds
    return out


def _reuse(ws: Workspace, run_id: int | None, tp: dict) -> dict | None:
    """A finished training run that round 0 would repeat (same manifest and recipe: training is deterministic on
    one machine), as the train job's result; None when there is none or anything differs."""
    from engine.train.recipe import RECIPE_KEYS
    from store import training as store_training

    if run_id is None:
        return None
    with ws.connect() as db:
        tr = store_training.run(db, int(run_id))
    if tr is None or tr["status"] != "done" or tr["manifest_id"] != tp["manifest_id"]:
        return None
    if any(tr["config"].get(k) != tp.get(k) for k in (*RECIPE_KEYS, "protocol", "weights", "schedule")):
        return None
    run_dir = ws.root / "runs" / f"train{tr['id']:05d}"
    return {"run_id": tr["id"], "metrics": tr["metrics"], "reused": True,
            "test_eval": str(run_dir / "test_eval.json.gz") if (run_dir / "test_eval.json.gz").exists() else None,
            "val_eval": str(run_dir / "val_eval.json.gz") if (run_dir / "val_eval.json.gz").exists() else None}


class _Deadline(Exception):
    pass


def _finish(ws: Workspace, loop_id: int, status: str, reason: str | None) -> dict[str, Any]:
    with ws.connect() as db:
        with write_transaction(db):
            store_loops.set_status(db, loop_id, status, reason)
        lp = next(x for x in store_loops.all_loops(db) if x["id"] == loop_id)
    return summary(ws, lp["name"])


def summary(ws: Workspace, name: str | None = None) -> dict[str, Any]:
    """One loop's rounds as rows (val and test figures, images added, reviewer time), the best round on val."""
    with ws.connect() as db:
        loops = store_loops.all_loops(db)
        lp = next((x for x in loops if x["name"] == name), None) if name else (loops[-1] if loops else None)
        if lp is None:
            raise RealcalError(f"no loop named {name!r}" if name else "no loop has run in this workspace yet "
                                                                      "(realcal loop run LOOP.yaml)")
        rounds = store_loops.rounds(db, lp["id"])
        review = {r["round"]: store_loops.review_seconds(db, r["state"].get("selected") or []) for r in rounds}
    metric = lp["config"]["stop"]["metric"]
    rows = []
    for r in rounds:
        st = r["state"]
        val = (st.get("val") or {}).get(metric)
        rows.append({"round": r["round"], "status": r["status"], f"val {metric}": val,
                     "val PCK@0.2": (st.get("val") or {}).get("PCK@0.2"),
                     "test AP50": (st.get("test") or {}).get("AP50"),
                     "real": st.get("real"), "synthetic": st.get("synthetic"),
                     "added": len(st.get("selected") or []), "generated": st.get("generated"),
                     "survivors": st.get("survivors"), "batches": len(st.get("batch_ids") or
                                                                     ([st["batch_id"]] if "batch_id" in st else [])),
                     "short": st.get("short"),
                     "targets": len((st.get("mined") or {}).get("targets") or []),
                     "mined error": (st.get("mined") or {}).get("mean_error"),
                     "review decisions": review[r["round"]]["decisions"],
                     "review seconds": round(review[r["round"]]["seconds"], 1),
                     "training run": st.get("train_run_id"), "seconds": st.get("seconds")})
    done = [x for x in rows if x["status"] == "done" and x[f"val {metric}"] is not None]
    best = max(done, key=lambda x: x[f"val {metric}"]) if done else None
    return {"loop_id": lp["id"], "name": lp["name"], "status": lp["status"], "stop_reason": lp["stop_reason"],
            "metric": metric, "rounds": rows, "best_round": best["round"] if best else None,
            "best_training_run": best["training run"] if best else None, "config": lp["config"]}


def figure(s: dict[str, Any]):
    """Val metric per round (line) with the synthetic images in the training set and review time (bars)."""
    from plotly.subplots import make_subplots

    rows = [r for r in s["rounds"] if r["status"] == "done"]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x = [r["round"] for r in rows]
    fig.add_bar(x=x, y=[r["synthetic"] for r in rows], name="synthetic images in training", opacity=0.35,
                secondary_y=True)
    fig.add_bar(x=x, y=[r["review seconds"] for r in rows], name="reviewer seconds", opacity=0.35,
                secondary_y=True)
    fig.add_scatter(x=x, y=[r[f"val {s['metric']}"] for r in rows], mode="lines+markers",
                    name=f"val {s['metric']}", secondary_y=False)
    fig.update_layout(title=f"Loop {s['name']}: val {s['metric']} per round", legend={"orientation": "h"},
                      xaxis={"title": "round", "dtick": 1}, height=380)
    fig.update_yaxes(title_text=f"val {s['metric']}", secondary_y=False)
    fig.update_yaxes(title_text="images / seconds", secondary_y=True)
    return fig
