"""The CUDA paths, run for real where a GPU is visible (skipped elsewhere, saying so): the ControlNet generator in
half precision, a training job with mixed precision, and evaluation that agrees with the CPU's. Tiny models built
from config stand in for the diffusion weights, which are not packaged."""
import numpy as np
import pytest

from engine import jobs
from engine.io import parse
from engine.io.common import run_import
from engine.train.manifest import build_manifest
from store import training as store_training
from tests.test_controlnet import _pose

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: none is visible here")]


@pytest.mark.parametrize("dtype, want", [("auto", "float16"), ("bfloat16", "bfloat16")])
def test_controlnet_generator_runs_on_cuda_in_half_precision(tmp_path, dtype, want):
    from engine.generate import GenerationRequest
    from engine.generate.controlnet import ControlNetGenerator
    from tests.tiny_models import save_tiny_controlnet_pipeline

    base, cn = save_tiny_controlnet_pipeline(tmp_path)
    gen = ControlNetGenerator(base=str(base), controlnet=str(cn), steps=2, width=64, height=64, batch_size=2,
                              device="cuda", dtype=dtype)
    gen.setup()
    assert gen.pipe.device.type == "cuda"
    assert next(gen.pipe.unet.parameters()).dtype == getattr(torch, want)
    assert next(gen.pipe.controlnet.parameters()).dtype == getattr(torch, want)
    reqs = [GenerationRequest(i, 100 + i, 64, 64, pose=_pose(), prompt="a photo of the man") for i in range(3)]
    out = gen.generate(reqs)
    assert len(out) == 3
    for o in out:
        assert o.image.shape == (64, 64, 3) and o.image.dtype == np.uint8
        assert o.lineage["device_used"].startswith("cuda") and o.image.std() > 0   # pixels, not NaNs gone black
    assert not np.array_equal(out[0].image, out[1].image)                           # each request its own seed
    again = gen.generate(reqs[:1])[0]
    assert np.abs(again.image.astype(int) - out[0].image.astype(int)).max() <= 2    # seeded on the GPU


def _workspace(ws, lspet):
    run_import(ws, parse("lsp", lspet), limit=24, split="train")
    run_import(ws, parse("lsp", lspet), ids=[f"im{i:05d}.jpg" for i in range(100, 116)], split="val")
    return ws


@pytest.fixture
def lspet_ws(ws, lspet):
    return _workspace(ws, lspet)


def test_training_job_on_cuda_with_mixed_precision(lspet_ws):
    from engine.train.train import resolve_params

    ws = lspet_ws
    m = build_manifest(ws, {"real_train": {"count": 16, "seed": 0}})
    params = resolve_params(ws, m["id"], {"epochs": 2, "imgsz": 128, "batch": 8, "device": "cuda:0"})
    final = jobs.run_foreground(ws, "train", params)
    assert final["status"] == "done", final["error"]
    r = final["result"]
    assert r["epochs"] == 2 and 0 <= r["metrics"]["val"]["AP50"] <= 1
    with ws.connect() as db:
        run = store_training.run(db, r["run_id"])
    assert run["config"]["device"] == "cuda:0" and run["config"]["machine"]["cuda"]
    ckpt = torch.load(r["weights"], map_location="cpu", weights_only=False)
    assert ckpt["train_args"]["amp"] is True and ckpt["train_args"]["device"] in ("cuda:0", "0")


def test_evaluation_on_cuda_agrees_with_the_cpu(lspet_ws):
    from ultralytics import YOLO

    from engine import assets
    from engine.train.evaluate import evaluate
    from engine.train.train import split_items

    ws = lspet_ws
    m = build_manifest(ws, {"real_train": {"count": 8, "seed": 0}})
    with ws.connect() as db:
        val = split_items(db, store_training.manifest(db, m["id"]), "val")
    got = {}
    for device in ("cpu", "cuda:0"):
        model = YOLO(str(assets.resolve("yolo11n-pose")), task="pose")
        metrics, rows = evaluate(model, ws, *val, imgsz=256, device=device, protocol="annotated_person")
        got[device] = (metrics, {r["person_id"]: r["oks"] for r in rows})
    (cpu, cpu_oks), (gpu, gpu_oks) = got["cpu"], got["cuda:0"]
    assert cpu["persons"] == gpu["persons"] == 16
    assert abs(cpu["AP50"] - gpu["AP50"]) <= 0.02 and abs(cpu["PCK@0.2"] - gpu["PCK@0.2"]) <= 0.02
    assert cpu_oks.keys() == gpu_oks.keys()
    assert max(abs(cpu_oks[k] - gpu_oks[k]) for k in cpu_oks) <= 0.02


def test_a_loop_round_runs_on_cuda(lspet_ws):
    """Mining, targeted generation, curation with the student's signals and the next student, all on the GPU."""
    from engine.loop import resolve
    from tests.test_loop import LOOP

    ws = lspet_ws
    final = jobs.run_foreground(ws, "loop", {"config": resolve({**LOOP, "rounds": 1}), "device": "cuda:0"})
    assert final["status"] == "done", final["error"]
    rows = final["result"]["rounds"]
    assert [r["round"] for r in rows] == [0, 1] and all(r["status"] == "done" for r in rows)
    assert rows[1]["synthetic"] == 2 and rows[1]["targets"] > 0 and all(r["val AP50"] is not None for r in rows)
    with ws.connect() as db:
        for r in rows:
            assert store_training.run(db, r["training run"])["config"]["device"] == "cuda:0"
