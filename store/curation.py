"""Embeddings cache, curation runs, stage results and selections."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlite_utils


def get_embeddings(db: sqlite_utils.Database, model: str, shas: Sequence[str]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    shas = list(shas)
    for start in range(0, len(shas), 500):
        chunk = shas[start:start + 500]
        for row in db.query(f"SELECT sha256, vector FROM embeddings WHERE model = ? AND sha256 IN "
                            f"({', '.join('?' for _ in chunk)})", [model, *chunk]):
            out[row["sha256"]] = np.frombuffer(row["vector"], dtype=np.float32)
    return out


def put_embeddings(db: sqlite_utils.Database, model: str, vectors: dict[str, np.ndarray]) -> None:
    for sha, v in vectors.items():
        v = np.asarray(v, dtype=np.float32)
        db.execute("INSERT OR REPLACE INTO embeddings (sha256, model, dim, vector) VALUES (?, ?, ?, ?)",
                   [sha, model, int(v.size), v.tobytes()])


def get_predictions(db: sqlite_utils.Database, model: str, shas: Sequence[str]) -> dict[str, dict]:
    """Cached teacher predictions by image sha256 (arrays as numpy: keypoints n x 17 x 3, boxes n x 4, scores n)."""
    out: dict[str, dict] = {}
    shas = list(shas)
    for start in range(0, len(shas), 500):
        chunk = shas[start:start + 500]
        for row in db.query(f"SELECT sha256, prediction FROM teacher_predictions WHERE model = ? AND sha256 IN "
                            f"({', '.join('?' for _ in chunk)})", [model, *chunk]):
            p = json.loads(row["prediction"])
            out[row["sha256"]] = {"keypoints": np.asarray(p["keypoints"], dtype=float).reshape(-1, 17, 3),
                                  "boxes": np.asarray(p["boxes"], dtype=float).reshape(-1, 4),
                                  "scores": np.asarray(p["scores"], dtype=float).reshape(-1)}
    return out


def put_predictions(db: sqlite_utils.Database, model: str, predictions: dict[str, dict]) -> None:
    """Cache teacher predictions (the caller commits); values are kept exactly (float64 JSON round-trips)."""
    for sha, p in predictions.items():
        db.execute("INSERT OR REPLACE INTO teacher_predictions (model, sha256, prediction) VALUES (?, ?, ?)",
                   [model, sha, json.dumps({k: np.asarray(p[k], dtype=float).tolist()
                                            for k in ("keypoints", "boxes", "scores")})])


def clear_embeddings(db: sqlite_utils.Database) -> None:
    """Empty the embeddings cache (every model) and the teacher predictions cache; the caller commits."""
    db.execute("DELETE FROM embeddings")
    db.execute("DELETE FROM teacher_predictions")


def create_run(db: sqlite_utils.Database, job_id: int | None, config: dict) -> int:
    db.execute("INSERT INTO curation_runs (job_id, config) VALUES (?, ?)",
               [job_id, json.dumps(config, default=str)])
    return db.execute("SELECT last_insert_rowid()").fetchone()[0]


def finish_run(db: sqlite_utils.Database, run_id: int, *, calibration: dict, funnel: list,
               set_metrics: dict) -> None:
    db.execute("UPDATE curation_runs SET calibration = ?, funnel = ?, set_metrics = ? WHERE id = ?",
               [json.dumps(calibration, default=str), json.dumps(funnel, default=str),
                json.dumps(set_metrics, default=str), run_id])


def put_results(db: sqlite_utils.Database, run_id: int, stage: str, rows: Sequence[dict]) -> None:
    for r in rows:
        db.execute("INSERT OR REPLACE INTO curation_results (run_id, image_id, stage, status, value, "
                   "reason, details) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [run_id, r["image_id"], stage, r["status"], r.get("value"), r.get("reason"),
                    json.dumps(r.get("details"), default=str) if r.get("details") is not None else None])


def run_config(db: sqlite_utils.Database, run_id: int) -> dict[str, Any]:
    """The resolved parameters a curation run was started with (its stored ``config``).

    Raises ``KeyError`` when there is no run ``run_id``."""
    rows = list(db.query("SELECT config FROM curation_runs WHERE id = ?", [run_id]))
    if not rows:
        raise KeyError(f"no curation run {run_id}")
    return json.loads(rows[0]["config"])


def latest_run(db: sqlite_utils.Database) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM curation_runs WHERE funnel != '[]' ORDER BY id DESC LIMIT 1"))
    if not rows:
        return None
    run = dict(rows[0])
    for c in ("config", "calibration", "funnel", "set_metrics"):
        run[c] = json.loads(run[c])
    return run


def results(db: sqlite_utils.Database, run_id: int, stage: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT * FROM curation_results WHERE run_id = ?"
    params: list[Any] = [run_id]
    if stage:
        sql += " AND stage = ?"
        params.append(stage)
    out = []
    for r in db.query(sql + " ORDER BY image_id", params):
        r = dict(r)
        r["details"] = json.loads(r["details"]) if r["details"] else None
        out.append(r)
    return out


def put_selection(db: sqlite_utils.Database, run_id: int, rows: Sequence[dict]) -> None:
    db.execute("DELETE FROM selections WHERE run_id = ?", [run_id])
    for r in rows:
        db.execute("INSERT INTO selections (run_id, image_id, rank, priority, components) "
                   "VALUES (?, ?, ?, ?, ?)",
                   [run_id, r["image_id"], r["rank"], r["priority"], json.dumps(r["components"])])


def selection(db: sqlite_utils.Database, run_id: int) -> list[dict[str, Any]]:
    out = []
    for r in db.query("SELECT * FROM selections WHERE run_id = ? ORDER BY rank", [run_id]):
        r = dict(r)
        r["components"] = json.loads(r["components"])
        out.append(r)
    return out
