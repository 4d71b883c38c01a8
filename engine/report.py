"""The experiment report: Markdown and a self-contained HTML page (tables, verdicts, a chart)."""
from __future__ import annotations

import html
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any


def _fmt(v: Any) -> str:
    if v is None or v == "":
        return "—"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1 else f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def _ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def _finite(x) -> bool:
    try:
        return x is not None and float(x) == float(x) and abs(float(x)) != float("inf")
    except (TypeError, ValueError):
        return False


def _md_table(rows: list[dict], keys: list[str]) -> list[str]:
    return (["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            + ["| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |" for r in rows])


def _html_table(rows: list[dict], keys: list[str]) -> str:
    return ("<table><tr>" + "".join(f"<th>{html.escape(k)}</th>" for k in keys) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(k)))}</td>" for k in keys) + "</tr>"
                      for r in rows) + "</table>")


def _comparison_line(c: dict) -> str:
    seeds = c.get("seeds", 0)
    per_seed = ", ".join(f"seed {d['seed']} {d['diff']:+.3f}" for d in c.get("per_seed") or [])
    return (f"- {c['verdict']} ({seeds} seed{'' if seeds == 1 else 's'} x {c['n']} {c.get('split', 'test')} images, "
            f"{c.get('n_boot')} resamples, {c.get('method', 'bootstrap')}"
            + (f"; per seed: {per_seed}" if per_seed else "") + ")")


_ap50_line = _comparison_line


def _run_rows(runs: list[dict]) -> list[dict]:
    from engine import provenance

    out = []
    for r in runs:
        res = r["result"]
        out.append({"arm": r["arm"], "seed": r["seed"], "manifest": res["manifest_hash"][:12],
                    "train images": res["train_images"], "steps": res.get("steps"),
                    "test AP50 [95% CI]": f"{_fmt(res['test'].get('AP50'))} {_ci(res['test'].get('AP50_ci'))}".strip(),
                    "test PCK@0.2": res["test"].get("PCK@0.2"), "val AP50": res["val"].get("AP50"),
                    "val PCK@0.2": res["val"].get("PCK@0.2"), "seconds": res["seconds"],
                    "code": provenance.describe(res.get("code")),
                    # a run taken from a ledger trained in another workspace (another machine, perhaps)
                    "source": (f"ledger ({str((res.get('ledger') or {}).get('written') or '')[:10]})"
                               if res.get("ledger") else "this workspace")})
    return out


def trained_on(runs: list[dict]) -> str:
    """Where the runs trained, with how many each (runs of one experiment may come from several machines through
    a ledger; float results can differ between CPU kinds and on a GPU)."""
    counts: dict[str, int] = {}
    for r in runs:
        m = (r.get("result") or {}).get("machine") or {}
        if not m:
            key = "not recorded"
        else:
            key = m.get("cuda") or f"{m.get('cpu') or 'unknown CPU'} ({m.get('cores')} cores)"
        counts[key] = counts.get(key, 0) + 1
    return "; ".join(f"{k}: {n} run(s)" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _schedules(runs: list[dict]) -> dict[str, str]:
    """Per arm, the schedule of its first run (the stages, their epochs, steps and learning rates)."""
    out: dict[str, str] = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
        text = (r.get("result") or {}).get("schedule")
        if text and r["arm"] not in out:
            out[r["arm"]] = f"{text} (seed {r['seed']})"
    return out


COLS = ["arm", "seeds", "AP", "AP50", "AP50 - real-only", "95% CI", "PCK@0.2", "PCK@0.2 - real-only", "PCK 95% CI",
        "mean OKS", "val AP50", "val PCK@0.2", "steps", "seconds per run", "seconds (all seeds)"]


def _protocol_text(name: str) -> str:
    from engine.train import protocols

    return f"{name}: {protocols.PROTOCOLS[name]}" if name in protocols.PROTOCOLS else name


def _verdict_table(grouped: list[dict]) -> tuple[list[dict], list[str]]:
    keys = ["arm"] + [m for m in METRIC_ORDER if any(m in g for g in grouped)] + ["reading"]
    return grouped, keys


def write_report(out: Path, experiment: dict, summary: dict, runs: list[dict], cost: dict | None = None,
                 extra: dict | None = None, curves: list[tuple[str, list[dict]]] | None = None) -> dict[str, str]:
    """report.md and report.html: the summary paragraph first (what was compared, the verdict, the protocol), the
    date, code versions and split sizes, then the table, the verdicts grouped per comparison with the metrics side by
    side, charts, and the per-seed detail folded away. ``curves``: (run name, per-epoch rows) for the learning
    curves chart."""
    import time

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    versions = {p: metadata.version(p) for p in ("ultralytics", "torch", "numpy", "pycocotools")}
    machine = f"{platform.machine()}, Python {platform.python_version()}, {platform.platform()}"
    run_rows = _run_rows(runs)
    run_keys = list(run_rows[0]) if run_rows else []
    per_joint = summary.get("per_joint") or []
    joint_keys = list(per_joint[0]) if per_joint else []
    per_seed = summary.get("per_seed") or []
    seed_keys = list(per_seed[0]) if per_seed else []
    date = time.strftime("%Y-%m-%d")
    sizes = summary.get("sizes") or {}
    codes = summary.get("codes") or []
    steps_text = steps_note(runs, bool(experiment.get("config", {}).get("step_matching", True)))
    grouped = grouped_verdicts(summary["comparisons"])
    verdict_rows, verdict_keys = _verdict_table(grouped)
    made = str(experiment.get("created_at") or "")[:10]
    facts = [("Date", f"{made} (experiment started); report written {date}" if made and made != date else date),
             ("Code", "; ".join(codes) or "n/a"), ("Trained on", trained_on(runs) or "n/a"),
             ("Protocol", _protocol_text(summary.get("protocol", "n/a"))),
             ("Seeds", ", ".join(map(str, summary.get("seeds") or []))), ("Steps", steps_text),
             *[(k[0].upper() + k[1:], v) for k, v in sizes.items()]]
    md = [f"# Experiment: {experiment['name']}", "", summary.get("headline", ""), ""]
    md += [f"- {k}: {_fmt(v)}" for k, v in facts] + [""]
    for f in summary["flags"]:
        md += [f"> **Warning:** {f}", ""]
    md += _md_table(summary["table"], COLS) + ["", MISSING_NOTE]
    schedules = _schedules(runs)
    if schedules:
        md += ["", "## Schedules", "", "Arms not trained on one flat union of real and synthetic images (steps: "
               "optimizer steps of all stages together):", ""]
        md += [f"- {arm}: {text}" for arm, text in schedules.items()]
    md += ["", "Differences with real-only: two-stage bootstrap (seeds with replacement, then the same test images "
           "for both arms), 95% percentile interval. Seconds: wall time of the arm's runs (training + evaluation on "
           "val and test).", ""]
    gate = summary.get("val_gate") or []
    if gate:
        n_pass = sum(g["beats zero-shot on"] != "neither" for g in gate)
        md += ["## Val gate", "", f"Comparisons count only when real-only beats zero-shot on val AP50 or PCK@0.2 "
               f"(means over seeds; the warning above says when they do not). Per seed: real-only beats zero-shot "
               f"in {n_pass} of {len(gate)}.", ""] + _md_table(gate, list(gate[0])) + [""]
        md += [_comparison_line(c) for c in summary.get("val_gate_intervals") or []] + [""]
    md += ["## Verdicts", "", "Each arm against real-only on test AP50, PCK@0.2 and per-person OKS side by side: "
           "difference, 95% interval (two-stage bootstrap, Holm-adjusted across these comparisons) and direction; "
           "the reading says when the metrics disagree.", ""]
    if grouped:
        md += _md_table(verdict_rows, verdict_keys)
    else:
        md.append("- No comparison: the experiment has no arm besides the baseline.")
    if summary["comparisons"]:
        md += ["", "<details><summary>Every comparison in full, with each seed's own difference</summary>", ""]
        md += [_comparison_line(c) for c in summary["comparisons"]] + ["", "</details>"]
    if summary.get("ablation"):
        md += ["", "Curation ablation at matched volume (curated minus random / unfiltered, same real and synthetic "
               "counts):", ""]
        md += [_comparison_line(c) for c in summary["ablation"]]
    if summary.get("contrasts"):
        md += ["", "## Declared contrasts", "", "The pairs the experiment file lists under `contrasts` (arm minus "
               "other arm; two-stage bootstrap, Holm-adjusted across these):", ""]
        md += [_comparison_line(c) for c in summary["contrasts"]]
    if summary.get("contrasts_waiting"):
        md += ["", "Declared contrasts not compared yet:", ""] + [f"- {x}" for x in summary["contrasts_waiting"]]
    if summary.get("gap_closed"):
        md += ["", "## Gap closed", "", "The share of the gap between real-only and the reference arm (more real "
               "images) that each arm closes: (arm - real-only) / (reference - real-only), means over seeds, 95% "
               "interval from the same two-stage resamples:", ""]
        md += [f"- {c['verdict']}" for c in summary["gap_closed"]]
    rounds = loop_rounds(summary, experiment.get("config") or {}, runs)
    if rounds:
        md += ["", "## Loop rounds", "", "Round 0 is real-only (the loop's first student); each later round adds "
               "images generated around the student's mined failures and chosen with its signals. Means over seeds; "
               "differences and gap shares with two-stage 95% intervals (the chart is in report.html):", ""]
        md += _md_table(display_rows(rounds), list(rounds[0]))
        short = loop_shortfalls(runs)
        if short:
            md += ["", "**Rounds that added fewer images than asked** (not at matched volume):", ""]
            md += [f"- {x}" for x in short]
    md += ["", "## Noise floor", ""]
    if summary.get("noise_floor"):
        md += ["Arms that are equal in expectation (an arm and its replica with other training noise; random and "
               "unfiltered synthetic images before curation). A difference smaller than these is not a finding:", ""]
        md += [_comparison_line(c) for c in summary["noise_floor"]]
    else:
        md.append("- Not measured: the experiment has no A/A pair (add an arm with `replica: 1`).")
    md += ["", "## Human cost", ""]
    if cost and cost.get("decisions"):
        md.append(f"- Review: {cost['decisions']} decisions, {_fmt(cost.get('seconds_per_accepted_image'))} s "
                  f"per accepted image.")
    else:
        md.append("- No review data.")
    if per_seed:
        md += ["", "## Per seed", "", "<details><summary>Every arm x seed (test and val)</summary>", ""]
        md += _md_table(per_seed, seed_keys) + ["", "</details>"]
    if per_joint:
        md += ["", "## Test PCK@0.2 per joint (mean over seeds)", ""] + _md_table(per_joint, joint_keys)
    for title, value in (extra or {}).items():
        md += ["", f"## {title[0].upper()}{title[1:]}", ""]
        if isinstance(value, dict):
            md += [f"- {k}: {_fmt(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            md += _md_table(value, list(value[0]))
        else:
            md.append(_fmt(value))
    md += ["", "## Configuration", "", "```json", json.dumps(experiment["config"], indent=2), "```", "",
           f"Machine: {machine}", "", "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    md += ["## Runs", ""] + _md_table(run_rows, run_keys)
    (out / "report.md").write_text("\n".join(md) + "\n")

    import numpy as np
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in summary["table"]:
        per = [x["result"]["test"].get("AP50") for x in runs if x["arm"] == r["arm"]]
        per = [x for x in per if x is not None]
        fig.add_bar(name=r["arm"], x=[r["arm"]], y=[r["AP50"]],
                    error_y={"type": "data", "array": [float(np.std(per))]} if len(per) > 1 else None)
    fig.update_layout(title="Test AP50 per arm (mean over seeds, error bar = SD over seeds)", showlegend=False,
                      colorway=PALETTE)
    figs = [fig]
    for metric in ("AP50", "PCK@0.2"):
        deltas = [c for c in summary["comparisons"]
                  if c["metric"] == metric and c.get("ci") and all(map(_finite, c["ci"]))]
        if not deltas:
            continue
        dfig = go.Figure()
        dfig.add_scatter(x=[c["mean_diff"] for c in deltas], y=[c["arm"] for c in deltas], mode="markers",
                         name="all seeds", error_x={"type": "data", "symmetric": False,
                                                    "array": [c["ci"][1] - c["mean_diff"] for c in deltas],
                                                    "arrayminus": [c["mean_diff"] - c["ci"][0] for c in deltas]})
        dfig.add_scatter(x=[d["diff"] for c in deltas for d in c.get("per_seed") or []],
                         y=[c["arm"] for c in deltas for _ in c.get("per_seed") or []], mode="markers",
                         marker={"symbol": "line-ns-open", "size": 12}, name="one seed")
        dfig.add_vline(x=0, line_dash="dash")
        dfig.update_layout(title=f"Test {metric} minus real-only (two-stage bootstrap, 95% CI; ticks: single seeds)",
                           xaxis_title=f"{metric} difference", colorway=PALETTE)
        legend_below(dfig, 2, base_height=160 + 40 * len(deltas))
        dfig.update_layout(margin={"l": 170})
        figs.append(dfig)
    if curves:
        figs.append(learning_curves_figure(curves))

    def html_extra(title: str, value: Any) -> str:
        head = f"<h2>{html.escape(title[0].upper() + title[1:])}</h2>"
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return head + _html_table(value, list(value[0]))
        if isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values()):
            return head + "<ul>" + "".join(f"<li>{html.escape(str(k))}: {html.escape(_fmt(v))}</li>"
                                           for k, v in value.items()) + "</ul>"
        return head + f"<pre>{html.escape(json.dumps(value, indent=2, default=str))}</pre>"

    def items(cs: list[dict]) -> list[str]:
        return [f"<li>{html.escape(_comparison_line(c)[2:])}</li>" for c in cs]

    page = ["<!doctype html><html><head><meta charset='utf-8'><title>realcal experiment</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px}table{display:block;overflow-x:auto;max-width:100%}"
            ".summary{font-size:1.1em;background:#f4f6fa;padding:1em}"
            "</style></head><body>",
            f"<h1>Experiment: {html.escape(experiment['name'])}</h1>",
            f"<p class='summary'>{html.escape(summary.get('headline', ''))}</p>",
            "<ul>" + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(_fmt(v))}</li>" for k, v in facts) + "</ul>"]
    page += [f"<p><b>Warning:</b> {html.escape(f)}</p>" for f in summary["flags"]]
    page += [_html_table(summary["table"], COLS), f"<p><small>{html.escape(MISSING_NOTE)}</small></p>"]
    if schedules:
        page += ["<h2>Schedules</h2><ul>", *[f"<li><b>{html.escape(arm)}</b>: {html.escape(text)}</li>"
                                            for arm, text in schedules.items()], "</ul>"]
    if gate:
        page += ["<h2>Val gate</h2><p>Comparisons count only when real-only beats zero-shot on val AP50 or "
                 "PCK@0.2 (means over seeds).</p>", _html_table(gate, list(gate[0])),
                 "<ul>", *items(summary.get("val_gate_intervals") or []), "</ul>"]
    page += ["<h2>Verdicts</h2><p>Each arm against real-only, the metrics side by side (difference, 95% interval, "
             "direction); the reading says when they disagree.</p>",
             _html_table(verdict_rows, verdict_keys) if grouped
             else "<p>No comparison: no arm besides the baseline.</p>"]
    if summary["comparisons"]:
        page += ["<details><summary>Every comparison in full, with each seed's own difference</summary><ul>",
                 *items(summary["comparisons"]), "</ul></details>"]
    if summary.get("ablation"):
        page += ["<h3>Curation ablation at matched volume</h3><ul>", *items(summary["ablation"]), "</ul>"]
    if summary.get("contrasts"):
        page += ["<h2>Declared contrasts</h2><p>The pairs the experiment file lists (arm minus other arm; two-stage "
                 "bootstrap, Holm-adjusted across these).</p><ul>", *items(summary["contrasts"]), "</ul>"]
    if summary.get("contrasts_waiting"):
        page += ["<p>Declared contrasts not compared yet:</p><ul>",
                 *(f"<li>{html.escape(x)}</li>" for x in summary["contrasts_waiting"]), "</ul>"]
    if summary.get("gap_closed"):
        page += ["<h2>Gap closed</h2><p>(arm - real-only) / (reference - real-only), means over seeds, 95% interval "
                 "from the same two-stage resamples.</p><ul>",
                 *[f"<li>{html.escape(c['verdict'])}</li>" for c in summary["gap_closed"]], "</ul>"]
    if rounds:
        page += ["<h2>Loop rounds</h2><p>Round 0 is real-only (the loop's first student); each later round adds "
                 "images generated around the student's mined failures and chosen with its signals.</p>",
                 _html_table(display_rows(rounds), list(rounds[0]))]
        rfig = loop_rounds_figure(summary, experiment.get("config") or {}, runs)
        if rfig is not None:
            figs.append(rfig)
    page += ["<h2>Noise floor</h2>", ("<ul>" + "".join(items(summary["noise_floor"])) + "</ul>"
                                       if summary.get("noise_floor") else "<p>Not measured (no A/A pair).</p>")]
    page += [f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs)]
    if per_seed:
        page += ["<h2>Per seed</h2><details><summary>Every arm x seed (test and val)</summary>",
                 _html_table(per_seed, seed_keys), "</details>"]
    page += [*([html_extra("Test PCK@0.2 per joint (mean over seeds)", per_joint)] if per_joint else []),
             *[html_extra(t, v) for t, v in (extra or {}).items()],
             "<details><summary>Runs</summary>", _html_table(run_rows, run_keys), "</details>",
             f"<h2>Configuration</h2><pre>{html.escape(json.dumps(experiment['config'], indent=2))}</pre>",
             f"<p>Machine: {html.escape(machine)}<br>Versions: {html.escape(json.dumps(versions))}</p></body></html>"]
    (out / "report.html").write_text("\n".join(page))
    return {"markdown": str(out / "report.md"), "html": str(out / "report.html")}


def write_experiment_report(ws, out: Path, name: str | None = None, extra_fn=None) -> dict[str, Any]:
    """Load an experiment (by name, else the latest), summarise it and write its report.

    ``extra_fn(experiment) -> dict`` adds sections. Returns the paths plus the experiment, its
    runs and summary (for callers that print them). Raises when there is no such experiment."""
    from engine import review
    from engine.errors import RealcalError
    from engine.experiment import comparisons_of, summarise
    from store import training as store_training

    with ws.connect() as db:
        exp = store_training.experiment_by_name(db, name) if name else store_training.latest_experiment(db)
        if exp is None:
            raise RealcalError(f"no experiment {name!r}" if name else
                               "no experiment yet: `realcal experiment run exp.yaml`")
        runs = store_training.experiment_runs(db, exp["id"])
        cost = review.stats(db)
        curves = run_curves(db, runs)
    summary = summarise(runs, exp["config"], comparisons_of(ws, exp, runs))
    extra = extra_fn(exp) if extra_fn else None
    paths = write_report(out, exp, summary, runs, cost, extra=extra, curves=curves)
    return {**paths, "experiment": exp, "runs": runs, "summary": summary}


def loop_rounds(summary: dict, config: dict, runs: list[dict]) -> list[dict]:
    """An experiment's loop arms as rounds of one curve: round 0 is real-only (the loop's first student), then each
    loop arm by its round, with the synthetic images its runs trained on (mean over seeds), val and test figures,
    the difference from real-only and the share of the N -> 2N gap closed (when the experiment has a reference
    arm), both with their two-stage 95 % intervals. Empty when the experiment has no loop arm."""
    arms = config.get("arms") or []
    loops = sorted((a for a in arms if a.get("kind") == "loop"), key=lambda a: a["round"])
    if not loops:
        return []
    table = {r["arm"]: r for r in summary["table"]}
    comp = {(c["arm"], c["metric"]): c for c in summary["comparisons"]}
    gap = {(c["arm"], c["metric"]): c for c in summary.get("gap_closed") or []}

    def synthetic(name: str) -> float | int | None:
        n = [((r["result"] or {}).get("loop") or {}).get("synthetic") for r in runs
             if r["arm"] == name and r.get("status", "done") == "done" and r.get("result")]
        counts = [float(x) for x in n if x is not None]
        if not counts:
            return 0 if name == "real-only" else None
        mean = sum(counts) / len(counts)
        return int(mean) if float(mean).is_integer() else round(mean, 1)

    out = []
    for rnd, name in [(0, "real-only")] + [(a["round"], a["name"]) for a in loops]:
        r = table.get(name)
        if r is None:
            continue
        row: dict[str, Any] = {"round": rnd, "arm": name, "seeds": r["seeds"], "synthetic images": synthetic(name),
                               "val AP50": r.get("val AP50"), "test AP50": r.get("AP50"),
                               "test PCK@0.2": r.get("PCK@0.2")}
        for metric in ("AP50", "PCK@0.2"):
            c, g = comp.get((name, metric)), gap.get((name, metric))
            row[f"{metric} - real-only"] = (f"{c['mean_diff']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]"
                                            if c and c.get("ci")
                                            and all(map(_finite, c["ci"])) else None)
            if gap:
                row[f"{metric} gap closed"] = (f"{g['fraction']:+.2f} {_ci_frac(g['ci'])}" if g and
                                               g.get("fraction") is not None else None)
        out.append(row)
    return out


def _ci_frac(ci) -> str:
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci and all(map(_finite, ci)) else ""


def loop_shortfalls(runs: list[dict]) -> list[str]:
    """The loop arms' runs whose round added fewer images than ``add_per_round`` (too few survived curation), as
    ``arm seed s: why`` lines; empty when every round was filled."""
    out = []
    for r in sorted(runs, key=lambda r: (r["arm"], r["seed"])):
        short = ((r.get("result") or {}).get("loop") or {}).get("short")
        if short and r.get("status", "done") == "done":
            out.append(f"{r['arm']} seed {r['seed']}: {short}")
    return out


def loop_rounds_series(summary: dict, config: dict, runs: list[dict]) -> list[dict] | None:
    """What the loop rounds charts draw, per metric (test AP50, PCK@0.2): the rounds (0 = real-only), their means
    over seeds, the error bars (real-only plus the 95 % interval of the round's difference from it, as distances
    below and above the mean; 0 where there is no interval) and the reference arm's and the untouched model's
    figures as lines. None when there are fewer than two rounds to draw."""
    rows = loop_rounds(summary, config, runs)
    if len(rows) < 2:
        return None
    table = {r["arm"]: r for r in summary["table"]}
    comp = {(c["arm"], c["metric"]): c for c in summary["comparisons"]}
    ref = next((a["name"] for a in config.get("arms") or [] if a.get("reference")), None)
    base = table.get("real-only") or {}
    out = []
    for metric in ("AP50", "PCK@0.2"):
        ys = [table[r["arm"]].get(metric) for r in rows]
        below, above = [], []
        for r, y in zip(rows, ys):
            ci = (comp.get((r["arm"], metric)) or {}).get("ci")
            if ci and all(map(_finite, ci)) and base.get(metric) is not None and y is not None:
                below.append(y - base[metric] - ci[0])
                above.append(base[metric] + ci[1] - y)
            else:
                below.append(0)
                above.append(0)
        lines = [(name, (table.get(name) or {}).get(metric)) for name in (ref, "zero-shot") if name]
        out.append({"metric": metric, "rounds": [r["round"] for r in rows], "means": ys, "below": below,
                    "above": above, "lines": [(n, v) for n, v in lines if v is not None], "reference": ref})
    return out


def loop_rounds_figure(summary: dict, config: dict, runs: list[dict]):
    """Test AP50 and PCK@0.2 per loop round (round 0 = real-only; mean over seeds, bars = real-only plus the 95 %
    interval of the round's difference from it), with the reference arm (2N) and the untouched model as lines."""
    from plotly.subplots import make_subplots

    series = loop_rounds_series(summary, config, runs)
    if series is None:
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test AP50", "test PCK@0.2"))
    for col, s in enumerate(series, start=1):
        xs = s["rounds"]
        fig.add_scatter(x=xs, y=s["means"], mode="lines+markers", name="loop rounds", showlegend=col == 1,
                        line={"color": PALETTE[0]},
                        error_y={"type": "data", "symmetric": False, "array": s["above"], "arrayminus": s["below"]},
                        row=1, col=col)
        for name, v in s["lines"]:
            colour, dash = (PALETTE[2], "dash") if name == s["reference"] else (PALETTE[3], "dot")
            fig.add_scatter(x=[min(xs), max(xs)], y=[v, v], mode="lines", name=name, showlegend=col == 1,
                            line={"color": colour, "dash": dash}, row=1, col=col)
        fig.update_xaxes(title_text="round (0 = real-only)", dtick=1, row=1, col=col)
    fig.update_layout(title="Loop rounds: test figures per round (mean over seeds; bars: 95% interval of the "
                            "difference from real-only)", height=420, legend={"orientation": "h", "y": -0.25})
    return fig


# ----------------------------------------------------------------------------- shared by the report and the page

DASH = "—"
MISSING_NOTE = "— : not applicable (the baseline has no difference with itself; zero-shot trains no steps)"
METRIC_ORDER = ("AP50", "PCK@0.2", "per-person OKS")
# distinct hues (Okabe-Ito, colour-blind safe, then Tableau): never two near-identical blues side by side
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
           "#8C564B", "#7F7F7F", "#BCBD22", "#17BECF"]


def display_rows(rows: list[dict], keys: list[str] | None = None) -> list[dict]:
    """Rows for a table a person reads: None becomes a dash (explained by :data:`MISSING_NOTE`), floats are rounded."""
    out = []
    for r in rows:
        keys_ = keys or list(r)
        out.append({k: DASH if r.get(k) is None or r.get(k) == "" else _cell(r[k]) for k in keys_})
    return out


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return int(v) if v.is_integer() and abs(v) >= 1 else round(v, 4)
    return v


def _epochs_of(res: dict) -> float | None:
    e = res.get("epochs")
    if isinstance(e, (list, tuple)):
        e = sum(x for x in e if isinstance(x, (int, float)))
    return float(e) if isinstance(e, (int, float)) and e > 0 else None


def steps_note(runs: list[dict], step_matching: bool = True) -> str:
    """What is true about the optimizer steps of the runs, with the figures.

    Epochs are whole numbers, so a step-matched arm can only come within one of its own epochs of real-only's
    steps: that is "matched within rounding". A run further away than that is not matched, and the note says so."""
    from engine.experiment import BASELINE

    trained = [r for r in runs if (r.get("result") or {}).get("steps") is not None]
    if not trained:
        return "No arm was trained (the untouched model only): there are no optimizer steps to match."
    steps = [int(r["result"]["steps"]) for r in trained]
    lo, hi = min(steps), max(steps)
    base = {r["seed"]: int(r["result"]["steps"]) for r in trained if r["arm"] == BASELINE}
    if not step_matching:
        return (f"Steps not matched: every arm trained the same number of epochs, so arms with more images took "
                f"more optimizer steps ({lo}-{hi} per run).")
    if lo == hi:
        return f"Optimizer steps matched to real-only exactly: {lo} per run."
    far = []
    for r in trained:
        b = base.get(r["seed"])
        if b is None or r["arm"] == BASELINE:
            continue
        s = int(r["result"]["steps"])
        epochs = _epochs_of(r["result"])
        per_epoch = s / epochs if epochs else 0.1 * b
        if abs(s - b) > per_epoch + 1e-9:
            far.append(f"{r['arm']} seed {r['seed']}: {s} vs {b}")
    base_txt = "/".join(str(v) for v in sorted(set(base.values()))) or "n/a"
    gap = max((abs(int(r["result"]["steps"]) - base[r["seed"]]) for r in trained if r["seed"] in base), default=0)
    spread = f"real-only {base_txt} steps, the trained arms {lo}-{hi} (largest gap {gap})"
    if far:
        return (f"Optimizer steps NOT matched: {spread}; more than one epoch apart: {'; '.join(far)}. "
                f"Differences between these arms may come from the extra steps.")
    return (f"Optimizer steps matched to real-only within rounding to whole epochs: {spread}; every run is within "
            f"one of its own epochs of real-only.")


def _direction(c: dict, alpha: float = 0.05) -> str:
    lo, hi = c["ci"]
    p = c.get("p_holm")
    significant = p is None or p < alpha
    if lo > 0 and significant:
        return "better"
    if hi < 0 and significant:
        return "worse"
    return "within noise"


def grouped_verdicts(comparisons: list[dict]) -> list[dict]:
    """Each arm against its baseline with the metrics side by side, and one sentence that reconciles them.

    Rows: ``arm``, ``baseline``, one cell per metric (difference, 95% interval, direction) and ``reading``; when
    the metrics point different ways (one better, another worse or within noise; or opposite signs) the
    reading says so explicitly, with the reason they can disagree."""
    by_arm: dict[tuple[str, str], dict[str, dict]] = {}
    for c in comparisons:
        if c.get("ci") and all(_finite(x) for x in c["ci"]):
            by_arm.setdefault((c["arm"], c["baseline"]), {})[c["metric"]] = c
    rows = []
    for (arm, baseline), metrics in by_arm.items():
        names = [m for m in METRIC_ORDER if m in metrics] + [m for m in metrics if m not in METRIC_ORDER]
        dirs = {m: _direction(metrics[m]) for m in names}
        row: dict[str, Any] = {"arm": arm, "baseline": baseline}
        for m in names:
            c = metrics[m]
            row[m] = f"{c['mean_diff']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] {dirs[m]}"
        kinds = set(dirs.values())
        def listed(d: str, names: list[str] = names, dirs: dict[str, str] = dirs) -> str:
            return " and ".join(m for m in names if dirs[m] == d)
        signs = {m: (metrics[m]["mean_diff"] > 0) - (metrics[m]["mean_diff"] < 0) for m in names}
        if kinds == {"better"}:
            text, agree = f"{arm} beats {baseline} on every metric ({listed('better')}).", True
        elif kinds == {"worse"}:
            text, agree = f"{arm} is worse than {baseline} on every metric ({listed('worse')}).", True
        elif kinds == {"within noise"}:
            if len(set(signs.values()) - {0}) > 1:
                up = " and ".join(m for m in names if signs[m] > 0)
                down = " and ".join(m for m in names if signs[m] < 0)
                text = (f"The metrics disagree, though none beyond the noise: {arm} is ahead of {baseline} on {up} "
                        f"but behind on {down}; no metric separates them.")
                agree = False
            else:
                text, agree = f"No metric separates {arm} from {baseline} beyond the noise.", True
        elif len(set(signs.values()) - {0}) == 1 and not {"better", "worse"} <= kinds:
            way = "ahead of" if next(iter(set(signs.values()) - {0})) > 0 else "behind"
            clear = listed("better") or listed("worse")
            text = (f"The metrics agree in direction: {arm} is {way} {baseline} on all of them; {clear} clear"
                    f"{'s' if ' and ' not in clear else ''} the noise, {listed('within noise')} "
                    f"{'does' if ' and ' not in listed('within noise') else 'do'} not.")
            agree = True
        else:
            parts = [f"{m} {metrics[m]['mean_diff']:+.3f} ({dirs[m]})" for m in names]
            text = f"The metrics disagree: {arm} minus {baseline}: {', '.join(parts)}."
            agree = False
        if not agree:
            text += (" AP50 scores detections (a person found with OKS above 0.5), PCK@0.2 and OKS grade the joints of"
                     " the matched labelled person, so an arm can find people differently from how well it places"
                     " their joints.")
        row["reading"] = text
        row["metrics agree"] = agree
        rows.append(row)
    return rows


def legend_below(fig, n_items: int, base_height: int = 320) -> None:
    """Every legend entry visible: a horizontal legend under the plot, and the figure grows with the entries
    (a vertical legend beside a short plot scrolls and hides the entries that do not fit)."""
    rows = -(-max(1, n_items) // 3)
    top, bottom = 60, 90 + 24 * rows
    plot = max(120, base_height - 150)            # the plotting area keeps its height whatever the legend needs
    fig.update_layout(showlegend=True, height=plot + top + bottom,
                      legend={"orientation": "h", "yanchor": "top", "y": -75 / plot, "xanchor": "left", "x": 0},
                      margin={"t": top, "b": bottom})


def whole_ticks(axis: dict | None = None, values: list[float] | None = None) -> dict:
    """Axis settings that put ticks on whole numbers only (epochs): one tick every ``dtick`` whole units."""
    vals = [v for v in (values or []) if v is not None]
    span = (max(vals) - min(vals)) if vals else 10
    dtick = max(1, int(-(-span // 10)))
    return {**(axis or {}), "tickmode": "linear", "tick0": 0 if not vals else int(min(vals)), "dtick": dtick,
            "tickformat": "d"}


def learning_curves_figure(curves: list[tuple[str, list[dict]]], key: str = "metrics/mAP50(P)"):
    """Val pose mAP50 per epoch, one line per run, whole epochs on the x axis, the full legend under the plot."""
    import plotly.graph_objects as go

    fig = go.Figure()
    xs_all: list[float] = []
    for i, (name, rows) in enumerate(curves):
        pts = [(float(c["epoch"]), c[key]) for c in rows if c.get("epoch") is not None and c.get(key) is not None]
        if not pts:
            continue
        xs = [int(round(x)) for x, _ in pts]
        xs_all += xs
        fig.add_scatter(x=xs, y=[y for _, y in pts], name=name, mode="lines+markers",
                        line={"color": PALETTE[i % len(PALETTE)]})
    fig.update_layout(title="Learning curves: val pose mAP50 per epoch (Ultralytics)",
                      xaxis=whole_ticks({"title": {"text": "epoch"}}, xs_all), yaxis_title="val mAP50")
    legend_below(fig, len(fig.data))
    return fig


def run_curves(db, runs: list[dict]) -> list[tuple[str, list[dict]]]:
    """(arm and seed, per-epoch rows) of every run that trained, in the runs' order."""
    from store import training as store_training

    out = []
    for r in runs:
        tr = store_training.run(db, r["training_run_id"]) if r.get("training_run_id") else None
        curves = (tr or {}).get("curves") or (((r.get("result") or {}).get("ledger") or {}).get("curves"))
        if curves:                        # a run taken from a ledger keeps its curve there
            out.append((f"{r['arm']} s{r['seed']}", curves))
    return out
