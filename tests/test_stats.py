"""Statistics on cases with known answers."""
import numpy as np
import pytest

from engine import poses, stats


def _gt_and_dets(n=30, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    gt = {"images": [], "annotations": [], "categories": [poses.coco_category()]}
    dets = []
    for i in range(1, n + 1):
        gt["images"].append({"id": i, "width": 200, "height": 200})
        k = np.zeros((17, 3))
        k[:, 0], k[:, 1], k[:, 2] = rng.uniform(20, 180, 17), rng.uniform(20, 180, 17), 2
        gt["annotations"].append({"id": i, "image_id": i, "category_id": 1, "keypoints": k.reshape(-1).tolist(),
                                  "num_keypoints": 17, "bbox": [10, 10, 180, 180], "area": 0.53 * 180 * 180,
                                  "iscrowd": 0})
        p = k.copy()
        p[:, :2] += rng.normal(0, noise, (17, 2)) if noise else 0
        dets.append({"image_id": i, "category_id": 1, "score": 0.9, "keypoints": p.reshape(-1).tolist()})
    return gt, dets


def test_bootstrap_perfect_predictions_give_ap_one_with_a_degenerate_interval():
    gt, dets = _gt_and_dets()
    r = stats.bootstrap_ap(gt, dets, n_boot=50)
    assert r["AP"] == pytest.approx(1.0) and r["AP_ci"] == pytest.approx([1.0, 1.0])


def test_bootstrap_interval_contains_the_point_estimate_and_narrows_with_more_images():
    gt, dets = _gt_and_dets(n=40, noise=6.0)
    r = stats.bootstrap_ap(gt, dets, n_boot=200)
    assert r["AP_ci"][0] <= r["AP"] <= r["AP_ci"][1] and r["AP_ci"][0] < r["AP_ci"][1]
    gt2, dets2 = _gt_and_dets(n=160, noise=6.0)
    r2 = stats.bootstrap_ap(gt2, dets2, n_boot=200)
    assert (r2["AP_ci"][1] - r2["AP_ci"][0]) < (r["AP_ci"][1] - r["AP_ci"][0])


def test_holm_matches_a_worked_example():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_verdicts_say_no_evidence_when_the_interval_includes_zero():
    assert stats.verdict("mixed", "real-only", "AP50", 0.02, [-0.01, 0.05]).startswith("No evidence of a gain")
    assert "beats real-only by +0.040" in stats.verdict("mixed", "real-only", "AP50", 0.04, [0.01, 0.07])
    # an interval that excludes zero is not a claim when the Holm-adjusted p is not significant
    assert stats.verdict("mixed", "real-only", "OKS", 0.01, [0.001, 0.02], p_adj=0.09).startswith("No evidence")
    assert stats.verdict("mixed", "real-only", "OKS", 0.01, [0.001, 0.02], p_adj=0.01).startswith("mixed beats")


def _with_extra(gt, dets, seed=3):
    """Detections with varied scores plus confident wrong ones, so AP is far from 0 and 1."""
    rng = np.random.default_rng(seed)
    dets = [{**d, "score": float(rng.uniform(0.1, 1))} for d in dets]
    for im in gt["images"][: len(gt["images"]) // 2]:
        k = np.zeros((17, 3))
        k[:, 0], k[:, 1], k[:, 2] = rng.uniform(20, 180, 17), rng.uniform(20, 180, 17), 1
        dets.append({"image_id": im["id"], "category_id": 1, "score": float(rng.uniform(0, 1)),
                     "keypoints": k.reshape(-1).tolist()})
    return dets


def test_match_arrays_equal_cocoeval_at_unit_weights_and_on_a_resample():
    gt, dets = _gt_and_dets(n=60, noise=8.0)
    dets = _with_extra(gt, dets)
    arr = stats.MatchArrays.from_coco(gt, dets)
    ap, ap50, _ = stats.ap_from_eval(stats.coco_eval(gt, dets))
    assert arr.ap(np.ones(60)) == pytest.approx((ap, ap50), abs=1e-12) and 0.2 < ap50 < 0.95
    pick = np.random.default_rng(5).integers(0, 60, 60)
    g2 = {"images": [], "annotations": [], "categories": gt["categories"]}
    d2 = []
    for n, i in enumerate(pick):            # the resample written out as new images
        iid = gt["images"][i]["id"]
        g2["images"].append({"id": n + 1, "width": 200, "height": 200})
        g2["annotations"] += [{**a, "id": len(g2["annotations"]) + 1, "image_id": n + 1}
                              for a in gt["annotations"] if a["image_id"] == iid]
        d2 += [{**d, "image_id": n + 1} for d in dets if d["image_id"] == iid]
    explicit = stats.ap_from_eval(stats.coco_eval(g2, d2))[:2]
    assert arr.ap(np.bincount(pick, minlength=60).astype(float)) == pytest.approx(explicit, abs=1e-12)


def test_two_stage_bootstrap_known_answers():
    gt, perfect = _gt_and_dets(n=40)
    _, noisy = _gt_and_dets(n=40, noise=15.0)
    P, N = stats.MatchArrays.from_coco(gt, perfect), stats.MatchArrays.from_coco(gt, noisy)
    same = stats.two_stage_bootstrap({0: N, 1: N}, {0: N, 1: N}, "AP50", n_boot=100)
    assert same["mean_diff"] == 0 and same["ci"] == [0.0, 0.0] and same["p"] == 1.0
    better = stats.two_stage_bootstrap({0: P, 1: P}, {0: N, 1: N}, "AP50", n_boot=200)
    ap50_noisy = N.ap(np.ones(40))[1]
    assert better["mean_diff"] == pytest.approx(1.0 - ap50_noisy) and better["seeds"] == 2
    assert 0 < better["ci"][0] <= better["mean_diff"] <= better["ci"][1] and better["p"] <= 0.01
    assert [d["seed"] for d in better["per_seed"]] == [0, 1]
    other_gt, other = _gt_and_dets(n=20)
    with pytest.raises(ValueError, match="same test images"):
        stats.two_stage_bootstrap({0: P, 1: stats.MatchArrays.from_coco(other_gt, other)}, {0: N, 1: N}, "AP50")


def test_two_stage_interval_holds_seed_variance_that_an_image_only_interval_misses():
    """Seeds that disagree (one arm wins on seed 0, loses on seed 1): resampling images alone gives a tight
    interval away from zero; the two-stage interval spans zero."""
    gt, perfect = _gt_and_dets(n=80)
    _, noisy = _gt_and_dets(n=80, noise=18.0)      # AP50 ~0.04
    _, mid = _gt_and_dets(n=80, noise=15.0)        # AP50 ~0.54
    P, N, M = (stats.MatchArrays.from_coco(gt, d) for d in (perfect, noisy, mid))
    arm, base = {0: P, 1: N, 2: P, 3: N}, {0: M, 1: M, 2: M, 3: M}
    two = stats.two_stage_bootstrap(arm, base, "AP50", n_boot=400)
    per = sorted(d["diff"] for d in two["per_seed"])
    assert per[0] < 0 < per[-1]
    assert two["ci"][0] < 0 < two["ci"][1]
    # one seed per arm = no seed stage: the interval is images only and excludes zero
    one = stats.two_stage_bootstrap({0: P}, {0: M}, "AP50", n_boot=400)
    assert one["ci"][0] > 0 and "one seed" in one["method"]


def test_two_stage_bootstrap_on_per_person_values():
    ids = list(range(1, 31))
    rows_a = [{"person_id": i, "image_id": i, "pck": 0.8} for i in ids]
    rows_b = [{"person_id": i, "image_id": i, "pck": 0.5 + 0.01 * (i % 5)} for i in ids]
    a, b = stats.PersonArrays(ids, rows_a, "pck"), stats.PersonArrays(ids, rows_b, "pck")
    res = stats.two_stage_bootstrap({0: a, 1: a}, {0: b, 1: b}, "PCK@0.2", n_boot=200)
    assert res["mean_diff"] == pytest.approx(0.8 - np.mean([r["pck"] for r in rows_b]))
    assert 0 < res["ci"][0] <= res["ci"][1]
    other = stats.PersonArrays(ids[:-1], rows_b, "pck")        # another test set
    with pytest.raises(ValueError, match="same test images"):
        stats.two_stage_bootstrap({0: a}, {0: other}, "PCK@0.2")


def test_comparisons_ablation_and_noise_floor_reach_the_report(tmp_path):
    """Curated arms are compared with random/unfiltered arms of the same real + synthetic counts; an arm with a
    replica and random vs unfiltered form the noise floor; all reach the report with per-seed differences."""
    from engine.experiment import compare, summarise
    from engine.report import write_report
    from engine.train.train import save_coco

    gt, perfect = _gt_and_dets(n=30)
    _, noisy = _gt_and_dets(n=30, noise=15.0)
    dets = {"real-only": noisy, "real-only-aa": noisy, "mixed-curated-50": perfect, "mixed-random-50": noisy,
            "mixed-unfiltered-50": noisy, "mixed-random-10": noisy, "synthetic-only": noisy}
    cfg = {"name": "t", "step_matching": True, "arms": [
        {"name": "real-only", "kind": "train", "real": 10, "synthetic": None, "pool": "none"},
        {"name": "real-only-aa", "kind": "train", "real": 10, "synthetic": None, "pool": "none", "replica": 1},
        {"name": "mixed-curated-50", "kind": "train", "real": 10, "synthetic": 50, "pool": "curated"},
        {"name": "mixed-random-50", "kind": "train", "real": 10, "synthetic": 50, "pool": "random"},
        {"name": "mixed-unfiltered-50", "kind": "train", "real": 10, "synthetic": 50, "pool": "unfiltered"},
        {"name": "mixed-random-10", "kind": "train", "real": 10, "synthetic": 10, "pool": "random"},
        {"name": "synthetic-only", "kind": "train", "real": 0, "synthetic": 50, "pool": "curated"}]}
    runs = []
    for arm, d in dets.items():
        for seed in (0, 1):
            path = tmp_path / f"{arm}-{seed}.json.gz"
            save_coco(path, {"gt": gt, "dets": d, "protocol": "coco"})
            good = d is perfect
            runs.append({"arm": arm, "seed": seed, "status": "done", "training_run_id": None, "result": {
                "test_eval": str(path), "seconds": 1.0, "steps": 10, "train_images": 10, "manifest_hash": "0" * 64,
                "code": {"source_hash": "abc", "commit": "1234", "dirty": False},
                "test": {"AP50": 1.0 if good else 0.5, "protocol": "coco", "images": 30, "persons": 30}, "val": {},
                "rows": [{"person_id": i, "image_id": i, "oks": 0.9 if good else 0.5, "pck": 1.0 if good else 0.5}
                         for i in range(1, 31)]}})
    comparisons = compare(runs, cfg, n_boot=400)
    abl = [c for c in comparisons if c["kind"] == "ablation"]
    assert {(c["arm"], c["baseline"], c["metric"]) for c in abl} == {
        (a, b, m) for a in ["mixed-curated-50"] for b in ["mixed-random-50", "mixed-unfiltered-50"]
        for m in ["AP50", "PCK@0.2"]}
    assert all(c["ci"][0] > 0 and c["seeds"] == 2 for c in abl)
    floor = {(c["arm"], c["baseline"]) for c in comparisons if c["kind"] == "noise_floor"}
    assert floor == {("real-only-aa", "real-only"), ("mixed-random-50", "mixed-unfiltered-50")}
    vs = [c for c in comparisons if c["kind"] == "vs_baseline"]
    assert {c["metric"] for c in vs} == {"AP50", "PCK@0.2", "per-person OKS"} and all("p_holm" in c for c in vs)
    assert "real-only-aa" not in {c["arm"] for c in vs}          # the A/A arm is the noise floor, not a contender
    summary = summarise(runs, cfg, comparisons)
    assert summary["ablation"] == abl and summary["protocol"] == "coco" and summary["sizes"]["test images"] == 30
    assert "mixed-curated-50 beats real-only" in summary["headline"] and "Noise floor" in summary["headline"]
    out = write_report(tmp_path / "report", {"name": "t", "config": cfg}, summary, runs)
    md = open(out["markdown"]).read()
    assert md.splitlines()[2] == summary["headline"]          # the summary paragraph comes first
    assert "Curation ablation at matched volume" in md and abl[0]["verdict"] in md and "## Noise floor" in md
    assert "## Per seed" in md and "- Protocol: coco:" in md and "1234, source abc" in md
    assert "Curation ablation at matched volume" in open(out["html"]).read()


def test_gap_closed_is_the_share_of_the_reference_gain_with_an_interval():
    rng = np.random.default_rng(0)
    ids = list(range(60))
    noise = {s: rng.normal(0, 0.05, 60) for s in range(3)}

    def arrays(level):
        return {s: stats.PersonArrays(ids, [{"person_id": i, "image_id": i, "pck": level + noise[s][i]}
                                            for i in ids], "pck") for s in range(3)}

    base, ref, half = arrays(0.40), arrays(0.60), arrays(0.50)
    res = stats.gap_closed_bootstrap(half, ref, base, "PCK@0.2", n_boot=300)
    assert res["fraction"] == pytest.approx(0.5) and res["seeds"] == 3
    assert res["ci"][0] <= 0.5 <= res["ci"][1] and res["undefined_share"] == 0.0
    assert res["arm_gain"] == pytest.approx(0.1) and res["reference_gain"] == pytest.approx(0.2)
    # a reference no better than the baseline leaves no gap to close
    flat = stats.gap_closed_bootstrap(half, arrays(0.40), base, "PCK@0.2", n_boot=100)
    assert flat["fraction"] is None and flat["ci"] is None and flat["undefined_share"] > 0.025
