"""The LSPET benchmark names its split files in the report: relative inside the checkout, absolute outside
(a split folder outside the repository crashed the run after the experiment finished, losing its report)."""
import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _benchmark():
    spec = importlib.util.spec_from_file_location("lspet_benchmark", REPO / "bench" / "lspet_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_split_files_inside_and_outside_the_checkout(tmp_path):
    bench = _benchmark()
    inside = bench.split_files(REPO / "experiments" / "lspet_split")
    assert inside == {s: f"experiments/lspet_split/{s}.txt" for s in ("train", "val", "test")}
    outside = bench.split_files(tmp_path / "my_split")
    assert outside == {s: str((tmp_path / "my_split" / f"{s}.txt").resolve()) for s in ("train", "val", "test")}
    # the way the benchmark builds it from a config: the checkout joined with a relative path that leaves it
    up = bench.ROOT / ".." / tmp_path.name / "x"
    assert bench.split_files(up)["val"] == str((REPO.parent / tmp_path.name / "x" / "val.txt").resolve())


def test_shown_path(tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from _paths import shown_path
    finally:
        sys.path.remove(str(REPO / "bench"))
    assert shown_path(REPO / "a" / ".." / "b.txt", REPO) == "b.txt"
    assert shown_path(tmp_path / "c.txt", REPO) == str(tmp_path.resolve() / "c.txt")


def test_the_loop_rounds_chart_is_drawn_only_for_experiments_with_rounds(tmp_path):
    bench = _benchmark()
    arms = [{"name": "zero-shot", "kind": "zero_shot"}, {"name": "real-only", "kind": "train"},
            {"name": "real-only-2N", "kind": "train", "reference": True},
            {"name": "loop-round-1", "kind": "loop", "round": 1}]
    table = [{"arm": a, "seeds": 1, "AP50": v, "PCK@0.2": v} for a, v in
             (("zero-shot", 0.3), ("real-only", 0.4), ("real-only-2N", 0.45), ("loop-round-1", 0.42))]
    summary = {"table": table, "gap_closed": [],
               "comparisons": [{"arm": "loop-round-1", "metric": m, "mean_diff": 0.02, "ci": [-0.01, 0.05]}
                               for m in ("AP50", "PCK@0.2")]}
    runs = [{"arm": "loop-round-1", "status": "done", "result": {"loop": {"synthetic": 150}}}]
    png = tmp_path / "rounds.png"
    assert bench.save_rounds_png(summary, {"arms": arms}, runs, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # the picture and the Results page's chart draw the same series: round 1 at 0.42, its bar from real-only
    # 0.40 - 0.01 to 0.40 + 0.05; the reference and the untouched model as lines
    from engine.report import loop_rounds_figure, loop_rounds_series

    ap50 = loop_rounds_series(summary, {"arms": arms}, runs)[0]
    assert ap50["rounds"] == [0, 1] and ap50["means"] == [0.4, 0.42]
    assert ap50["below"][1] == pytest.approx(0.03) and ap50["above"][1] == pytest.approx(0.03)
    assert ap50["lines"] == [("real-only-2N", 0.45), ("zero-shot", 0.3)]
    fig = loop_rounds_figure(summary, {"arms": arms}, runs)
    assert list(fig.data[0].y) == [0.4, 0.42] and list(fig.data[0].error_y.array) == ap50["above"]
    assert not bench.save_rounds_png(summary, {"arms": arms[:3]}, runs, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_the_ap50_anatomy_tells_finding_from_ranking():
    """One labelled person and three detections on it: a good one, a second good one (a duplicate) and a more
    confident one with every joint misplaced: the person is found, its most confident detection is not good, one
    duplicate and one misplaced false positive, and the true positive outranks half of the false positives."""
    spec = importlib.util.spec_from_file_location("ap50_anatomy", REPO / "bench" / "ap50_anatomy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    xy = [(50 + 10 * (i % 3), 20 + 12 * i) for i in range(17)]
    kp = [v for x, y in xy for v in (x, y, 2)]
    person = {"id": 7, "image_id": 1, "keypoints": kp, "num_keypoints": 17, "area": 60 * 220, "iscrowd": 0,
              "bbox": [40, 10, 60, 220]}
    shifted = [v + (25 if i % 3 == 0 else 0) for i, v in enumerate(kp)]
    dets = [{"image_id": 1, "score": 0.9, "keypoints": kp, "box": [40, 10, 60, 220]},
            {"image_id": 1, "score": 0.8, "keypoints": kp, "box": [42, 12, 58, 215]},
            {"image_id": 1, "score": 0.95, "keypoints": shifted, "box": [40, 10, 60, 220]}]
    a = mod.anatomy({"gt": {"images": [{"id": 1}], "annotations": [person], "categories": []}, "dets": dets,
                     "protocol": "annotated_person"})
    assert (a["found"], a["top good"], a["scored per person"]) == (1.0, 0.0, 3.0)
    assert (a["false positives per person"], a["duplicates per person"], a["misplaced per person"]) == (2.0, 1.0, 1.0)
    assert a["score AUC"] == 0.5
