"""The demo workspace: real photographs shipped inside registry packages, pseudo-labelled.

Photos: Ultralytics' ``bus.jpg`` and ``zidane.jpg`` and matplotlib's ``grace_hopper.jpg`` (all
installed with realcal's dependencies). They carry no labels: the teacher labels them, and the
app shows those skeletons as machine labels. A small copy-paste batch is then generated from those
people, so the Generate page has something to show; its lineage records that the anchors' poses
are machine labels.

No registry package ships *labelled* pose data, and an experiment needs labelled val/test images
(machine labels are never used as ground truth). When an LSPET folder is available
(``$REALCAL_DEMO_LSPET``, else ``../shared/data/lspet`` beside the checkout) the demo also imports a
small labelled slice of it — the first images of the committed benchmark split — generates from
those people too, and queues a tiny experiment (``demo-tiny``: 1 epoch, 3 seeds) for the worker, so
the Results page fills within minutes. It is a demonstration of the machinery, not a result. Without
LSPET the demo says so and has no experiment.
"""
from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.workspace import Workspace

DEMO_PHOTOS = (
    ("ultralytics", "assets/bus.jpg"),
    ("ultralytics", "assets/zidane.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)


def demo_photos() -> list[Path]:
    found = []
    for module, rel in DEMO_PHOTOS:
        spec = importlib.util.find_spec(module)
        if spec and spec.submodule_search_locations:
            p = Path(list(spec.submodule_search_locations)[0]) / rel
            if p.is_file():
                found.append(p)
    return found


REPO = Path(__file__).resolve().parents[1]
DEMO_SLICE = {"train": 24, "val": 16, "test": 32}
DEMO_EXPERIMENT: dict[str, Any] = {
    "name": "demo-tiny", "seeds": [0, 1, 2], "step_matching": True,
    "recipe": {"epochs": 1, "imgsz": 128, "batch": 8},
    "arms": [{"name": "zero-shot", "kind": "zero_shot"},
             {"name": "real-only", "real": 24},
             {"name": "mixed-curated", "real": 24, "pool": "curated", "synthetic": 6},
             {"name": "mixed-random", "real": 24, "pool": "random", "synthetic": 6}],
}


def lspet_folder() -> Path | None:
    import os

    env = os.environ.get("REALCAL_DEMO_LSPET")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data" / "lspet"]:
        if (cand / "joints.mat").is_file():
            return cand
    return None


def _import_lspet_slice(ws: Workspace, folder: Path, log: Callable[[str], None]) -> None:
    from engine.io import parse
    from engine.io.common import read_ids_file, run_import

    parsed = parse("lsp", folder)
    for split, n in DEMO_SLICE.items():
        ids_file = REPO / "experiments" / "lspet_split" / f"{split}.txt"
        ids = read_ids_file(ids_file)[:n] if ids_file.exists() else None
        if ids is None:
            return
        rep = run_import(ws, parsed, split=split, ids=ids)
        log(f"demo: imported {rep.images} labelled LSPET images as {split}")


def build_demo(root: str | Path, log: Callable[[str], None] = print,
               on_progress=None, experiment: bool = True) -> Workspace:
    """Create (or complete) the demo workspace at ``root``; safe to run again.

    The demo works offline: unless the caller set it, ``HF_HUB_OFFLINE=1`` for this process and
    the worker it starts, so stages whose weights are not cached (CLIP) report "unavailable" at
    once instead of retrying a hub for a minute."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from engine import jobs
    from engine.io import parse
    from engine.io.common import run_import
    from engine.pseudo_label import resolve_params
    from store import images as store_images

    ws = Workspace.init(root)
    with ws.connect() as db:
        has_images = store_images.counts(db)["images"]["total"] > 0
    if not has_images:
        photos = demo_photos()
        if not photos:
            from engine.errors import RealcalError

            raise RealcalError("no demo photographs found: ultralytics and matplotlib must be installed")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "demo-photos"
            folder.mkdir()
            for p in photos:
                shutil.copyfile(p, folder / p.name)
            report = run_import(ws, parse("images", folder), split="train")
        log(f"demo: imported {report.images} photographs")
        lspet = lspet_folder()
        if lspet:
            _import_lspet_slice(ws, lspet, log)
        else:
            log("demo: no LSPET folder (set REALCAL_DEMO_LSPET): no labelled val/test, so no demo experiment")
    with ws.connect() as db:
        todo = len(store_images.unlabelled_real_images(db))
    if todo:
        log(f"demo: pseudo-labelling {todo} images with the teacher (seconds on a CPU)")
        final = jobs.run_foreground(ws, "pseudo_label", resolve_params(ws), on_progress)
        if final["status"] != "done":
            from engine.errors import RealcalError

            raise RealcalError(f"demo pseudo-labelling {final['status']}: {final.get('error')}")
        log(f"demo: {final['result']['persons']} people found")
    with ws.connect() as db:
        has_synthetic = store_images.counts(db)["images"]["by_kind"].get("synthetic", 0) > 0
    if not has_synthetic:
        from engine.generate.job import resolve_params as generation_params

        with ws.connect() as db:
            labelled = len(store_images.train_anchor_persons(db))
        count = 24 if labelled else 8
        log(f"demo: generating {count} copy-paste images from the demo people (the photos' anchors are machine labels)")
        params = generation_params(ws, {
            "generator": "copy_paste", "count": count, "seed": 0,
            "anchor_sources": ["predicted", "ground_truth"],
            "generator_params": {"width": 384 if not labelled else 256, "height": 384 if not labelled else 256,
                                 "people": [1, 2]}})
        final = jobs.run_foreground(ws, "generate", params, on_progress)
        if final["status"] != "done":
            from engine.errors import RealcalError

            raise RealcalError(f"demo generation {final['status']}: {final.get('error')}")
        log(f"demo: {final['result']['images']} synthetic images")
    with ws.connect() as db:
        from store import curation as store_curation

        curated = store_curation.latest_run(db) is not None
    if not curated:
        from engine.curate.run import DEFAULT_STAGES
        from engine.curate.run import resolve_params as curation_params

        # The demo has 3 real photos: too few to calibrate percentiles, so fixed thresholds.
        stages = [{"name": s["name"], "params": dict(s["params"])} for s in DEFAULT_STAGES]
        fixed = {"quality": {"sharpness": 20.0}, "realism": {"threshold": 0.6},
                 "pose_consistency": {"threshold": 0.3}}
        for s in stages:
            s["params"].update(fixed.get(s["name"], {}))
        log("demo: curating the generated images")
        final = jobs.run_foreground(ws, "curate", curation_params(ws, {"stages": stages}), on_progress)
        if final["status"] != "done":
            from engine.errors import RealcalError

            raise RealcalError(f"demo curation {final['status']}: {final.get('error')}")
        log(f"demo: {final['result']['kept']} generated images kept after curation")
    with ws.connect() as db:
        from engine import review
        from store import review as store_review

        if store_review.max_rank(db) == 0:
            r = review.build_queue(ws, db, overlap=0.2)
            log(f"demo: {r['added']} images queued for review")
    if experiment:
        queue_demo_experiment(ws, log)
    return ws


def queue_demo_experiment(ws: Workspace, log: Callable[[str], None] = print) -> int | None:
    """Queue the tiny demo experiment once (the worker runs it); None when there is nothing to do."""
    from engine import jobs
    from engine.experiment import resolve
    from store import images as store_images
    from store import jobs as store_jobs
    from store import training as store_training

    with ws.connect() as db:
        has_test = store_images.count_real_persons(db, split="test", sources=("ground_truth",))
        exp = store_training.experiment_by_name(db, DEMO_EXPERIMENT["name"])
        pending = [j for j in store_jobs.list_jobs(db, limit=200)
                   if j["kind"] == "experiment" and j["status"] in ("queued", "running")]
        done = exp is not None and len(store_training.experiment_runs(db, exp["id"])) >= \
            len(DEMO_EXPERIMENT["arms"]) * len(DEMO_EXPERIMENT["seeds"])
    if not has_test or done or pending:
        return None
    job_id = jobs.submit(ws, "experiment", {"config": resolve(DEMO_EXPERIMENT), "device": "auto"})
    log(f"demo: queued the tiny demo experiment (job {job_id}; 1 epoch x 3 seeds, a few minutes on a CPU)")
    return job_id
