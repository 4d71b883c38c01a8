"""Curation stages on real images (../shared/data) and on images built in the tests."""
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from engine import assets, jobs, poses
from engine.cli import main
from engine.curate.base import resolve_threshold
from engine.curate.pose_consistency import consistency
from engine.curate.quality import image_quality
from engine.curate.select import greedy_order
from engine.errors import RealcalError
from engine.io import parse
from engine.io.common import run_import
from store import curation as store_curation
from store import images as store_images
from tests.helpers import make_coco


def _rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_blur_lowers_sharpness(coco_sample):
    img = _rgb(coco_sample.parent / "000000000785.jpg")
    sharp = image_quality(img)["sharpness"]
    blurred = image_quality(cv2.GaussianBlur(img, (0, 0), 3))["sharpness"]
    assert blurred < 0.3 * sharp


def test_calibration_reproduces_its_percentile():
    vals = np.random.default_rng(0).normal(10, 3, 500)
    thr, rec = resolve_threshold({"real_percentile": 5}, vals, True, "x")
    assert thr == pytest.approx(np.percentile(vals, 5))
    assert (vals < thr).mean() == pytest.approx(0.05, abs=0.005)
    assert rec["calibration_images"] == 500 and rec["kind"] == "real_percentile"
    with pytest.raises(RealcalError, match="at least 5"):
        resolve_threshold({"real_percentile": 5}, np.array([1.0]), True, "x")
    assert resolve_threshold(0.3, None, True, "x")[0] == 0.3


def test_mirrored_but_unflipped_label_fails_pose_consistency(coco_sample):
    from engine.curate.teacher import Teacher

    data = json.loads(coco_sample.read_text())
    ann = max((a for a in data["annotations"] if a["image_id"] == 785), key=lambda a: a["area"])
    img = _rgb(coco_sample.parent / "000000000785.jpg")
    h, w = img.shape[:2]
    k = np.asarray(ann["keypoints"], float).reshape(17, 3)
    person = {"id": 1, "source": "conditioning", "keypoints": k.reshape(-1).tolist(),
              "num_keypoints": 17, "iscrowd": 0, "area": ann["area"]}
    teacher = Teacher(str(assets.resolve("yolo11n-pose")), "cpu")
    mirrored_img = np.ascontiguousarray(img[:, ::-1])
    good = dict(person, keypoints=poses.flip_keypoints(k, w).reshape(-1).tolist())
    pred_orig, pred_mirror = teacher([img, mirrored_img])
    assert consistency([person], pred_orig)[0] > 0.7             # the true label agrees
    assert consistency([good], pred_mirror)[0] > 0.7             # mirrored image, flipped label
    assert consistency([person], pred_mirror)[0] < 0.3           # mirrored image, unflipped label


def test_selection_respects_budget_and_order():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(20, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    pose_vecs = rng.normal(size=(20, 34))
    u = np.linspace(0, 1, 20)
    order = greedy_order(u, emb, pose_vecs, {"uncertainty": 1.0, "diversity": 0.0}, budget=5)
    assert [i for i, _, _ in order] == [19, 18, 17, 16, 15]
    full = greedy_order(u, emb, pose_vecs, {"uncertainty": 0.5, "diversity": 0.5})
    assert sorted(i for i, _, _ in full) == list(range(20))       # a complete order, no repeats
    kc = greedy_order(np.zeros(20), emb, pose_vecs, {"uncertainty": 0.0, "diversity": 1.0}, budget=3)
    first, second = kc[0][0], kc[1][0]
    pose_dist = np.linalg.norm(pose_vecs - pose_vecs[first], axis=1)
    d = 0.5 * (1 - emb @ emb[first]) / (1 - emb @ emb[first]).max() + 0.5 * pose_dist / pose_dist.max()
    assert second == int(np.argmax(d))                           # k-center: the farthest next


@pytest.fixture
def cur_ws(ws, coco_sample, lspet):
    run_import(ws, parse("lsp", lspet), limit=30, split="train")
    run_import(ws, parse("coco", coco_sample), split="test")
    return ws


def test_reencoded_copy_of_a_test_image_is_a_duplicate(cur_ws, coco_sample, tmp_path):
    from engine.curate.base import StageContext
    from engine.curate.duplicates import DuplicatesStage
    from engine.curate.embedders import EffNetLite0Embedder
    from engine.io.common import ImageRecord, ParsedDataset

    src = _rgb(coco_sample.parent / "000000040083.jpg")
    cv2.imwrite(str(tmp_path / "copy.jpg"), cv2.cvtColor(src, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 70])
    cv2.imwrite(str(tmp_path / "other.png"), np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8))
    parsed = ParsedDataset("images", "fake-synthetic", "test", [
        ImageRecord("copy.jpg", tmp_path / "copy.jpg"), ImageRecord("other.png", tmp_path / "other.png")])
    run_import(cur_ws, parsed, split="train", kind="synthetic")
    with cur_ws.connect() as db:
        items = store_images.list_images(db, kinds=["synthetic"])
        ctx = StageContext(ws=cur_ws, db=db, embedder=EffNetLite0Embedder(),
                           real_all=store_images.list_images(db, kinds=["real"]))
        stage = DuplicatesStage()
        stage.calibrate(ctx)
        rows = {r["image_id"]: r for r in stage.run(ctx, items)}
    copy, other = items[0]["id"], items[1]["id"]
    assert rows[copy]["status"] == "fail" and "real test image" in rows[copy]["reason"]
    assert rows[other]["status"] == "pass"


def test_curation_job_funnel_unavailable_clip_and_select(cur_ws):
    from engine.curate.run import resolve_params as curate_params
    from engine.generate.job import resolve_params as gen_params

    g = jobs.run_foreground(cur_ws, "generate", gen_params(cur_ws, {
        "count": 6, "generator_params": {"width": 256, "height": 256, "background": "procedural"}}))
    assert g["status"] == "done", g["error"]
    params = curate_params(cur_ws, {"stages": [
        {"name": "quality", "params": {"sharpness": 1.0}},
        {"name": "duplicates", "params": {}},
        {"name": "realism", "params": {"threshold": {"real_percentile": 100}}},
        {"name": "clip", "params": {}},
        {"name": "pose_consistency", "params": {"threshold": 0.0}}]})
    final = jobs.run_foreground(cur_ws, "curate", params)
    assert final["status"] == "done", final["error"]
    funnel = {f["stage"]: f for f in final["result"]["funnel"]}
    assert funnel["quality"]["entered"] == 6
    assert funnel["clip"]["unavailable"] == funnel["clip"]["entered"] and funnel["clip"]["passed"] == 0
    assert funnel["pose_consistency"]["entered"] == funnel["clip"]["entered"]   # unavailable drops none
    batch_metrics = next(iter(final["result"]["set_metrics"].values()))
    assert "KID-EffNetLite0" in batch_metrics and not any("FID" == k for k in batch_metrics)
    with cur_ws.connect() as db:
        run_id = final["result"]["run_id"]
        clip_rows = store_curation.results(db, run_id, "clip")
        assert all(r["status"] == "unavailable" and "unavailable" in r["reason"] for r in clip_rows)
        pc = store_curation.results(db, run_id, "pose_consistency")
        assert all("people" in r["details"] for r in pc)
        order = store_curation.selection(db, run_id)
        assert [r["rank"] for r in order] == list(range(1, len(order) + 1))
    r = CliRunner().invoke(main, ["-w", str(cur_ws.root), "select", "--budget", "2"])
    assert r.exit_code == 0 and "selected" in r.output
    status = json.loads(CliRunner().invoke(main, ["-w", str(cur_ws.root), "status", "--json"]).output)
    assert status["funnel"]["stages"][0]["stage"] == "quality" and status["funnel"]["selected"] <= 2
    # thresholds learnt from some train images only (a loop's anchors): the calibration names how many
    from store import images as store_images
    with cur_ws.connect() as db:
        train = [im["id"] for im in store_images.list_images(db, kinds=["real"]) if im["split"] == "train"]
    assert len(train) == 30
    for cal, n in ((None, 30), (train[:10], 10)):
        again = jobs.run_foreground(cur_ws, "curate", curate_params(cur_ws, {
            "stages": [{"name": "quality", "params": {"sharpness": {"real_percentile": 2}}}], "calibrate_on": cal}))
        assert again["status"] == "done", again["error"]
        with cur_ws.connect() as db:
            assert store_curation.latest_run(db)["calibration"]["quality"]["sharpness"]["calibration_images"] == n


def test_a_second_curation_reuses_the_teachers_predictions_and_decides_the_same(cur_ws, monkeypatch):
    from engine.curate import teacher as teacher_mod
    from engine.curate.run import resolve_params as curate_params
    from engine.generate.job import resolve_params as gen_params

    g = jobs.run_foreground(cur_ws, "generate", gen_params(cur_ws, {
        "count": 5, "generator_params": {"width": 128, "height": 128, "background": "procedural"}}))
    assert g["status"] == "done", g["error"]
    seen: list[int] = []
    call = teacher_mod.Teacher.__call__
    monkeypatch.setattr(teacher_mod.Teacher, "__call__", lambda self, images: seen.append(len(images)) or
                        call(self, images))
    params = curate_params(cur_ws, {"stages": [{"name": "pose_consistency", "params": {"threshold": 0.0}}]})
    first = jobs.run_foreground(cur_ws, "curate", params)
    assert first["status"] == "done", first["error"]
    n_first = sum(seen)
    assert n_first == 5 + 5                        # the images and their mirrors (a fixed threshold: no anchors)
    seen.clear()
    second = jobs.run_foreground(cur_ws, "curate", params)
    assert second["status"] == "done" and sum(seen) == 0      # every prediction came from the cache
    with cur_ws.connect() as db:
        for stage in ("pose_consistency", "uncertainty"):
            a, b = ({r["image_id"]: (r["status"], r["value"])
                     for r in store_curation.results(db, run["result"]["run_id"], stage)} for run in (first, second))
            assert a == b and a, stage
        assert store_curation.run_config(db, second["result"]["run_id"])["stages"] == params["stages"]


def test_bad_curation_config(cur_ws):
    from engine.curate.run import resolve_params as curate_params

    with pytest.raises(RealcalError, match="unknown stage 'qualty'; valid names"):
        curate_params(cur_ws, {"stages": [{"name": "qualty"}]})
    with pytest.raises(RealcalError, match="unknown curation option"):
        curate_params(cur_ws, {"budget": 3})
    for bad in ([], "1,2", [1, "2"]):
        with pytest.raises(RealcalError, match="calibrate_on is a non-empty list"):
            curate_params(cur_ws, {"calibrate_on": bad})
    # images that are not real train images (a val image, an id that does not exist) stop the job, naming them
    from store import images as store_images
    with cur_ws.connect() as db:
        val = [im["id"] for im in store_images.list_images(db, kinds=["real"]) if im["split"] != "train"][:1]
    final = jobs.run_foreground(cur_ws, "curate", curate_params(cur_ws, {"calibrate_on": [*val, 10 ** 6]}))
    assert final["status"] == "failed"
    assert f"calibrate_on: 2 of the 2 images are not real train images (e.g. {sorted([*val, 10 ** 6])[:5]})" \
        in final["error"]


def _tiny_clip_checkpoint(tmp_path):
    """Registers the open_clip model config "tiny-clip" and saves random weights for it; returns the file."""
    import open_clip
    import torch

    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / "tiny-clip.json").write_text(json.dumps({
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}))
    open_clip.add_model_config(cfg_dir)
    model = open_clip.create_model("tiny-clip", pretrained=None)
    ckpt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    return ckpt


def test_open_clip_tiny_model_through_the_real_loading_path(tmp_path):
    from engine.curate.embedders import OpenClipEmbedder

    ckpt = _tiny_clip_checkpoint(tmp_path)
    emb = OpenClipEmbedder(model="tiny-clip", pretrained=str(ckpt))
    emb.setup()
    v = emb.embed([np.zeros((40, 50, 3), np.uint8), np.full((40, 50, 3), 255, np.uint8)])
    assert v.shape == (2, 16) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert emb.embed_text(["a photo of a person"]).shape == (1, 16)
    with pytest.raises(RealcalError, match="unavailable"):
        OpenClipEmbedder(model="ViT-B-32", pretrained="laion2b_s34b_b79k").setup()


def test_open_clip_as_the_curation_embedder_sets_itself_up(ws, tmp_path):
    # cached_embeddings() sets up an embedder whose `model` is None; open_clip's `model` is a parameter
    from engine.curate.embedders import OpenClipEmbedder, cached_embeddings

    ckpt = _tiny_clip_checkpoint(tmp_path)
    run_import(ws, parse("coco", make_coco(tmp_path / "c", n=2)))
    emb = OpenClipEmbedder(model="tiny-clip", pretrained=str(ckpt))
    with ws.connect() as db:
        images = store_images.list_images(db)
        out = cached_embeddings(ws, db, emb, images)
    assert sorted(out) == sorted(im["id"] for im in images)
    assert all(v.shape == (16,) for v in out.values())


def _near_duplicates_plainly(ref_emb, ref_hashes, items, max_cos, max_ham):
    """The duplicate check written the obvious way (lists, re-stacking, Python popcounts), as it used to
    be: the streaming version must decide exactly the same."""
    from engine.curate.duplicates import hamming

    kept = []
    out = []
    for i, (v, h) in enumerate(items):
        ref, why, syn, best = None, "", None, 0.0
        if ref_emb is not None:
            sims = ref_emb @ v
            j = int(np.argmax(sims))
            best = float(sims[j])
            ham = [hamming(h, int(r)) for r in ref_hashes]
            jh = int(np.argmin(ham))
            for idx, text in ((j, f"cosine {best:.3f}"), (jh, f"hash distance {ham[jh]}")):
                if sims[idx] >= max_cos or ham[idx] <= max_ham:
                    ref, why = idx, text
                    break
        if ref is None and kept:
            sims = np.stack([k[1] for k in kept]) @ v
            j = int(np.argmax(sims))
            best = max(best, float(sims[j]))
            if sims[j] >= max_cos or hamming(h, kept[j][2]) <= max_ham:
                syn, why = kept[j][0], f"cosine {sims[j]:.3f}"
        if ref is None and syn is None:
            kept.append((i, v, h))
        out.append((ref, why, syn, best, h))
    return out


def test_the_streaming_duplicate_check_decides_as_the_plain_one():
    from engine.curate.duplicates import near_duplicates

    rng = np.random.default_rng(0)

    def unit(x):
        return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)

    refs = unit(rng.normal(size=(40, 32)))
    ref_hashes = rng.integers(0, 2**63, size=40, dtype=np.uint64)
    base = unit(rng.normal(size=(150, 32)))
    items = []
    for i in range(300):          # fresh, near-copies of real images, of earlier items, and hash-only copies
        kind = i % 5
        if kind == 1:
            v, h = unit(refs[i % 40] + 0.01 * rng.normal(size=32)), int(rng.integers(0, 2**63))
        elif kind == 2 and items:
            v, h = unit(items[-2][0] + 0.01 * rng.normal(size=32)), int(rng.integers(0, 2**63))
        elif kind == 3:
            v, h = base[i // 2], int(ref_hashes[i % 40]) ^ 0b101     # 2 bits from a real image's hash
        else:
            v, h = base[i // 2], int(rng.integers(0, 2**63))
        items.append((v, h))
    got = list(near_duplicates(refs, ref_hashes, iter(items), 0.97, 6))
    want = _near_duplicates_plainly(refs, ref_hashes, items, 0.97, 6)
    assert len(got) == len(want) == 300
    for g, w in zip(got, want):
        assert g[:3] == w[:3] and g[4] == w[4] and abs(g[3] - w[3]) < 1e-6
    decided = [g for g in got if g[0] is not None or g[2] is not None]
    assert {bool(g[0] is not None) for g in decided} == {True} or any(g[2] is not None for g in decided)
    assert sum(g[0] is not None for g in got) >= 100 and sum(g[2] is not None for g in got) >= 30
    assert list(near_duplicates(None, np.zeros(0, np.uint64), iter(items[:3]), 0.97, 6))[0][:3] == (None, "", None)
