"""The ``generate`` job: feed a generator requests, store its results with full lineage.

Anchors (people to pose or cut out) and backgrounds come from real *train* images only; the
job re-checks every result's sources before storing it and refuses anything from val/test.
Each sample ``i`` has its own seed derived from (job seed, i), so a sample can be reproduced
alone; a result identical to an image already stored is not stored twice. Resumable: a
restarted job continues after the last stored chunk.
"""
from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from engine import integrity, media, poses, registry
from engine.component import Resources
from engine.errors import RealcalError
from engine.generate import GenerationRequest
from engine.generate.pose_sources import PoseSourceConfig, sample_pose
from engine.generate.prompts import DEFAULT_AXES, DEFAULT_TEMPLATE, check_axes, sample_prompt
from engine.jobs import JobContext, job_kind
from engine.workspace import Workspace
from store import batches as store_batches
from store import events as store_events
from store import images as store_images
from store import synthetic as store_synthetic
from store.db import write_transaction

DEFAULTS: dict[str, Any] = {
    "generator": "copy_paste",
    "generator_params": {},
    "count": 16,
    "seed": 0,
    "pose_source": {},
    "anchor_sources": ["ground_truth", "corrected"],
    "anchor_image_ids": None,      # restrict anchors and backgrounds to these real train images
    "prompt": {"template": DEFAULT_TEMPLATE, "axes": DEFAULT_AXES},
    "image_format": "jpg",
    "jpeg_quality": 95,
    "chunk": 8,
    "executor": None,              # None/"local", or {name: ray, address, actors, cpus_per_actor, gpus_per_actor}
    "label": None,                 # a name for the batch, so experiments can draw from it (synthetic_label)
}


def resolve_params(ws: Workspace, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults < config file/flags; checks everything before a job is queued."""
    from engine import config
    from engine.assets import resolve as resolve_asset

    params = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULTS.items()}
    unknown = set(overrides or {}) - set(DEFAULTS)
    if unknown:
        raise RealcalError(f"unknown generation option(s) {', '.join(sorted(unknown))}; "
                           f"valid: {', '.join(DEFAULTS)}")
    for k, v in (overrides or {}).items():
        if v is not None:
            params[k] = v
    if not isinstance(params["count"], int) or not 1 <= params["count"] <= 1_000_000:
        raise RealcalError("--count must be an integer within 1..1,000,000")
    if not isinstance(params["seed"], int) or params["seed"] < 0:
        raise RealcalError("--seed must be a non-negative integer")
    if params["label"] is not None and (not isinstance(params["label"], str) or not params["label"].strip()
                                        or len(params["label"]) > 100):
        raise RealcalError("label must be a short text (1..100 characters)")
    if params["image_format"] not in ("jpg", "png"):
        raise RealcalError("image_format must be jpg or png")
    bad = set(params["anchor_sources"]) - {"ground_truth", "corrected", "predicted"}
    if bad:
        raise RealcalError(f"anchor_sources may name ground_truth, corrected, predicted; not {sorted(bad)}")
    ids = params["anchor_image_ids"]
    if ids is not None:
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise RealcalError("anchor_image_ids must be a non-empty list of image ids")
        with ws.connect() as db:
            splits = store_images.splits_of(db, ids)
        not_train = sorted(i for i in ids if splits.get(i) != "train")
        if not_train:
            raise RealcalError(f"anchor_image_ids must be real train images; not {not_train[:10]}"
                               f"{' ...' if len(not_train) > 10 else ''}")
    from engine.executors import ExecutorConfig

    params["executor"] = ExecutorConfig.from_dict(params["executor"]).as_dict()
    check_axes(params["prompt"].get("axes", DEFAULT_AXES))
    PoseSourceConfig.from_dict(params["pose_source"])
    gen = registry.build("generator", str(params["generator"]), params["generator_params"])  # checks names
    params["generator_params"] = gen.params()   # every parameter, from the generator's own Config
    gen.preflight()  # missing weights or GPU: say so now, not after the job is queued
    if gen.needs_teacher:
        with ws.connect() as db:
            cfg = config.resolve(db)
        params["teacher_weights"] = str(resolve_asset(cfg["teacher.model"],
                                                      explicit=cfg["teacher.path"] or None))
        params["device"] = cfg["device"]
    return params


# Settings that do not change which images a generation job makes (only how many, or where it runs).
_NOT_OUTPUT = ("count", "chunk", "executor", "label")


def _output_settings(params: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in params.items() if k not in _NOT_OUTPUT}, sort_keys=True, default=str)


def earlier_batch(db, params: dict[str, Any]) -> dict[str, Any] | None:
    """The newest generation batch made with these very settings and seed (resolved params; the count
    may differ): a new job would make the same images again, and identical images are stored once, so
    it would add only what exceeds that batch's count. None when there is none."""
    want = _output_settings(params)
    same = [b for b in store_batches.list_batches(db)
            if b["kind"] == "generation" and _output_settings(b["params"] or {}) == want]
    return same[-1] if same else None


def next_free_seed(db, generator: str | None = None) -> int:
    """One more than the largest seed any generation batch (of ``generator``, if given) used; 0 if none."""
    seeds = [int(b["params"].get("seed", 0)) for b in store_batches.list_batches(db)
             if b["kind"] == "generation" and (generator is None or b["params"].get("generator") == generator)]
    return max(seeds) + 1 if seeds else 0


def _seed(job_seed: int, index: int, stream: int) -> int:
    return int(np.random.SeedSequence([job_seed, index, stream]).generate_state(1)[0])


def resources(params: dict[str, Any], progress=None) -> Resources:
    return Resources(device=params.get("device") or "auto", teacher_weights=params.get("teacher_weights"),
                     progress=progress)


def generator_fn(params: dict[str, Any]):
    """Batch-function factory for executors: generation requests -> results (model loaded once)."""
    gen = registry.build("generator", params["generator"], params["generator_params"])
    gen.setup(resources(params))
    return gen.generate


def build_requests(params: dict[str, Any], gen, anchors: list[dict], backgrounds: list[dict],
                   start: int, stop: int) -> list[GenerationRequest]:
    pose_cfg = PoseSourceConfig.from_dict(params["pose_source"])
    template = params["prompt"].get("template", DEFAULT_TEMPLATE)
    axes = params["prompt"].get("axes", DEFAULT_AXES)
    by_id = {a["id"]: a for a in anchors}
    reqs = []
    for i in range(start, stop):
        rng = np.random.default_rng(_seed(params["seed"], i, 0))
        req = GenerationRequest(index=i, seed=_seed(params["seed"], i, 1), width=gen.width,
                                height=gen.height)
        if "pose" in gen.inputs:
            req.pose = sample_pose(anchors, rng, pose_cfg, gen.width, gen.height)
        if "prompt" in gen.inputs:
            req.prompt, req.prompt_axes = sample_prompt(rng, template, axes)
        if "anchors" in gen.inputs and req.pose is not None:
            # the pose's own people, then one anchor drawn at random (appearance swaps, placement)
            req.anchors = [by_id[i] for i in req.pose.anchor_person_ids if i in by_id] + \
                [anchors[int(rng.integers(len(anchors)))]]
        elif "anchors" in gen.inputs:
            lo, hi = gen.people
            n = int(rng.integers(lo, hi + 1))
            req.anchors = [anchors[int(j)] for j in rng.choice(len(anchors), size=n, replace=len(anchors) < n)]
        if "backgrounds" in gen.inputs and backgrounds:
            k = min(10, len(backgrounds))
            req.backgrounds = [backgrounds[int(j)] for j in rng.choice(len(backgrounds), size=k, replace=False)]
        reqs.append(req)
    return reqs


def _encode(image: np.ndarray, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(image).save(buf, "PNG")
    else:
        Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@job_kind("generate", title="Generate synthetic people", resumable=True)
def run(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    ws = ctx.ws
    with ws.connect() as db:
        anchors = store_images.train_anchor_persons(db, params["anchor_sources"],
                                                    PoseSourceConfig.from_dict(params["pose_source"]).min_keypoints)
        if not anchors:
            raise RealcalError(
                f"no real anchors: generation needs labelled people ({', '.join(params['anchor_sources'])}) "
                f"on train-split real images. Import labelled data first (realcal import ...)")
        only = set(params.get("anchor_image_ids") or [])
        if only:
            anchors = [a for a in anchors if a["image_id"] in only]
            if not anchors:
                raise RealcalError("none of anchor_image_ids has a usable labelled person")
        for a in anchors:
            a["path"] = media.image_path(ws.root, a["sha256"], a["ext"])
        gen = registry.build("generator", params["generator"], params["generator_params"])
        backgrounds = []
        if "backgrounds" in gen.inputs and gen.needs_teacher:   # real backgrounds, checked by the teacher
            backgrounds = [b for b in store_images.train_background_images(db) if not only or b["id"] in only]
            for b in backgrounds:
                b["path"] = media.image_path(ws.root, b["sha256"], b["ext"])
        count = int(params["count"])
        # what earlier attempts of this job committed (each chunk commits with its checkpoint)
        tally: dict[str, Any] = {"done": 0, "stored": 0, "skipped": 0, "seconds": 0.0, "wall": 0.0, "backgrounds": {}}
        batch_id = ctx.state.get("batch_id")
        if batch_id is None or store_batches.get(db, batch_id) is None:
            with write_transaction(db):
                ctx.hold(db)
                batch_id = store_batches.create(
                    db, kind="generation", format=params["generator"], dataset=f"synthetic:{params['generator']}",
                    source=f"job {ctx.job_id}", params=params)
                ctx.checkpoint(db, 0, count, f"loading the {params['generator']} generator",
                               {"batch_id": batch_id, **tally})
        else:
            tally.update({k: ctx.state[k] for k in tally if k in ctx.state})
        done = int(tally["done"])
        ctx.progress(done, count, f"loading the {params['generator']} generator", force=True)
        chunk = max(1, int(params.get("chunk", 8)), gen.requests_per_call)

        def on_step(step: float, steps: float | None, message: str | None = None) -> None:
            # a generator's progress inside one chunk (e.g. denoising steps), shown as overall progress
            ctx.progress(done + (step / (steps or 1)) * min(chunk, count - done), count,
                         f"{done}/{count} images" + (f"; {message}" if message else ""))

        exe_cfg = params.get("executor") or {"name": "local"}
        mapped = exe_cfg.get("name") == "ray"
        if mapped:
            from engine import executors

            exe = executors.build(exe_cfg)

            def chunks():  # results arrive per actor batch, in any order; seeds are per sample
                reqs = build_requests(params, gen, anchors, backgrounds, done, count)
                n = done
                for _, results in exe.map("engine.generate.job:generator_fn", {"params": params}, reqs,
                                          batch_size=chunk):
                    n += len(results)
                    yield n, results
        else:
            gen.setup(resources(params, on_step))

            def chunks():
                start = done
                while start < count:
                    stop = min(count, start + chunk)
                    yield stop, gen.generate(build_requests(params, gen, anchors, backgrounds, start, stop))
                    start = stop
        # Local: each chunk's images commit with the checkpoint that counts them, so a resumed job adds to
        # exact totals. Ray: results arrive in any order, so the checkpoint keeps the start of the range and
        # a restart regenerates it all; a result this batch already stored for the same sample (same seed,
        # same pixels) counts as stored again, never as a duplicate.
        base = {**tally, "batch_id": batch_id, "backgrounds": dict(tally["backgrounds"])}
        stored, skipped = int(base["stored"]), int(base["skipped"])
        seconds = float(base["seconds"])
        background_kinds: dict[str, int] = dict(base["backgrounds"])
        t_start = time.perf_counter()
        for stop, results in chunks():
            with write_transaction(db), integrity.new_files(ws, db) as files:
                ctx.hold(db)        # from here to the commit no other process can take the job
                for res in results:
                    outcome = _store(db, files, batch_id, params, res)
                    stored += outcome != "duplicate"
                    skipped += outcome == "duplicate"
                    kind = (res.lineage.get("background") or {}).get("kind")
                    if kind and outcome != "duplicate":
                        background_kinds[kind] = background_kinds.get(kind, 0) + 1
                    seconds += res.seconds
                done = stop
                wall = float(base["wall"]) + time.perf_counter() - t_start
                ctx.checkpoint(db, done, count, f"generated {done}/{count} images",
                               base if mapped else {"batch_id": batch_id, "done": done, "stored": stored,
                                                    "skipped": skipped, "seconds": seconds, "wall": wall,
                                                    "backgrounds": background_kinds})
            ctx.progress(done, count, f"generated {done}/{count} images")   # a cancel stops here
        wall = float(base["wall"]) + time.perf_counter() - t_start
        leaks = {s: n for s, n in store_synthetic.source_splits(db, batch_id).items() if s != "train"}
        report = {"generator": params["generator"], "images": stored, "duplicates_not_stored": skipped,
                  "seconds": round(wall, 2), "images_per_s": round(stored / wall, 3) if wall else None,
                  "source_splits_other_than_train": leaks}
        if background_kinds:
            report["backgrounds"] = background_kinds
        if skipped and not stored:
            report["note"] = (f"nothing new: all {skipped} images are identical to images already in the workspace "
                              f"(an earlier batch used the same settings and seed {params['seed']}); choose "
                              f"another seed for new images")
        elif skipped:
            report["note"] = (f"{skipped} of {skipped + stored} images are identical to images already in the "
                              f"workspace (same settings and seed as an earlier batch) and were not stored again")
        with write_transaction(db):
            ctx.hold(db)
            store_batches.set_report(db, batch_id, report)
            store_events.log(db, "batch.generate", report, batch_id=batch_id)
        return {"batch_id": batch_id, **report}


def _file_name(batch_id: int, index: int, ext: str) -> str:
    return f"gen{batch_id:04d}_{index:06d}.{ext}"


def _store(db, files: integrity.NewFiles, batch_id: int, params: dict[str, Any], res) -> str:
    """Store one result: "stored"; "again" when this batch already holds this very sample (a resumed job
    regenerated it); "duplicate" when the identical image is already in the workspace otherwise."""
    sources: dict[str, Sequence[int]] = {role: [int(i) for i in ids] for role, ids in res.source_image_ids.items()}
    all_ids = sorted({i for ids in sources.values() for i in ids})
    splits = store_images.splits_of(db, all_ids)
    bad = {i: splits.get(i, "missing") for i in all_ids if splits.get(i) != "train"}
    if bad:
        raise RealcalError(f"leakage guard: sample {res.index} was built from images that are not "
                           f"real train images ({bad}); nothing from val/test may be used")
    data = _encode(res.image, params["image_format"], int(params.get("jpeg_quality", 95)))
    info, data = media.inspect_bytes(data)
    same = store_images.by_sha256(db, [info.sha256]).get(info.sha256)
    if same is not None:
        own = same["batch_id"] == batch_id and same["file_name"] == _file_name(batch_id, res.index, info.ext)
        return "again" if own else "duplicate"
    files.store(info, data)
    image_id = store_images.insert_image(db, {
        "batch_id": batch_id, "kind": "synthetic", "split": "train",
        "dataset": f"synthetic:{params['generator']}", "file_name": _file_name(batch_id, res.index, info.ext),
        "source_id": str(res.index), "sha256": info.sha256, "ext": info.ext, "width": info.width,
        "height": info.height, "bytes": info.bytes})
    rows = []
    for p in res.persons:
        k = np.asarray(p.keypoints, dtype=float)
        if poses.num_labelled(k) == 0:
            continue
        bbox = p.bbox or poses.bbox_from_points(
            np.concatenate([k, np.asarray(list((p.extra or {}).values()), dtype=float).reshape(-1, 3)]),
            pad=0.1, image_size=(info.width, info.height))
        if bbox is None:
            continue
        rows.append({"image_id": image_id, "batch_id": batch_id, "source": "conditioning",
                     "keypoints": [round(float(v), 3) for v in k.reshape(-1)], "extra": p.extra,
                     "bbox_x": bbox[0], "bbox_y": bbox[1], "bbox_w": bbox[2], "bbox_h": bbox[3],
                     "area": poses.bbox_area_scale(bbox), "area_source": "bbox",
                     "num_keypoints": poses.num_labelled(k), "iscrowd": 0})
    store_images.insert_persons(db, rows)
    store_synthetic.insert_lineage(
        db, image_id=image_id, batch_id=batch_id, generator=params["generator"],
        seed=res.lineage.get("seed"), prompt=res.lineage.get("prompt"),
        details={**res.lineage, "job_seed": params["seed"], "index": res.index},
        seconds=round(res.seconds, 4), sources=sources)
    return "stored"
