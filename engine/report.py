"""The experiment report: Markdown and a self-contained HTML page (tables, verdicts, a chart)."""
from __future__ import annotations

import html
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
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


def _ap50_line(c: dict) -> str:
    seeds = c.get("seeds", 0)
    return f"- {c['verdict']} ({seeds} seed{'' if seeds == 1 else 's'} x {c['n']} test images, {c.get('n_boot')} resamples)"


def _run_rows(runs: list[dict]) -> list[dict]:
    out = []
    for r in runs:
        res = r["result"]
        out.append({"arm": r["arm"], "seed": r["seed"], "manifest": res["manifest_hash"][:12],
                    "train images": res["train_images"], "steps": res.get("steps"),
                    "test AP50 [95% CI]": f"{_fmt(res['test'].get('AP50'))} {_ci(res['test'].get('AP50_ci'))}".strip(),
                    "test PCK@0.2": res["test"].get("PCK@0.2"), "val AP50": res["val"].get("AP50"),
                    "val PCK@0.2": res["val"].get("PCK@0.2"), "seconds": res["seconds"]})
    return out


def write_report(out: Path, experiment: dict, summary: dict, runs: list[dict], cost: dict | None = None,
                 extra: dict | None = None) -> dict[str, str]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    versions = {p: metadata.version(p) for p in ("ultralytics", "torch", "numpy", "pycocotools")}
    machine = f"{platform.machine()}, Python {platform.python_version()}, {platform.platform()}"
    cols = ["arm", "seeds", "AP", "AP50", "AP50 - real-only", "95% CI", "PCK@0.2", "val AP50", "val PCK@0.2",
            "steps", "seconds per run", "seconds (all seeds)"]
    run_rows = _run_rows(runs)
    run_keys = list(run_rows[0]) if run_rows else []
    per_joint = summary.get("per_joint") or []
    joint_keys = list(per_joint[0]) if per_joint else []
    md = [f"# Experiment: {experiment['name']}", "",
          f"Optimizer steps: **{summary['steps']}**. Test metrics are means over seeds; "
          f"comparisons with real-only are paired over test people (per-person OKS and PCK@0.2, averaged over "
          f"seeds), sign-flip permutation tests, Holm-adjusted.", ""]
    for f in summary["flags"]:
        md += [f"> **Warning:** {f}", ""]
    md += _md_table(summary["table"], cols)
    md += ["", "AP50 - real-only: paired bootstrap over the same test images, all seeds together (95% CI). "
           "Seconds: wall time of the arm's runs (training + evaluation on val and test).", ""]
    gate = summary.get("val_gate") or []
    if gate:
        n_pass = sum(g["beats zero-shot on"] != "neither" for g in gate)
        md += ["## Val gate", "", f"Comparisons count only when real-only beats zero-shot on val AP50 or PCK@0.2 "
               f"(means over seeds; the warning above says when they do not). Per seed: real-only beats zero-shot "
               f"in {n_pass} of {len(gate)}.", ""] + _md_table(gate, list(gate[0])) + [""]
    md += ["## Verdicts", "", "AP50 differences: paired bootstrap over the same test images (all seeds together).", ""]
    md += [_ap50_line(c) for c in summary.get("ap50", [])]
    if summary.get("ablation"):
        md += ["", "Curation ablation at matched volume (curated minus random / unfiltered, same real and synthetic "
               "counts; AP50, paired bootstrap over the same test images):", ""]
        md += [_ap50_line(c) for c in summary["ablation"]]
    md += ["", "Per-person OKS and PCK@0.2 (paired permutation test, Holm-adjusted across comparisons):", ""]
    md += [f"- {c['verdict']} (n = {c['n']}, effect dz = {_fmt(c['effect_dz'])})" for c in summary["comparisons"]]
    if not summary["comparisons"]:
        md.append("- No comparison: the experiment has no arm besides the baseline.")
    md += ["", "## Human cost", ""]
    if cost and cost.get("decisions"):
        md.append(f"- Review: {cost['decisions']} decisions, {_fmt(cost.get('seconds_per_accepted_image'))} s "
                  f"per accepted image.")
    else:
        md.append("- No review data.")
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

    import plotly.graph_objects as go

    fig = go.Figure()
    for r in summary["table"]:
        per_seed = [x["result"]["test"].get("AP50") for x in runs if x["arm"] == r["arm"]]
        fig.add_bar(name=r["arm"], x=[r["arm"]], y=[r["AP50"]],
                    error_y={"type": "data", "array": [float(__import__("numpy").std(per_seed))]} if len(per_seed) > 1 else None)
    fig.update_layout(title="Test AP50 per arm (mean over seeds, error bar = SD over seeds)", showlegend=False)
    figs = [fig]
    deltas = [c for c in summary.get("ap50", []) if c.get("ci") and all(map(_finite, c["ci"]))]
    if deltas:
        dfig = go.Figure()
        dfig.add_scatter(x=[c["mean_diff"] for c in deltas], y=[c["arm"] for c in deltas], mode="markers",
                         error_x={"type": "data", "symmetric": False,
                                  "array": [c["ci"][1] - c["mean_diff"] for c in deltas],
                                  "arrayminus": [c["mean_diff"] - c["ci"][0] for c in deltas]})
        dfig.add_vline(x=0, line_dash="dash")
        dfig.update_layout(title="Test AP50 minus real-only (paired bootstrap, 95% CI)", showlegend=False,
                           xaxis_title="AP50 difference", height=140 + 40 * len(deltas),
                           margin={"l": 170})
        figs.append(dfig)
    table_html = _html_table(summary["table"], cols)

    def html_extra(title: str, value: Any) -> str:
        head = f"<h2>{html.escape(title[0].upper() + title[1:])}</h2>"
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return head + _html_table(value, list(value[0]))
        if isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values()):
            return head + "<ul>" + "".join(f"<li>{html.escape(str(k))}: {html.escape(_fmt(v))}</li>"
                                           for k, v in value.items()) + "</ul>"
        return head + f"<pre>{html.escape(json.dumps(value, indent=2, default=str))}</pre>"
    page = ["<!doctype html><html><head><meta charset='utf-8'><title>realcal experiment</title>",
            "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px}</style></head><body>",
            f"<h1>Experiment: {html.escape(experiment['name'])}</h1>",
            f"<p>Optimizer steps: {html.escape(summary['steps'])}.</p>"]
    page += [f"<p><b>Warning:</b> {html.escape(f)}</p>" for f in summary["flags"]]
    page += [table_html]
    if gate:
        page += ["<h2>Val gate</h2><p>Comparisons count only when real-only beats zero-shot on val AP50 or "
                 "PCK@0.2 (means over seeds).</p>", _html_table(gate, list(gate[0]))]
    page += ["<h2>Verdicts</h2><ul>"] + [f"<li>{html.escape(c['verdict'])} (AP50, paired bootstrap over test images)</li>"
                                                     for c in summary.get("ap50", [])]
    page += [f"<li>{html.escape(c['verdict'])} (curation ablation at matched volume: AP50, paired bootstrap)</li>"
             for c in summary.get("ablation", [])]
    page += [f"<li>{html.escape(c['verdict'])}</li>" for c in summary["comparisons"]]
    page += ["</ul>", *[f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs)],
             *([html_extra("Test PCK@0.2 per joint (mean over seeds)", per_joint)] if per_joint else []),
             *[html_extra(t, v) for t, v in (extra or {}).items()],
             "<h2>Runs</h2>", _html_table(run_rows, run_keys),
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
    from engine.experiment import summarise
    from store import training as store_training

    db = ws.connect()
    try:
        exp = store_training.experiment_by_name(db, name) if name else store_training.latest_experiment(db)
        if exp is None:
            raise RealcalError(f"no experiment {name!r}" if name else
                               "no experiment yet: `realcal experiment run exp.yaml`")
        runs = store_training.experiment_runs(db, exp["id"])
        cost = review.stats(db)
    finally:
        db.close()
    summary = summarise(runs, exp["config"], exp.get("ap50_comparisons"))
    extra = extra_fn(exp) if extra_fn else None
    paths = write_report(out, exp, summary, runs, cost, extra=extra)
    return {**paths, "experiment": exp, "runs": runs, "summary": summary}
