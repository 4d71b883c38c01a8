"""Manifests, training runs and per-image evaluation rows."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlite_utils


def manifest_by_hash(db: sqlite_utils.Database, digest: str) -> dict | None:
    rows = list(db.query("SELECT * FROM manifests WHERE hash = ?", [digest]))
    return _decode(rows[0]) if rows else None


def _decode(r) -> dict:
    r = dict(r)
    for c in ("spec", "counts"):
        r[c] = json.loads(r[c])
    return r


def insert_manifest(db: sqlite_utils.Database, digest: str, spec: dict, counts: dict,
                    items: Sequence[dict]) -> int:
    db.execute("INSERT INTO manifests (hash, spec, counts) VALUES (?, ?, ?)",
               [digest, json.dumps(spec, sort_keys=True, default=str), json.dumps(counts, sort_keys=True)])
    mid = db.execute("SELECT last_insert_rowid()").fetchone()[0]
    for it in items:
        db.execute("INSERT INTO manifest_items (manifest_id, image_id, split, label_source, person_ids) "
                   "VALUES (?, ?, ?, ?, ?)", [mid, it["image_id"], it["split"], it["label_source"],
                                               json.dumps(it["person_ids"])])
    return mid


def manifest(db: sqlite_utils.Database, manifest_id: int) -> dict | None:
    rows = list(db.query("SELECT * FROM manifests WHERE id = ?", [manifest_id]))
    if not rows:
        return None
    m = _decode(rows[0])
    m["items"] = []
    for r in db.query("SELECT * FROM manifest_items WHERE manifest_id = ? ORDER BY image_id", [manifest_id]):
        r = dict(r)
        r["person_ids"] = json.loads(r["person_ids"])
        m["items"].append(r)
    return m


def list_manifests(db: sqlite_utils.Database) -> list[dict]:
    return [_decode(r) for r in db.query("SELECT * FROM manifests ORDER BY id")]


def honeypot_image_ids(db: sqlite_utils.Database) -> set[int]:
    ids = {r[0] for r in db.execute("SELECT image_id FROM review_items WHERE honeypot = 1")}
    ids |= {r[0] for r in db.execute(
        "SELECT i.id FROM images i JOIN batches b ON b.id = i.batch_id WHERE b.kind = 'honeypot'")}
    return ids


def excluded_image_ids(db: sqlite_utils.Database) -> set[int]:
    return {r[0] for r in db.execute("SELECT image_id FROM excluded_images")}


def exclude_images(db: sqlite_utils.Database, image_ids: Sequence[int], reason: str | None,
                   user: str | None) -> int:
    """Exclude these images from training (no commit); returns how many were not excluded before."""
    before = db.execute("SELECT COUNT(*) FROM excluded_images").fetchone()[0]
    db.conn.executemany("INSERT OR IGNORE INTO excluded_images (image_id, reason, user) VALUES (?, ?, ?)",
                        [(int(i), reason, user) for i in image_ids])
    return db.execute("SELECT COUNT(*) FROM excluded_images").fetchone()[0] - before


def include_images(db: sqlite_utils.Database, image_ids: Sequence[int]) -> int:
    """Undo exclusions (no commit); returns how many were excluded."""
    ids = [int(i) for i in image_ids]
    n = 0
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        n += db.execute(f"DELETE FROM excluded_images WHERE image_id IN ({','.join('?' * len(part))})",
                        part).rowcount
    return n


def lineage_sources(db: sqlite_utils.Database, image_ids: Sequence[int]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {i: [] for i in image_ids}
    ids = list(image_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for r in db.query(
                f"SELECT s.image_id, s.source_image_id, s.role, i.split, i.kind FROM lineage_sources s "
                f"LEFT JOIN images i ON i.id = s.source_image_id WHERE s.image_id IN "
                f"({', '.join('?' for _ in chunk)})", chunk):
            out[r["image_id"]].append(dict(r))
    return out


def review_states(db: sqlite_utils.Database) -> dict[int, str]:
    return {r[0]: r[1] for r in db.execute("SELECT image_id, state FROM review_items")}


def latest_selection_ids(db: sqlite_utils.Database) -> list[int]:
    rows = list(db.query("SELECT id FROM curation_runs WHERE funnel != '[]' ORDER BY id DESC LIMIT 1"))
    if not rows:
        return []
    return [r[0] for r in db.execute("SELECT image_id FROM selections WHERE run_id = ? ORDER BY rank",
                                      [rows[0]["id"]])]


def create_run(db: sqlite_utils.Database, job_id: int | None, manifest_id: int, config: dict) -> int:
    db.execute("INSERT INTO training_runs (job_id, manifest_id, config) VALUES (?, ?, ?)",
               [job_id, manifest_id, json.dumps(config, default=str)])
    return db.execute("SELECT last_insert_rowid()").fetchone()[0]


def finish_run(db: sqlite_utils.Database, run_id: int, *, status: str, weights: str | None,
               curves: Any, metrics: Any) -> None:
    db.execute("UPDATE training_runs SET status = ?, weights = ?, curves = ?, metrics = ? WHERE id = ?",
               [status, weights, json.dumps(curves, default=str), json.dumps(metrics, default=str), run_id])


def put_eval_rows(db: sqlite_utils.Database, run_id: int, rows: Sequence[dict]) -> None:
    for r in rows:
        db.execute("INSERT OR REPLACE INTO eval_images (run_id, image_id, person_id, oks, pck, pck_joints) "
                   "VALUES (?, ?, ?, ?, ?, ?)", [run_id, r["image_id"], r["person_id"], r["oks"], r["pck"],
                                                  json.dumps(r["pck_joints"])])


def eval_rows(db: sqlite_utils.Database, run_id: int) -> list[dict]:
    """The per-person test rows of a run (person, image, OKS, PCK@0.2)."""
    return [dict(r) for r in db.query("SELECT person_id, image_id, oks, pck FROM eval_images WHERE run_id = ? "
                                      "ORDER BY person_id", [run_id])]


def run(db: sqlite_utils.Database, run_id: int) -> dict | None:
    rows = list(db.query("SELECT * FROM training_runs WHERE id = ?", [run_id]))
    if not rows:
        return None
    r = dict(rows[0])
    for c in ("config", "curves", "metrics"):
        r[c] = json.loads(r[c]) if r[c] else None
    return r


def list_runs(db: sqlite_utils.Database, limit: int = 200) -> list[dict]:
    out = []
    for r in db.query("SELECT * FROM training_runs ORDER BY id DESC LIMIT ?", [limit]):
        r = dict(r)
        for c in ("config", "curves", "metrics"):
            r[c] = json.loads(r[c]) if r[c] else None
        out.append(r)
    return out


def list_experiments(db: sqlite_utils.Database) -> list[dict]:
    return [_experiment(r) for r in db.query("SELECT * FROM experiments ORDER BY id DESC")]


def experiment_by_name(db: sqlite_utils.Database, name: str) -> dict | None:
    rows = list(db.query("SELECT * FROM experiments WHERE name = ? ORDER BY id DESC LIMIT 1", [name]))
    if not rows:
        return None
    return _experiment(rows[0])


def _experiment(row) -> dict:
    r = dict(row)
    r["config"] = json.loads(r["config"])
    r["ap50_comparisons"] = json.loads(r["ap50_comparisons"]) if r.get("ap50_comparisons") else None
    return r


def set_experiment_ap50(db: sqlite_utils.Database, experiment_id: int, comparisons: list[dict]) -> None:
    db.execute("UPDATE experiments SET ap50_comparisons = ? WHERE id = ?", [json.dumps(comparisons), experiment_id])


def set_experiment_config(db: sqlite_utils.Database, experiment_id: int, config: dict) -> None:
    db.execute("UPDATE experiments SET config = ? WHERE id = ?", [json.dumps(config, default=str), experiment_id])


def create_experiment(db: sqlite_utils.Database, name: str, config: dict) -> int:
    db.execute("INSERT INTO experiments (name, config) VALUES (?, ?)", [name, json.dumps(config, default=str)])
    return db.execute("SELECT last_insert_rowid()").fetchone()[0]


def copy_experiment_runs(db: sqlite_utils.Database, from_id: int, to_id: int, arms: list[str],
                         seeds: list[int]) -> int:
    """Copy the finished runs of these arms and seeds from one experiment to another; returns how many."""
    if not arms or not seeds:
        return 0
    cur = db.execute(
        f"INSERT INTO experiment_runs (experiment_id, arm, seed, manifest_id, training_run_id, status, result) "
        f"SELECT ?, arm, seed, manifest_id, training_run_id, status, result FROM experiment_runs "
        f"WHERE experiment_id = ? AND status = 'done' AND arm IN ({', '.join('?' for _ in arms)}) "
        f"AND seed IN ({', '.join('?' for _ in seeds)})", [to_id, from_id, *arms, *seeds])
    return cur.rowcount


def experiment_runs(db: sqlite_utils.Database, experiment_id: int) -> list[dict]:
    out = []
    for r in db.query("SELECT * FROM experiment_runs WHERE experiment_id = ? ORDER BY arm, seed", [experiment_id]):
        r = dict(r)
        r["result"] = json.loads(r["result"])
        out.append(r)
    return out


def put_experiment_run(db: sqlite_utils.Database, experiment_id: int, arm: str, seed: int, *,
                       manifest_id: int | None, training_run_id: int | None, status: str, result: dict) -> None:
    db.execute("INSERT OR REPLACE INTO experiment_runs (experiment_id, arm, seed, manifest_id, training_run_id, "
               "status, result) VALUES (?, ?, ?, ?, ?, ?, ?)",
               [experiment_id, arm, seed, manifest_id, training_run_id, status, json.dumps(result, default=str)])


def experiment_run(db: sqlite_utils.Database, experiment_id: int, arm: str, seed: int) -> dict | None:
    rows = list(db.query("SELECT * FROM experiment_runs WHERE experiment_id = ? AND arm = ? AND seed = ?",
                         [experiment_id, arm, seed]))
    return {**rows[0], "result": json.loads(rows[0]["result"])} if rows else None


def experiment_claim(db: sqlite_utils.Database, experiment_id: int, arm: str, seed: int) -> dict | None:
    rows = list(db.query("SELECT * FROM experiment_claims WHERE experiment_id = ? AND arm = ? AND seed = ?",
                         [experiment_id, arm, seed]))
    return dict(rows[0]) if rows else None


def experiment_claims(db: sqlite_utils.Database, experiment_id: int) -> list[dict]:
    return [dict(r) for r in db.query("SELECT * FROM experiment_claims WHERE experiment_id = ? ORDER BY arm, seed",
                                      [experiment_id])]


def put_experiment_claim(db: sqlite_utils.Database, experiment_id: int, arm: str, seed: int, *, job_id: int,
                         token: str | None, worker: str) -> None:
    db.execute("INSERT OR REPLACE INTO experiment_claims (experiment_id, arm, seed, job_id, token, worker) "
               "VALUES (?, ?, ?, ?, ?, ?)", [experiment_id, arm, seed, job_id, token, worker])


def release_experiment_claim(db: sqlite_utils.Database, experiment_id: int, arm: str, seed: int,
                             job_id: int, token: str | None) -> int:
    """Drop the claim if this job, with this claim token, still holds it; returns how many rows went (0 or 1)."""
    return db.execute("DELETE FROM experiment_claims WHERE experiment_id = ? AND arm = ? AND seed = ? "
                      "AND job_id = ? AND token IS ?", [experiment_id, arm, seed, job_id, token]).rowcount


def latest_experiment(db: sqlite_utils.Database) -> dict | None:
    rows = list(db.query("SELECT * FROM experiments ORDER BY id DESC LIMIT 1"))
    if not rows:
        return None
    return _experiment(rows[0])


def mark_interrupted(db: sqlite_utils.Database) -> int:
    """Training runs left 'running' by a process that died are marked 'interrupted'."""
    return db.execute("UPDATE training_runs SET status = 'interrupted' WHERE status = 'running' AND "
                      "(job_id IS NULL OR job_id NOT IN (SELECT id FROM jobs WHERE status = 'running'))").rowcount
