"""The LSPET benchmark names its split files in the report: relative inside the checkout, absolute outside
(a split folder outside the repository crashed the run after the experiment finished, losing its report)."""
import importlib.util
import sys
from pathlib import Path

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
