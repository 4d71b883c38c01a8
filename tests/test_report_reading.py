"""The report's reading aids: steps said truthfully, verdicts grouped per comparison, no raw None, whole epochs."""
import pytest

from engine import report


def _run(arm, seed, steps, epochs):
    return {"arm": arm, "seed": seed, "result": {"steps": steps, "epochs": epochs}}


def test_steps_note_says_within_rounding_with_the_figures():
    runs = [_run("zero-shot", 0, None, None), _run("real-only", 0, 3, 1), _run("mixed", 0, 4, 1)]
    text = report.steps_note(runs)
    assert text.startswith("Optimizer steps matched to real-only within rounding") and "3" in text and "3-4" in text


def test_steps_note_says_not_matched_when_an_arm_is_more_than_an_epoch_away():
    runs = [_run("real-only", 0, 100, 10), _run("mixed", 0, 400, 10)]
    text = report.steps_note(runs)
    assert text.startswith("Optimizer steps NOT matched") and "mixed seed 0: 400 vs 100" in text
    assert report.steps_note([_run("real-only", 0, 50, 5), _run("b", 0, 50, 2)]).endswith("exactly: 50 per run.")
    assert "Steps not matched" in report.steps_note(runs, step_matching=False)
    # a run too short for one optimizer step is still a trained run
    assert report.steps_note([_run("real-only", 0, 0, 1), _run("b", 0, 0, 1)]).endswith("exactly: 0 per run.")
    assert report.steps_note([_run("zero-shot", 0, None, None)]).startswith("No arm was trained")


def _c(arm, metric, diff, lo, hi, p=0.01):
    return {"arm": arm, "baseline": "real-only", "metric": metric, "mean_diff": diff, "ci": [lo, hi], "p_holm": p}


def test_grouped_verdicts_put_metrics_side_by_side_and_say_when_they_disagree():
    rows = report.grouped_verdicts([
        _c("zero-shot", "AP50", 0.023, -0.012, 0.055, 0.6), _c("zero-shot", "PCK@0.2", -0.003, -0.017, 0.011, 0.8),
        _c("zero-shot", "per-person OKS", -0.016, -0.028, -0.004, 0.03),
        _c("mixed", "AP50", -0.05, -0.09, -0.02), _c("mixed", "PCK@0.2", -0.03, -0.04, -0.01),
        _c("flat", "AP50", 0.01, -0.01, 0.03, 0.5), _c("flat", "PCK@0.2", -0.01, -0.03, 0.01, 0.5),
        _c("half", "AP50", -0.02, -0.05, 0.01, 0.2), _c("half", "PCK@0.2", -0.03, -0.04, -0.01)])
    by = {r["arm"]: r for r in rows}
    assert list(by) == ["zero-shot", "mixed", "flat", "half"]
    z = by["zero-shot"]
    assert z["AP50"] == "+0.023 [-0.012, +0.055] within noise" and z["per-person OKS"].endswith("worse")
    assert not z["metrics agree"] and z["reading"].startswith("The metrics disagree")
    assert "AP50 +0.023" in z["reading"] and "per-person OKS -0.016 (worse)" in z["reading"]
    assert by["mixed"]["metrics agree"] and "worse than real-only on every metric" in by["mixed"]["reading"]
    assert not by["flat"]["metrics agree"] and "none beyond the noise" in by["flat"]["reading"]
    assert by["half"]["reading"].startswith("The metrics agree in direction")


def test_display_rows_show_a_dash_for_missing_values():
    rows = report.display_rows([{"arm": "real-only", "AP50 - real-only": None, "AP50": 0.123456, "CI": ""}])
    assert rows == [{"arm": "real-only", "AP50 - real-only": "—", "AP50": 0.1235, "CI": "—"}]


def test_learning_curves_have_whole_epoch_ticks_and_a_legend_for_every_run():
    curves = [(f"arm{i} s0", [{"epoch": 1.0, "metrics/mAP50(P)": 0.1}, {"epoch": 2.0, "metrics/mAP50(P)": 0.2}])
              for i in range(9)]
    fig = report.learning_curves_figure(curves)
    assert len(fig.data) == 9 and fig.layout.legend.orientation == "h"
    assert fig.layout.xaxis.dtick == 1 and fig.layout.xaxis.tickmode == "linear"
    assert all(x == int(x) for d in fig.data for x in d.x)
    assert len({d.line.color for d in fig.data}) == 9


def test_report_starts_with_the_summary_and_groups_verdicts(tmp_path):
    summary = {"headline": "Compared 2 arms.", "flags": [], "steps": "matched to real-only", "protocol": "coco",
               "codes": ["abc"], "sizes": {"test images": 20}, "seeds": [0],
               "table": [{"arm": "real-only", "AP50": 0.3, "AP50 - real-only": None},
                         {"arm": "mixed", "AP50": 0.2, "AP50 - real-only": -0.1}],
               "comparisons": [{**_c("mixed", "AP50", -0.1, -0.2, -0.05), "n": 20, "n_boot": 100, "seeds": 1,
                                "verdict": "worse.",
                                "per_seed": [{"seed": 0, "diff": -0.1}]},
                               {**_c("mixed", "PCK@0.2", 0.02, 0.01, 0.03), "n": 20, "n_boot": 100, "seeds": 1,
                                "verdict": "better.",
                                "per_seed": [{"seed": 0, "diff": 0.02}]}],
               "per_seed": [{"seed": 0, "arm": "mixed", "test AP50": 0.2}]}
    runs = [{"arm": "real-only", "seed": 0, "training_run_id": None,
             "result": {"steps": 3, "epochs": 1, "manifest_hash": "0" * 64, "train_images": 10, "seconds": 1.0,
                        "test": {"AP50": 0.3}, "val": {}}},
            {"arm": "mixed", "seed": 0, "training_run_id": None,
             "result": {"steps": 4, "epochs": 1, "manifest_hash": "0" * 64, "train_images": 20, "seconds": 1.0,
                        "test": {"AP50": 0.2}, "val": {}}}]
    curves = [("real-only s0", [{"epoch": 1.0, "metrics/mAP50(P)": 0.1}, {"epoch": 2.0, "metrics/mAP50(P)": 0.2}])]
    out = report.write_report(tmp_path, {"name": "t", "config": {"step_matching": True}}, summary, runs,
                              curves=curves)
    md = open(out["markdown"]).read()
    lines = md.splitlines()
    assert lines[2] == "Compared 2 arms." and lines[4].startswith("- Date: 20") and "- Code: abc" in md
    assert "- Test images: 20" in md and "within rounding" in md
    assert "None" not in md.split("## Configuration")[0] and "| — |" in md and report.MISSING_NOTE in md
    assert "| mixed | -0.100 [-0.200, -0.050] worse | +0.020 [+0.010, +0.030] better |" in md
    assert "The metrics disagree" in md
    assert md.index("## Per seed") < md.index("<details><summary>Every arm x seed")
    page = open(out["html"]).read()
    assert page.index("class='summary'") < page.index("<table>")
    assert "<details><summary>Every arm x seed" in page and "The metrics disagree" in page
    assert "Learning curves" in page and '"dtick":1' in page.replace(" ", "")


def test_loop_rounds_read_as_one_curve_with_intervals_and_gap_shares():
    config = {"arms": [{"name": "zero-shot", "kind": "zero_shot"}, {"name": "real-only", "kind": "train"},
                       {"name": "real-only-2N", "kind": "train", "reference": True},
                       {"name": "loop-round-2", "kind": "loop", "round": 2},
                       {"name": "loop-round-1", "kind": "loop", "round": 1}]}
    table = [{"arm": a, "seeds": 2, "AP50": v, "PCK@0.2": v / 2, "val AP50": v + 0.1}
             for a, v in (("zero-shot", 0.30), ("real-only", 0.40), ("real-only-2N", 0.46),
                          ("loop-round-1", 0.43), ("loop-round-2", 0.41))]
    comparisons = [{"arm": a, "metric": m, "mean_diff": d, "ci": [d - 0.02, d + 0.02]}
                   for a, d in (("loop-round-1", 0.03), ("loop-round-2", 0.01)) for m in ("AP50", "PCK@0.2")]
    gap = [{"arm": "loop-round-1", "metric": "AP50", "fraction": 0.5, "ci": [0.1, 0.9]},
           {"arm": "loop-round-2", "metric": "AP50", "fraction": None, "ci": None}]
    runs = [{"arm": "loop-round-1", "status": "done", "result": {"loop": {"synthetic": n}}} for n in (150, 151)]
    runs += [{"arm": "loop-round-2", "status": "done", "result": {"loop": {"synthetic": 300}}}]
    summary = {"table": table, "comparisons": comparisons, "gap_closed": gap}
    rows = report.loop_rounds(summary, config, runs)
    assert [(r["round"], r["arm"]) for r in rows] == [(0, "real-only"), (1, "loop-round-1"), (2, "loop-round-2")]
    assert [r["synthetic images"] for r in rows] == [0, 150.5, 300]
    assert rows[0]["AP50 - real-only"] is None and rows[1]["AP50 - real-only"] == "+0.030 [+0.010, +0.050]"
    assert rows[1]["AP50 gap closed"] == "+0.50 [+0.10, +0.90]" and rows[2]["AP50 gap closed"] is None
    fig = report.loop_rounds_figure(summary, config, runs)
    names = [t.name for t in fig.data]
    assert names.count("loop rounds") == 2 and "real-only-2N" in names and "zero-shot" in names
    ap = next(t for t in fig.data if t.name == "loop rounds")
    assert list(ap.x) == [0, 1, 2] and list(ap.y) == [0.40, 0.43, 0.41]
    assert ap.error_y.array[1] == pytest.approx(0.40 + 0.05 - 0.43)      # real-only + the interval's top
    assert report.loop_rounds(summary, {"arms": config["arms"][:3]}, runs) == []
