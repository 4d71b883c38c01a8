"""Images/s of each offline generation mode on LSPET anchors, and a gallery of anchors beside their variants.

    .venv/bin/python bench/generation_modes.py [--count 48] [--out docs/results/generation]

Modes (256 x 256, real person-free backgrounds checked by the teacher, else procedural):

* ``copy_paste``: the anchors' own people in their own poses, pasted;
* ``pose_warp``: the anchor re-rendered in a sampled pose (part-based warping), plain alpha compositing;
* ``pose_warp_seamless``: the same plus Poisson blending, colour matching, matched blur and noise;
* ``pose_warp_swap``: seamless, with another anchor's appearance in the sampled pose half of the time.

Anchors: the first 200 images of the committed LSPET train pool (``experiments/lspet_split/train.txt``),
imported into a temporary workspace. Prints each mode's images/s (job wall time, model loads included)
and writes ``gallery.jpg`` (each row: an anchor with its skeleton, then its variants) and ``figures.md``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _paths import cpu_name, offline  # noqa: E402

offline()

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from engine import jobs, media, poses  # noqa: E402
from engine.generate.job import resolve_params  # noqa: E402
from engine.io import parse  # noqa: E402
from engine.io.common import read_ids_file, run_import  # noqa: E402
from engine.workspace import Workspace  # noqa: E402
from store import images as store_images  # noqa: E402
from store import synthetic as store_synthetic  # noqa: E402

LSPET = ROOT.parent / "shared" / "data" / "lspet"
SEAMLESS = {"blend": "poisson", "colour_match": 0.3, "match_blur": True, "match_noise": True}
MODES = {
    "copy_paste": {"generator": "copy_paste", "generator_params": {"people": [1, 1]}},
    "pose_warp": {"generator": "pose_warp", "generator_params": {}},
    "pose_warp_seamless": {"generator": "pose_warp", "generator_params": dict(SEAMLESS)},
    "pose_warp_swap": {"generator": "pose_warp", "generator_params": {**SEAMLESS, "swap_p": 0.5}},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=48, help="images per mode")
    ap.add_argument("--anchors", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "generation")
    args = ap.parse_args()
    if not LSPET.exists():
        sys.exit(f"needs LSPET at {LSPET}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws")
        ids = read_ids_file(ROOT / "experiments" / "lspet_split" / "train.txt")[: args.anchors]
        run_import(ws, parse("lsp", LSPET), ids=ids, split="train")
        batches = {}
        for name, spec in MODES.items():
            gp = {"width": 256, "height": 256, "background": "mixed", **spec["generator_params"]}
            p = resolve_params(ws, {"generator": spec["generator"], "count": args.count, "seed": 7,
                                    "generator_params": gp})
            t0 = time.perf_counter()
            final = jobs.run_foreground(ws, "generate", p)
            dt = time.perf_counter() - t0
            if final["status"] != "done":
                sys.exit(final.get("error"))
            r = final["result"]
            batches[name] = r["batch_id"]
            rows.append((name, r["images"], dt, r["images"] / dt, r["seconds"], r.get("backgrounds")))
            print(f"{name:<20} {r['images']} images in {dt:6.1f} s = {r['images'] / dt:5.2f} images/s "
                  f"(generator alone {r['images'] / max(r['seconds'], 1e-9):5.2f}/s; "
                  f"backgrounds {r.get('backgrounds')})",
                  flush=True)
        _gallery(ws, batches, args.out / "gallery.jpg")
    lines = ["# Offline generation modes: speed and examples", "",
             f"- Date: {time.strftime('%Y-%m-%d')}", f"- Machine: {cpu_name()}, {__import__('os').cpu_count()} cores",
             f"- Anchors: the first {args.anchors} images of the committed LSPET train pool; 256 x 256 output; "
             "real person-free backgrounds (teacher-checked) else procedural", "",
             "| mode | images | wall s | images/s (job, model loads included) | images/s (generator alone) |",
             "|---|---|---|---|---|"]
    for name, n, dt, rate, gen_s, _ in rows:
        lines.append(f"| {name} | {n} | {dt:.1f} | {rate:.2f} | {n / max(gen_s, 1e-9):.2f} |")
    lines += ["", "![anchors beside their variants](gallery.jpg)", "",
              "Each row of the gallery: a real LSPET train anchor (its label drawn), then images generated from it by "
              "`pose_warp` (plain, then seamless): the same person in sampled poses (mirror, rotation, joint-angle "
              "perturbation with bone lengths kept, interpolation towards another anchor), placed at a size and "
              "position drawn from the anchors, on person-free background crops; the emitted label is drawn.",
              "", "Rerun: `python bench/generation_modes.py`."]
    (args.out / "figures.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'figures.md'} and {args.out / 'gallery.jpg'}")


def _tile(img: np.ndarray, k: np.ndarray, size: int = 192) -> np.ndarray:
    from PIL import Image

    scale = size / max(img.shape[:2])
    pil = Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    pil = poses.draw_skeleton(pil, [k], scale=1.0, line_width=2, radius=2)
    out = cv2.cvtColor(np.asarray(pil.convert("RGB")), cv2.COLOR_RGB2BGR)
    out = cv2.resize(out, (int(img.shape[1] * scale), int(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.full((size, size, 3), 255, np.uint8)
    canvas[:out.shape[0], :out.shape[1]] = out
    return canvas


def _gallery(ws: Workspace, batches: dict[str, int], path: Path, rows: int = 5, per_row: int = 5) -> None:
    with ws.connect() as db:
        synth = {im["id"]: im for im in store_images.list_images(db, kinds=["synthetic"])}
        persons = store_images.persons_for_images(db, list(synth))
        by_anchor: dict[int, list[int]] = {}
        for name in ("pose_warp", "pose_warp_seamless"):
            for im in (i for i in synth.values() if i["batch_id"] == batches[name]):
                lin = store_synthetic.lineage_for(db, im["id"]) or {}
                pid = ((lin.get("details") or {}).get("appearance") or {}).get("person_id")
                if pid is not None:
                    by_anchor.setdefault(pid, []).append(im["id"])
        anchors = {p["id"]: p for p in store_images.train_anchor_persons(db, min_keypoints=1)}
    chosen = sorted(by_anchor, key=lambda pid: -len(by_anchor[pid]))[:rows]
    out_rows = []
    for pid in chosen:
        a = anchors[pid]
        img = cv2.imread(str(media.image_path(ws.root, a["sha256"], a["ext"])))
        tiles = [_tile(img, poses.as_keypoints(a["keypoints"]))]
        for sid in by_anchor[pid][: per_row - 1]:
            im = synth[sid]
            simg = cv2.imread(str(media.image_path(ws.root, im["sha256"], im["ext"])))
            tiles.append(_tile(simg, poses.as_keypoints(persons[sid][0]["keypoints"])))
        while len(tiles) < per_row:
            tiles.append(np.full_like(tiles[0], 255))
        out_rows.append(np.hstack(tiles))
    if out_rows:
        cv2.imwrite(str(path), np.vstack(out_rows), [cv2.IMWRITE_JPEG_QUALITY, 85])


if __name__ == "__main__":
    main()
