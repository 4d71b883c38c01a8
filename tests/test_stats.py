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


def test_permutation_test_known_answers():
    clear = stats.paired_permutation([0.1 + 0.01 * (i % 3) for i in range(40)], n_perm=5000)
    assert clear["p"] < 0.001 and clear["ci"][0] > 0
    null = stats.paired_permutation(np.random.default_rng(1).normal(0, 1, 200), n_perm=5000)
    assert null["p"] > 0.05
    # all 2^4 sign patterns of four equal differences: exactly 2 are as extreme -> p ~ 1/8
    small = stats.paired_permutation([1.0, 1.0, 1.0, 1.0], n_perm=20000, seed=3)
    assert small["p"] == pytest.approx(2 / 16, abs=0.01)


def test_holm_matches_a_worked_example():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_verdicts_say_no_evidence_when_the_interval_includes_zero():
    assert stats.verdict("mixed", "real-only", "AP50", 0.02, [-0.01, 0.05]).startswith("No evidence of a gain")
    assert "beats real-only by +0.040" in stats.verdict("mixed", "real-only", "AP50", 0.04, [0.01, 0.07])
    # an interval that excludes zero is not a claim when the Holm-adjusted p is not significant
    assert stats.verdict("mixed", "real-only", "OKS", 0.01, [0.001, 0.02], p_adj=0.09).startswith("No evidence")
    assert stats.verdict("mixed", "real-only", "OKS", 0.01, [0.001, 0.02], p_adj=0.01).startswith("mixed beats")


def test_paired_ap50_bootstrap_known_answers():
    gt, perfect = _gt_and_dets(n=40)
    _, noisy = _gt_and_dets(n=40, noise=12.0)
    same = stats.paired_bootstrap_ap50([(gt, noisy, noisy)], n_boot=50)
    assert same["mean_diff"] == pytest.approx(0.0) and same["ci"] == pytest.approx([0.0, 0.0])
    better = stats.paired_bootstrap_ap50([(gt, perfect, noisy), (gt, perfect, noisy)], n_boot=100)
    ap50_noisy = stats.bootstrap_ap(gt, noisy, n_boot=2)["AP50"]
    assert better["mean_diff"] == pytest.approx(1.0 - ap50_noisy) and better["seeds"] == 2
    assert 0 < better["ci"][0] <= better["mean_diff"] <= better["ci"][1]
    other_gt, other = _gt_and_dets(n=20)
    with pytest.raises(ValueError, match="same test images"):
        stats.paired_bootstrap_ap50([(gt, perfect, noisy), (other_gt, other, other)], n_boot=5)


def test_ignore_regions_stop_unannotated_people_counting_as_false_positives():
    from engine.train.evaluate import add_ignore_regions

    gt, dets = _gt_and_dets(n=10)
    extra = []
    for im in gt["images"]:   # a confident detection of an unannotated person in every image
        k = np.zeros((17, 3))
        k[:, 0], k[:, 1], k[:, 2] = np.linspace(300, 340, 17), np.linspace(300, 380, 17), 1
        extra.append({"image_id": im["id"], "category_id": 1, "score": 0.95, "keypoints": k.reshape(-1).tolist()})
    for im in gt["images"]:
        im["width"] = im["height"] = 400
    plain = stats.bootstrap_ap(gt, dets + extra, n_boot=10)["AP"]
    assert plain < 0.9
    import copy

    gt2 = copy.deepcopy(gt)
    assert add_ignore_regions(gt2, {im["id"]: [[290.0, 290.0, 60.0, 100.0]] for im in gt["images"]}) == 10
    assert stats.bootstrap_ap(gt2, dets + extra, n_boot=10)["AP"] == pytest.approx(1.0)


def test_curation_ablation_pairs_arms_at_matched_volume(tmp_path):
    """Curated arms are compared with random/unfiltered arms of the same real + synthetic counts (paired over
    the same test images); those comparisons stay out of the vs-real-only table and reach the report."""
    from engine.experiment import ablation_comparisons, summarise
    from engine.report import write_report
    from engine.train.train import save_coco

    gt, perfect = _gt_and_dets(n=30)
    _, noisy = _gt_and_dets(n=30, noise=12.0)
    dets = {"real-only": noisy, "mixed-curated-50": perfect, "mixed-random-50": noisy,
            "mixed-random-10": noisy, "synthetic-only": noisy}
    cfg = {"name": "t", "step_matching": True, "arms": [
        {"name": "real-only", "kind": "train", "real": 10, "synthetic": None, "pool": "none"},
        {"name": "mixed-curated-50", "kind": "train", "real": 10, "synthetic": 50, "pool": "curated"},
        {"name": "mixed-random-50", "kind": "train", "real": 10, "synthetic": 50, "pool": "random"},
        {"name": "mixed-random-10", "kind": "train", "real": 10, "synthetic": 10, "pool": "random"},
        {"name": "synthetic-only", "kind": "train", "real": 0, "synthetic": 50, "pool": "curated"}]}
    runs = []
    for arm, d in dets.items():
        for seed in (0, 1):
            path = tmp_path / f"{arm}-{seed}.json.gz"
            save_coco(path, {"gt": gt, "dets": d})
            runs.append({"arm": arm, "seed": seed, "status": "done", "training_run_id": None, "result": {
                "test_eval": str(path), "seconds": 1.0, "steps": 10, "train_images": 10, "manifest_hash": "0" * 64,
                "test": {"AP50": 1.0 if d is perfect else 0.5}, "val": {},
                "rows": [{"person_id": i, "oks": 0.5 + 0.01 * i, "pck": 0.5} for i in range(5)]}})
    abl = ablation_comparisons(runs, cfg, n_boot=20)
    assert [(c["arm"], c["baseline"]) for c in abl] == [("mixed-curated-50", "mixed-random-50")]
    assert abl[0]["ci"][0] > 0 and abl[0]["seeds"] == 2
    assert abl[0]["verdict"].startswith("mixed-curated-50 beats mixed-random-50 by")
    summary = summarise(runs, cfg, [{"arm": "mixed-random-50", "baseline": "real-only", "mean_diff": 0.0,
                                     "ci": [0.0, 0.0], "verdict": "v", "n": 30, "seeds": 2, "n_boot": 20}] + abl)
    assert [c["arm"] for c in summary["ap50"]] == ["mixed-random-50"] and summary["ablation"] == abl
    out = write_report(tmp_path / "report", {"name": "t", "config": cfg}, summary, runs)
    md = open(out["markdown"]).read()
    assert "Curation ablation at matched volume" in md and abl[0]["verdict"] in md
    assert "curation ablation" in open(out["html"]).read()
