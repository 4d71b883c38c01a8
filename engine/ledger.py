"""An experiment's finished runs as files that outlive the workspace (the *ledger*).

A workspace holds weights, images and its database on one machine; a benchmark of many hours can outlast
that machine. The ledger keeps, per finished (arm, seed) run, everything the report and the comparisons need
and nothing else: the run's result (metrics, per-person test rows, steps, provenance, the manifest hash of
the data it trained on), its training curve, and its stored test and val evaluations (ground truth and
detections, from which AP is re-scored). No weights.

* ``write_run`` stores one run (the experiment job calls it as each run finishes); ``export`` writes every
  finished run of an experiment that the folder lacks.
* ``engine.experiment.import_ledger`` fills an experiment in a new workspace from the folder: a run counts as
  finished here only when nothing that decides it changed (the same rules as a changed experiment file,
  ``carried_over``) and, for a train or zero-shot arm, the training set built here has the ledger's manifest
  hash (the same images, byte for byte, with the same labels). A loop's rounds of one seed come in only all
  together (a later round needs the earlier rounds' students, which the ledger does not hold). Everything else
  is trained.

A file that cannot be read, or belongs to another experiment, is skipped with a reason; nothing is
half-imported (each run's row and evaluation files are written together, the row last).
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import RealcalError

VERSION = 2
SUFFIX = ".json.gz"
EVAL_SPLITS = ("test", "val")
DET_KEYS = {"image_id", "category_id", "score", "keypoints", "box"}


def file_name(arm: str, seed: int) -> str:
    """``<arm>--seed-<seed>.json.gz``, the arm name reduced to safe characters (no path can come of it)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", arm).strip("._") or "arm"
    return f"{safe}--seed-{int(seed)}{SUFFIX}"


# ---- evaluations, stored compactly and losslessly -------------------------------------------------------
# A stored evaluation is {"gt", "dets", "protocol"}. In the ledger its ground truth (the same for every run on a
# split) is a file of its own under gt/, named by its digest, and its detections are packed as arrays: the
# predicted coordinates and scores are float32 (written as float32 when every value is one, which is what the
# model gives, else as float64), so the numbers read back are the numbers stored. Under the annotated_person
# protocol only the detections attributed to a labelled person are kept: those are all that protocol scores
# (AP, per-person rows), and whether a detection is attributed depends on it and the ground truth alone. A run's
# test evaluation then takes ~0.3 MB instead of ~7 MB.

def write_json_gz(path: Path, obj: Any) -> None:
    """``obj`` as gzipped JSON, atomically: a reader (or another process writing the same file) sees the old
    file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        json.dump(obj, fh, default=str)
    os.replace(tmp, path)


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _floats(values: list[float], shape: tuple[int, ...]) -> dict:
    a = np.asarray(values, dtype=np.float64).reshape(shape)
    f32 = a.astype(np.float32)
    exact = bool(np.array_equal(f32.astype(np.float64), a, equal_nan=True))
    return {"dtype": "<f4" if exact else "<f8", "shape": list(shape), "data": _b64(f32 if exact else a)}


def _unfloats(packed: dict) -> np.ndarray:
    a = np.frombuffer(base64.b64decode(packed["data"]), dtype=np.dtype(packed["dtype"]))
    return a.astype(np.float64).reshape(packed["shape"])


def pack_dets(dets: list[dict]) -> dict | list[dict]:
    """Detections as arrays (lossless); detections of another shape stay a plain list."""
    if not dets:
        return []
    n_kp = len(dets[0].get("keypoints") or [])
    if any(set(d) != DET_KEYS or len(d["keypoints"]) != n_kp or len(d["box"]) != 4 for d in dets):
        return dets
    return {"n": len(dets),
            "image_id": _b64(np.asarray([d["image_id"] for d in dets], dtype="<i8")),
            "category_id": _b64(np.asarray([d["category_id"] for d in dets], dtype="<i8")),
            "score": _floats([d["score"] for d in dets], (len(dets),)),
            "keypoints": _floats([v for d in dets for v in d["keypoints"]], (len(dets), n_kp)),
            "box": _floats([v for d in dets for v in d["box"]], (len(dets), 4))}


def unpack_dets(packed: dict | list[dict]) -> list[dict]:
    if isinstance(packed, list):
        return packed
    image_id = np.frombuffer(base64.b64decode(packed["image_id"]), dtype="<i8")
    category = np.frombuffer(base64.b64decode(packed["category_id"]), dtype="<i8")
    score, kps, box = (_unfloats(packed[k]) for k in ("score", "keypoints", "box"))
    if not len(image_id) == len(category) == len(score) == len(kps) == len(box) == packed["n"]:
        raise RealcalError("packed detections of unequal lengths")
    return [{"image_id": int(image_id[i]), "category_id": int(category[i]), "score": float(score[i]),
             "keypoints": kps[i].tolist(), "box": box[i].tolist()} for i in range(packed["n"])]


def _digest(gt: dict) -> str:
    return hashlib.sha256(json.dumps(gt, sort_keys=True).encode()).hexdigest()[:16]


def pack_eval(coco: dict | None, folder: Path) -> dict | None:
    """A stored evaluation as the ledger keeps it (its ground truth written to ``folder/gt/`` once)."""
    if not coco:
        return None
    from engine.train import protocols

    gt, dets, protocol = coco["gt"], coco["dets"], coco.get("protocol")
    if protocol == "annotated_person" and dets:
        dets = protocols.scored_detections(gt, dets, protocol)
    digest = _digest(gt)
    path = Path(folder) / "gt" / f"{digest}{SUFFIX}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_gz(path, gt)
    return {"protocol": protocol, "gt": digest, "dets": pack_dets(dets), "detections_stored": len(dets),
            "detections_made": len(coco["dets"])}


def unpack_eval(packed: dict | None, folder: Path) -> dict | None:
    """The stored evaluation back, ground truth read from ``folder/gt/`` (and checked against its digest)."""
    if not packed:
        return None
    path = Path(folder) / "gt" / f"{packed['gt']}{SUFFIX}"
    if not re.fullmatch(r"[0-9a-f]{16}", str(packed["gt"])) or not path.exists():
        raise RealcalError(f"its ground truth {str(packed['gt'])[:16]} is not in {Path(folder) / 'gt'}")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            gt = json.load(fh)
    except (OSError, EOFError, ValueError) as exc:
        raise RealcalError(f"{path.name}: unreadable ground truth ({exc})") from exc
    if _digest(gt) != packed["gt"]:
        raise RealcalError(f"{path.name}: the ground truth does not match its digest")
    return {"gt": gt, "dets": unpack_dets(packed["dets"]), "protocol": packed.get("protocol")}


def entry(cfg: dict, arm: str, seed: int, result: dict, curves: Any = None, folder: Path | None = None) -> dict:
    """The ledger entry of one finished run: its result without workspace paths, plus its evaluations (packed,
    their ground truth written under ``folder``; without a folder, not loaded)."""
    from engine.train.train import load_coco

    res = dict(result)
    paths = {split: res.pop(f"{split}_eval", None) for split in EVAL_SPLITS}
    evals = {split: pack_eval(load_coco(p), folder) if folder is not None else None for split, p in paths.items()}
    res.pop("ledger", None)
    return {"ledger": VERSION, "experiment": cfg["name"], "config": cfg, "arm": arm, "seed": int(seed),
            "result": res, "curves": curves, "evals": evals,
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _same_run(a: dict, b: dict) -> bool:
    ra, rb = a.get("result") or {}, b.get("result") or {}
    return (a.get("config") == b.get("config") and ra.get("manifest_hash") == rb.get("manifest_hash")
            and ra.get("code") == rb.get("code") and ra.get("seconds") == rb.get("seconds")
            and ra.get("test") == rb.get("test"))


def read(path: Path) -> dict:
    """One ledger file; a RealcalError saying what is wrong when it is not one."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise RealcalError(f"{path.name}: not a readable ledger file ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(data, dict) or data.get("ledger") != VERSION:
        raise RealcalError(f"{path.name}: not a ledger file of version {VERSION}")
    missing = [k for k in ("experiment", "config", "arm", "seed", "result") if k not in data]
    if missing or not isinstance(data["result"], dict) or not isinstance(data["config"], dict):
        raise RealcalError(f"{path.name}: ledger entry lacks {', '.join(missing) or 'a result'}")
    if not isinstance(data["seed"], int) or not isinstance(data["arm"], str):
        raise RealcalError(f"{path.name}: the entry's arm or seed is malformed")
    return data


def write_run(folder: Path, cfg: dict, arm: str, seed: int, result: dict, curves: Any = None) -> Path | None:
    """Store one finished run in ``folder`` (atomically: a reader sees the old file or the new one). Returns the
    path, or None when the folder already holds this very run."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name(arm, seed)
    if path.exists():
        try:
            if _same_run(read(path), entry(cfg, arm, seed, result, curves)):
                return None
        except RealcalError:
            pass                          # an unreadable file is replaced by the run that is here
    write_json_gz(path, entry(cfg, arm, seed, result, curves, folder))
    return path


def _curves(db, run: dict) -> Any:
    from store import training as store_training

    if run.get("training_run_id"):
        tr = store_training.run(db, run["training_run_id"])
        return (tr or {}).get("curves")
    return ((run.get("result") or {}).get("ledger") or {}).get("curves")


def export(ws, exp_id: int, folder: Path) -> dict[str, int]:
    """Write every finished run of experiment ``exp_id`` that ``folder`` lacks (or holds in another version).
    Returns {"written": n, "kept": n}."""
    from store import training as store_training

    with ws.connect() as db:
        exp = next((e for e in store_training.list_experiments(db) if e["id"] == exp_id), None)
        if exp is None:
            raise RealcalError(f"no experiment {exp_id}")
        runs = [r for r in store_training.experiment_runs(db, exp_id) if r["status"] == "done"]
        curves = {(r["arm"], r["seed"]): _curves(db, r) for r in runs}
    written = 0
    for r in runs:
        if write_run(folder, exp["config"], r["arm"], r["seed"], r["result"] or {}, curves[(r["arm"], r["seed"])]):
            written += 1
    return {"written": written, "kept": len(runs) - written}


def load(folder: Path) -> tuple[list[dict], list[str]]:
    """Every entry in ``folder`` (sorted by file name) and a line for each file that could not be read."""
    folder = Path(folder)
    if not folder.is_dir():
        return [], []
    entries, problems = [], []
    for path in sorted(folder.glob(f"*{SUFFIX}")):       # entries only: gt/ holds the ground truths
        if path.name.startswith("."):
            continue
        try:
            entries.append({**read(path), "_file": path.name})
        except RealcalError as exc:
            problems.append(str(exc))
    return entries, problems
