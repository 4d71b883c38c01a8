"""Images/s of each generator on this machine.

    .venv/bin/python bench/generate.py [N]

* copy_paste: real generator, real data (LSPET train anchors from ../shared/data when present,
  else the demo photos), 512 x 512, procedural and real (teacher-checked) backgrounds.
* controlnet: a tiny random-weight pipeline built from config (no weights exist offline); the
  figure is the throughput of the code path only, not of SD1.5. Real-size figures need a GPU.
"""
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import jobs  # noqa: E402
from engine.generate.job import resolve_params  # noqa: E402
from engine.io import parse  # noqa: E402
from engine.io.common import run_import  # noqa: E402
from engine.workspace import Workspace  # noqa: E402

LSPET = Path(__file__).resolve().parents[2] / "shared" / "data" / "lspet"


def timed(ws, params):
    t0 = time.perf_counter()
    final = jobs.run_foreground(ws, "generate", params)
    dt = time.perf_counter() - t0
    if final["status"] != "done":
        raise SystemExit(final["error"])
    return final["result"]["images"], dt, final["result"].get("backgrounds")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws")
        if LSPET.exists():
            run_import(ws, parse("lsp", LSPET), limit=200, split="train")
            anchors = "200 LSPET train anchors"
        else:
            from engine.demo import build_demo

            ws = build_demo(Path(tmp) / "demo", log=lambda m: None)
            anchors = "demo photos (machine labels)"
        for bg in ("procedural", "mixed"):
            p = resolve_params(ws, {"count": n, "seed": 1, "generator_params": {
                "width": 512, "height": 512, "background": bg}})
            images, dt, kinds = timed(ws, p)
            print(f"copy_paste, {bg} backgrounds {kinds}, 512x512, {anchors}: {images} images in "
                  f"{dt:.1f} s = {images / dt:.2f} images/s (job wall time, model loads included)")

        from tests.tiny_models import save_tiny_controlnet_pipeline

        base, cn = save_tiny_controlnet_pipeline(Path(tmp) / "tiny")
        p = resolve_params(ws, {"generator": "controlnet", "count": 8, "seed": 1, "generator_params": {
            "base": str(base), "controlnet": str(cn), "steps": 20, "width": 128, "height": 128,
            "batch_size": 4, "device": "cpu", "allow_cpu": True}})
        images, dt, _ = timed(ws, p)
        print(f"controlnet, TINY RANDOM-WEIGHT pipeline (code path only, not SD1.5), 128x128, 20 steps, "
              f"CPU: {images} images in {dt:.1f} s = {images / dt:.2f} images/s")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
