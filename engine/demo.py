"""The demo workspace: real photographs shipped inside registry packages, pseudo-labelled.

Photos: Ultralytics' ``bus.jpg`` and ``zidane.jpg`` and matplotlib's ``grace_hopper.jpg`` (all
installed with realcal's dependencies). They carry no labels: the teacher labels them, and the
app shows those skeletons as machine labels. A small copy-paste batch is then generated from those
people, so the Generate page has something to show; its lineage records that the anchors' poses
are machine labels.
"""
from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path
from typing import Callable

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


def build_demo(root: str | Path, log: Callable[[str], None] = print,
               on_progress=None) -> Workspace:
    """Create (or complete) the demo workspace at ``root``; safe to run again."""
    from engine import jobs
    from engine.io import parse
    from engine.io.common import run_import
    from engine.pseudo_label import resolve_params
    from store import images as store_images

    ws = Workspace.init(root)
    db = ws.connect()
    try:
        has_images = store_images.counts(db)["images"]["total"] > 0
    finally:
        db.close()
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
    db = ws.connect()
    try:
        todo = len(store_images.unlabelled_real_images(db))
    finally:
        db.close()
    if todo:
        log(f"demo: pseudo-labelling {todo} images with the teacher (seconds on a CPU)")
        final = jobs.run_foreground(ws, "pseudo_label", resolve_params(ws), on_progress)
        if final["status"] != "done":
            from engine.errors import RealcalError

            raise RealcalError(f"demo pseudo-labelling {final['status']}: {final.get('error')}")
        log(f"demo: {final['result']['persons']} people found")
    db = ws.connect()
    try:
        has_synthetic = store_images.counts(db)["images"]["by_kind"].get("synthetic", 0) > 0
    finally:
        db.close()
    if not has_synthetic:
        from engine.generate.job import resolve_params as generation_params

        log("demo: generating 8 copy-paste images from the demo people (anchors are machine labels)")
        params = generation_params(ws, {
            "generator": "copy_paste", "count": 8, "seed": 0, "anchor_sources": ["predicted"],
            "generator_params": {"width": 384, "height": 384, "people": [1, 2]}})
        final = jobs.run_foreground(ws, "generate", params, on_progress)
        if final["status"] != "done":
            from engine.errors import RealcalError

            raise RealcalError(f"demo generation {final['status']}: {final.get('error')}")
        log(f"demo: {final['result']['images']} synthetic images")
    db = ws.connect()
    try:
        from store import curation as store_curation

        curated = store_curation.latest_run(db) is not None
    finally:
        db.close()
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
    db = ws.connect()
    try:
        from engine import review
        from store import review as store_review

        if store_review.max_rank(db) == 0:
            r = review.build_queue(ws, db, overlap=0.2)
            log(f"demo: {r['added']} images queued for review")
    finally:
        db.close()
    return ws
