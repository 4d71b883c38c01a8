"""Which link of the loop's chain holds, from a loop benchmark's stored rounds (read only; runs while the
benchmark trains, and covers the seeds and rounds finished so far).

    .venv/bin/python bench/loop_audit.py [--workspace DIR] [--experiment NAME] [--out DIR]

A loop round is a chain: mine where the last student fails (train data only) -> generate around the worst pose
groups -> curate -> select with the student's signals -> train. When a loop arm does not beat real-only, this
says where the chain breaks, per round over the seeds:

- **mining**: the student's error in the targeted pose groups against all mined people (train data: against
  the teacher on unlabelled images when the loop reads no labels outside its anchors);
- **coverage**: the share of the anchors in the targeted groups (what the generator can re-pose around), of
  the round's selected images, of the random arm's synthetic images and of the test people;
- **yield**: images generated, surviving curation, selected;
- **selection**: the student's hardness of the selected survivors against the ones left out;
- **outcome**: per-person OKS on test, the loop round minus real-only (same seed) for test people in the
  targeted groups and elsewhere, beside the random arm's minus real-only on the same people (two-stage 95 %
  bootstrap: seeds, then people). Test is read for this diagnosis only; it decides nothing.

Test and selected people are put in a pose group by the nearest group centre in pose-feature space
(``engine.curate.failures.pose_features``): the k-means centre mining stored, or, for mining results from before
it stored them, the mean features of the anchors it put in that group (groups without anchors then get no one).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _paths import bench_dir, offline, shown_path  # noqa: E402

offline()

from engine import poses  # noqa: E402
from engine.curate.failures import pose_features  # noqa: E402
from engine.errors import RealcalError  # noqa: E402
from engine.workspace import Workspace  # noqa: E402
from store import curation as store_curation  # noqa: E402
from store import images as store_images  # noqa: E402
from store import loops as store_loops  # noqa: E402
from store import training as store_training  # noqa: E402


def _features(db, image_ids: list[int]) -> dict[int, list[tuple[int, np.ndarray]]]:
    """Per image, (person id, pose features) of its labelled people with a torso."""
    out: dict[int, list[tuple[int, np.ndarray]]] = {}
    for image_id, people in store_images.persons_for_images(db, image_ids).items():
        for p in people:
            kp = p["keypoints"]
            f = pose_features(poses.as_keypoints(json.loads(kp) if isinstance(kp, str) else kp))
            if f is not None:
                out.setdefault(image_id, []).append((p["id"], f))
    return out


def two_stage(diffs: dict[int, np.ndarray], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean over seeds of the mean paired difference, with a 95 % interval: seeds with replacement, then the
    people within each drawn seed."""
    seeds = [s for s, d in diffs.items() if len(d)]
    if not seeds:
        return float("nan"), float("nan"), float("nan")
    obs = float(np.mean([diffs[s].mean() for s in seeds]))
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for b in range(n_boot):
        drawn = rng.choice(seeds, size=len(seeds), replace=True) if len(seeds) > 1 else seeds
        boot[b] = np.mean([rng.choice(diffs[s], size=len(diffs[s]), replace=True).mean() for s in drawn])
    return obs, float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


ROW_ARRAYS = ("_loop_in", "_loop_out", "_rand_in", "_rand_out")


def _row_path(ledger: Path, arm: str, seed: int) -> Path:
    from engine.ledger import file_name

    return Path(ledger) / "audit" / file_name(arm, seed).replace(".json.gz", ".json")


def save_row(ledger: Path, row: dict[str, Any], manifest_hash: str) -> None:
    """One (round, seed) row of the audit beside the ledger, for the machines that will not have this loop."""
    path = _row_path(ledger, row["arm"], row["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in row.items()},
            "manifest_hash": manifest_hash}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def load_row(ledger: Path, arm: str, seed: int, manifest_hash: str) -> tuple[dict[str, Any] | None, str]:
    """The stored audit row of a loop round that ran elsewhere, if it belongs to the very run the experiment
    holds (same manifest hash); else None and why not."""
    path = _row_path(ledger, arm, seed)
    if not path.exists():
        return None, "its loop ran in another workspace and the ledger has no audit row for it"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"its audit row {path.name} is unreadable ({exc})"
    if data.pop("manifest_hash", None) != manifest_hash:
        return None, f"its audit row {path.name} belongs to another run of that round"
    return {**data, **{k: np.asarray(data.get(k) or [], dtype=float) for k in ROW_ARRAYS}}, ""


def audit(ws: Workspace, name: str, random_arm: str | None = None, experiment_id: int | None = None,
          ledger: Path | None = None) -> dict[str, Any]:
    """The audit, per round over the seeds. With ``ledger`` (the experiment's ledger folder) each (round, seed)
    row computed here is also written there, and rows of loops that ran in another workspace are read from it."""
    with ws.connect() as db:
        exp = (next((e for e in store_training.list_experiments(db) if e["id"] == experiment_id), None)
               if experiment_id is not None else store_training.experiment_by_name(db, name))
        if exp is None:
            raise RealcalError(f"no experiment named {name!r} in {ws.root}")
        cfg = exp["config"]
        runs = {(r["arm"], r["seed"]): r for r in store_training.experiment_runs(db, exp["id"])
                if r["status"] == "done" and r.get("result")}
        loop_arms = sorted((a for a in cfg["arms"] if a.get("kind") == "loop"), key=lambda a: a["round"])
        if random_arm is None:
            random_arm = next((a["name"] for a in cfg["arms"] if a.get("pool") == "random" and not a.get("schedule")),
                              None)
        per_round: dict[int, list[dict[str, Any]]] = {}
        missing: list[str] = []
        for arm in loop_arms:
            for seed in cfg["seeds"]:
                run, base = runs.get((arm["name"], seed)), runs.get(("real-only", seed))
                if run is None or base is None:
                    continue
                info = run["result"]["loop"]
                lp = store_loops.by_name(db, info["name"])
                st = next((r["state"] for r in store_loops.rounds(db, lp["id"]) if r["round"] == arm["round"]
                           and r["status"] == "done"), None) if lp else None
                if st is None:          # the round was taken from a ledger: its loop is not in this workspace
                    row, why = (load_row(ledger, arm["name"], seed, run["result"]["manifest_hash"]) if ledger
                                else (None, "its loop ran in another workspace"))
                    if row is None:
                        missing.append(f"{arm['name']} seed {seed}: {why}")
                    else:
                        per_round.setdefault(arm["round"], []).append(row)
                    continue
                mined = st["mined"]
                fail = json.loads(Path(mined["path"]).read_text())
                targeted = {g["cluster"] for g in mined["groups"]}
                base_items = store_training.manifest(db, base["manifest_id"])["items"]
                train_ids = [it["image_id"] for it in base_items if it["split"] == "train"]
                anchors = {pid: f for fs in _features(db, train_ids).values() for pid, f in fs}
                centres, ids = [], []
                for c in fail["clusters"]:
                    fs = [anchors[p] for p in c.get("anchor_person_ids", []) if p in anchors]
                    if c.get("centre") is not None:         # stored by mining since it kept its centres
                        centres.append(np.asarray(c["centre"], dtype=float))
                        ids.append(c["cluster"])
                    elif fs:
                        centres.append(np.mean(fs, axis=0))
                        ids.append(c["cluster"])
                C = np.stack(centres)

                def group(f: np.ndarray, C: np.ndarray = C, ids: list[int] = ids) -> int:
                    return ids[int(np.argmin(((C - f) ** 2).sum(-1)))]

                def share(image_ids: list[int], targeted: set[int] = targeted) -> float | None:
                    gs = [group(f) for fs in _features(db, image_ids).values() for _, f in fs]
                    return float(np.mean([g in targeted for g in gs])) if gs else None

                selected = list(st.get("selected") or [])
                rand_syn: list[int] = []
                rand = runs.get((random_arm, seed)) if random_arm else None
                if rand is not None:
                    base_ids = {it["image_id"] for it in base_items}
                    rand_syn = [it["image_id"] for it in store_training.manifest(db, rand["manifest_id"])["items"]
                                if it["split"] == "train" and it["image_id"] not in base_ids]
                hard = {r["image_id"]: r["value"] for r in store_curation.results(db, st["curation_run_id"],
                                                                                   "student_hardness")
                        if r["value"] is not None} if st.get("curation_run_id") else {}
                test_rows = {r["person_id"]: r for r in base["result"]["rows"]}
                test_feats = _features(db, sorted({r["image_id"] for r in base["result"]["rows"]}))
                test_group = {pid: group(f) for fs in test_feats.values() for pid, f in fs if pid in test_rows}
                mask = {pid: g in targeted for pid, g in test_group.items()}

                def delta(other: dict | None, inside: bool, mask: dict = mask,
                          test_rows: dict = test_rows) -> np.ndarray:
                    if other is None:
                        return np.zeros(0)
                    o = {r["person_id"]: r["oks"] for r in other["result"]["rows"]}
                    return np.array([(o.get(pid) or 0.0) - (test_rows[pid]["oks"] or 0.0)
                                     for pid, m in mask.items() if m == inside and pid in o])

                groups_err = sum(g["mean_error"] * g["people"] for g in mined["groups"]) / max(
                    1, sum(g["people"] for g in mined["groups"]))
                row = {
                    "seed": seed, "arm": arm["name"], "mined error (targeted groups)": groups_err,
                    "mined error (all)": mined["mean_error"], "mined people": mined["people"],
                    "anchors in targeted": sum(g["anchor_coverage"] for g in mined["groups"]),
                    "selected in targeted": share(selected), "random arm in targeted": share(rand_syn),
                    "test in targeted": float(np.mean(list(mask.values()))) if mask else None,
                    "generated": st.get("generated"), "survivors": st.get("survivors"), "selected": len(selected),
                    "hardness selected": float(np.mean([hard[i] for i in selected if i in hard]))
                    if any(i in hard for i in selected) else None,
                    "hardness left out": float(np.mean([v for i, v in hard.items() if i not in set(selected)]))
                    if any(i not in set(selected) for i in hard) else None,
                    "_loop_in": delta(run, True), "_loop_out": delta(run, False),
                    "_rand_in": delta(rand, True), "_rand_out": delta(rand, False)}
                per_round.setdefault(arm["round"], []).append(row)
                if ledger is not None:
                    save_row(ledger, row, run["result"]["manifest_hash"])
    rounds = []
    for k, rows in sorted(per_round.items()):
        rows = sorted(rows, key=lambda r: r["seed"])
        def mean(key: str, rows: list = rows) -> float | None:
            xs = [r[key] for r in rows if r[key] is not None]
            return float(np.mean(xs)) if xs else None

        out = {"round": k, "arm": rows[0]["arm"], "seeds": [r["seed"] for r in rows]}
        for key in ("mined error (targeted groups)", "mined error (all)", "anchors in targeted", "selected in targeted",
                    "random arm in targeted", "test in targeted", "generated", "survivors", "selected",
                    "hardness selected", "hardness left out"):
            out[key] = mean(key)
        for key, label in (("_loop_in", "loop - real-only, targeted"), ("_loop_out", "loop - real-only, elsewhere"),
                           ("_rand_in", "random - real-only, targeted"),
                           ("_rand_out", "random - real-only, elsewhere")):
            out[label] = two_stage({r["seed"]: r[key] for r in rows})
        out["per seed"] = [{k2: v for k2, v in r.items() if not k2.startswith("_")} for r in rows]
        rounds.append(out)
    return {"experiment": name, "random arm": random_arm, "rounds": rounds, "not audited": missing}


def _f(x: Any, fmt: str = "{:.3f}") -> str:
    return "—" if x is None or (isinstance(x, float) and not np.isfinite(x)) else fmt.format(x)


def _ci(t: tuple[float, float, float]) -> str:
    return "—" if not np.isfinite(t[0]) else f"{t[0]:+.3f} [{t[1]:+.3f}, {t[2]:+.3f}]"


def markdown(a: dict[str, Any]) -> str:
    md = [f"# Loop audit: {a['experiment']}", "", __doc__.split("\n\n", 2)[2].strip(), ""]
    if not a["rounds"]:
        return "\n".join(md + ["No loop round has finished with its real-only run yet."]) + "\n"
    md += ["## The chain, round by round (means over the seeds listed)", "",
           "| round | seeds | mined error: targeted / all | anchors in targeted | selected in targeted | "
           f"{a['random arm']} in targeted | test people in targeted | generated -> survivors -> selected | "
           "student hardness: selected / left out |", "|---|---|---|---|---|---|---|---|---|"]
    for r in a["rounds"]:
        md.append(f"| {r['round']} | {', '.join(map(str, r['seeds']))} | {_f(r['mined error (targeted groups)'])} / "
                  f"{_f(r['mined error (all)'])} | {_f(r['anchors in targeted'], '{:.0%}')} | "
                  f"{_f(r['selected in targeted'], '{:.0%}')} | {_f(r['random arm in targeted'], '{:.0%}')} | "
                  f"{_f(r['test in targeted'], '{:.0%}')} | {_f(r['generated'], '{:.0f}')} -> "
                  f"{_f(r['survivors'], '{:.0f}')} -> {_f(r['selected'], '{:.0f}')} | "
                  f"{_f(r['hardness selected'])} / {_f(r['hardness left out'])} |")
    md += ["", "## The outcome where the loop aimed (test per-person OKS minus real-only, same seed)", "",
           "| round | loop, targeted groups | loop, elsewhere | random, targeted groups | random, elsewhere |",
           "|---|---|---|---|---|"]
    for r in a["rounds"]:
        md.append(f"| {r['round']} | {_ci(r['loop - real-only, targeted'])} | {_ci(r['loop - real-only, elsewhere'])}"
                  f" | {_ci(r['random - real-only, targeted'])} | {_ci(r['random - real-only, elsewhere'])} |")
    if a.get("not audited"):
        md += ["", "Finished rounds not audited here: " + "; ".join(a["not audited"]) + "."]
    md += ["", "Intervals: two-stage bootstrap (seeds, then test people), 95 %. A loop that helps where it aimed "
           "shows a targeted difference above the random arm's; a chain that breaks earlier shows in the first "
           "table (mining that does not single out a group, selections that miss the targeted groups, a student "
           "signal that does not separate what is kept from what is left)."]
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", help="default: the benchmark workspace of --experiment")
    ap.add_argument("--experiment", default="lspet-loop-150")
    ap.add_argument("--random-arm", help="the random synthetic arm to compare with (default: the first random, "
                                         "unscheduled arm)")
    ap.add_argument("--experiment-id", type=int, help="an earlier experiment of that name (default: the latest)")
    ap.add_argument("--out", default="docs/results/lspet-loop", help="writes audit.md and audit.json here")
    ap.add_argument("--ledger", help="the experiment's ledger (default: <out>/runs): rows computed here are kept "
                                     "there, rows of loops that ran elsewhere are read from it")
    args = ap.parse_args()
    root = Path(args.workspace) if args.workspace else bench_dir() / args.experiment
    if not (root / "realcal.db").exists():
        sys.exit(f"no workspace at {shown_path(root, ROOT)} (run the benchmark first)")
    try:
        a = audit(Workspace.open(root), args.experiment, args.random_arm, args.experiment_id,
                  Path(args.ledger) if args.ledger else Path(args.out) / "runs")
    except RealcalError as e:
        sys.exit(str(e))
    text = markdown(a)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.md").write_text(text)
    (out / "audit.json").write_text(json.dumps(a, indent=1, default=lambda x: x.tolist()
                                               if isinstance(x, np.ndarray) else str(x)))
    print(f"wrote {shown_path(out / 'audit.md', ROOT)}")


if __name__ == "__main__":
    main()
